#!/usr/bin/env bash
# Plan overhead of the provider, measured against a floor taken in the same run:
#   - `terraform plan` of 50 `artifortress_readiness` data sources against the test bed, and
#   - `terraform plan` of a 50-resource environment of the provider: 50 `artifortress_backup`
#     resources (applied once, untimed; each refresh reads its dump's and manifest's objects in
#     S3), versus
#   - `terraform plan` of 50 builtin `terraform_data` resources (applied, so the plan refreshes them).
# Every timed plan must be empty (`-detailed-exitcode` 0): a plan that fails or has changes is an
# error, not a time.
# Prints the median of each, their ratios (goal <= 2.0x, set in bench/README.md), and the
# provider's peak RSS (VmHWM of every provider process Terraform started, recorded by GNU time
# around the binary; goal <= 64 MiB), and whether each goal is met. With BENCH_ROWS (bench/run)
# it also appends one result row per goal to that file (bench/README.md, "Row protocol").
#
# Needs the dev environment: `eval "$(scripts/dev-env up)"` (or `make bench`, which does it).
# RUNS (default 7) sets the number of timed plans per configuration.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-7}
count=50
: "${ARTIFORTRESS_API_URL:?run inside the dev environment: eval \"\$(scripts/dev-env up)\"}"
terraform_bin=${TERRAFORM:-terraform}

echo "building the release provider..." >&2
cargo build --quiet --release -p terraform-provider-artifortress --manifest-path "$repo/Cargo.toml"
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
provider_bin="$target_dir/release/terraform-provider-artifortress"
version=$(grep -m1 '^version' "$repo/Cargo.toml" | cut -d'"' -f2)

work=$(mktemp -d /tmp/af-bench-XXXXXX)
env_applied=0
cleanup() {
  if ((env_applied)); then
    (cd "$work/environment" && "$terraform_bin" destroy -auto-approve -input=false >/dev/null) ||
      echo "plan_overhead: destroying the 50 backups under $env_prefix failed" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
env_prefix="bench/plan-overhead-$(date +%s)-$$/"
rss_dir="$work/rss"
mkdir -p "$rss_dir"

# The mirror holds a wrapper that records the provider's peak RSS, then execs nothing else:
# GNU time runs the real binary, passes stdin/stdout/stderr through, and writes %M (KiB).
platform="$work/mirror/registry.terraform.io/artifortress/artifortress/$version/linux_amd64"
mkdir -p "$platform"
cat >"$platform/terraform-provider-artifortress_v$version" <<SHIM
#!/bin/sh
exec /usr/bin/time -f '%M' -o "$rss_dir/\$\$.kib" "$provider_bin" "\$@"
SHIM
chmod +x "$platform/terraform-provider-artifortress_v$version"
cat >"$work/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$work/mirror"
    include = ["registry.terraform.io/artifortress/artifortress"]
  }
  direct {
    exclude = ["registry.terraform.io/artifortress/artifortress"]
  }
}
RC
export TF_CLI_CONFIG_FILE="$work/terraformrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
unset TF_LOG TF_LOG_PROVIDER

mkdir -p "$work/readiness" "$work/builtin" "$work/environment"
cat >"$work/readiness/main.tf" <<TF
terraform {
  required_providers {
    artifortress = { source = "artifortress/artifortress" }
  }
}
provider "artifortress" {
  api_url = "$ARTIFORTRESS_API_URL"
}
data "artifortress_readiness" "api" {
  count = $count
}
TF
# The provider's database and object storage come from the dev environment's variables
# (ARTIFORTRESS_DATABASE_URL, ARTIFORTRESS_S3_*, AWS_*); destroy deletes the backups.
cat >"$work/environment/main.tf" <<TF
terraform {
  required_providers {
    artifortress = { source = "artifortress/artifortress" }
  }
}
resource "artifortress_backup" "env" {
  count     = $count
  prefix    = "$env_prefix\${count.index}/"
  retention = "delete"
}
TF
cat >"$work/builtin/main.tf" <<TF
resource "terraform_data" "floor" {
  count = $count
  input = "floor-\${count.index}"
}
TF

(cd "$work/readiness" && "$terraform_bin" init -input=false >/dev/null)
(cd "$work/builtin" && "$terraform_bin" init -input=false >/dev/null &&
  "$terraform_bin" apply -auto-approve -input=false >/dev/null)
echo "applying the 50-backup environment (untimed)..." >&2
env_applied=1
(cd "$work/environment" && "$terraform_bin" init -input=false >/dev/null &&
  "$terraform_bin" apply -auto-approve -input=false >/dev/null)

# One timed plan, which must be empty; prints seconds.
timed_plan() {
  local dir=$1 start end rc=0
  start=$(date +%s.%N)
  (cd "$dir" && "$terraform_bin" plan -detailed-exitcode -input=false -lock=false -no-color >"$work/plan.out" 2>&1) || rc=$?
  end=$(date +%s.%N)
  if ((rc != 0)); then
    tail -n 30 "$work/plan.out" >&2
    echo "plan_overhead: terraform plan in $(basename "$dir") exited $rc (0 = empty plan expected)" >&2
    exit 1
  fi
  python3 -c "print(f'{$end - $start:.4f}')"
}

# Warm up both, then alternate so that machine noise hits both sides alike.
timed_plan "$work/builtin" >/dev/null
timed_plan "$work/readiness" >/dev/null
timed_plan "$work/environment" >/dev/null
rm -f "$rss_dir"/*.kib
builtin_times=()
readiness_times=()
environment_times=()
for _ in $(seq "$runs"); do
  builtin_times+=("$(timed_plan "$work/builtin")")
  readiness_times+=("$(timed_plan "$work/readiness")")
  environment_times+=("$(timed_plan "$work/environment")")
done

python3 - "$runs" "$count" "$("$terraform_bin" version | head -1)" "$rss_dir" \
  "${builtin_times[*]}" "${readiness_times[*]}" "${environment_times[*]}" <<'PY'
import glob, os, statistics, sys
runs, count, tf, rss_dir, builtin, readiness, environment = sys.argv[1:]
GOAL_RATIO = 2.0  # set in bench/README.md
GOAL_RSS_MIB = 64  # issue 4's memory bound
builtin = [float(x) for x in builtin.split()]
readiness = [float(x) for x in readiness.split()]
environment = [float(x) for x in environment.split()]
rss = [int(open(f).read().split()[-1]) for f in glob.glob(f"{rss_dir}/*.kib")]
b = statistics.median(builtin)
met = lambda ok: "met" if ok else "missed"
rows = []
version = tf.removeprefix("Terraform ")
print(f"plan_overhead: {tf}, {runs} runs each, medians")
print(f"  floor: {count} x terraform_data (refresh)      {b:.3f} s  (min {min(builtin):.3f}, max {max(builtin):.3f})")

def against_floor(name, measure, what, times):
    """Print one configuration's median against the floor and add its row."""
    m = statistics.median(times)
    ratio = m / b
    print(f"  {what:<42} {m:.3f} s  (min {min(times):.3f}, max {max(times):.3f})")
    print(f"  ratio {name} / floor: {ratio:.2f}x  (goal <= {GOAL_RATIO}x: {met(ratio <= GOAL_RATIO)})")
    rows.append(("plan_overhead", f"{measure} / terraform_data ({version})", f"{m:.3f} s ({what})",
                 f"{b:.3f} s ({count} x terraform_data)", f"{ratio:.2f}x", f"<= {GOAL_RATIO}x",
                 met(ratio <= GOAL_RATIO)))

against_floor("readiness", "readiness", f"{count} x data.artifortress_readiness", readiness)
against_floor("environment", "50-resource environment",
              f"{count} x artifortress_backup, refreshed", environment)
if rss:
    peak = max(rss) / 1024
    print(f"  provider peak RSS: {peak:.1f} MiB (max of {len(rss)} provider processes; median {statistics.median(rss) / 1024:.1f} MiB)  (goal <= {GOAL_RSS_MIB} MiB: {met(peak <= GOAL_RSS_MIB)})")
    rows.append(("plan_overhead", "provider peak RSS",
                 f"{peak:.1f} MiB (max VmHWM of {len(rss)} provider processes)",
                 "- (an absolute bound)", "-", f"<= {GOAL_RSS_MIB} MiB", met(peak <= GOAL_RSS_MIB)))
else:
    print("  provider peak RSS: not recorded (no provider process ran?)")
if os.environ.get("BENCH_ROWS"):
    with open(os.environ["BENCH_ROWS"], "a") as f:
        for row in rows:
            f.write("\t".join(" ".join(str(x).split()) for x in row) + "\n")
# The RSS goal cannot be judged without a measurement: an error, not a result.
sys.exit(0 if rss else 1)
PY
