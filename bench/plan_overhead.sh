#!/usr/bin/env bash
# Plan overhead of the provider, measured against a floor taken in the same run:
#   - `terraform plan` of 50 `artifortress_readiness` data sources against the test bed, and
#   - `terraform plan` of a 50-resource environment of the provider: 50 `artifortress_backup`
#     resources (applied once, untimed; each refresh reads its dump's and manifest's objects in
#     S3), versus
#   - `terraform plan` of 50 builtin `terraform_data` resources (applied, so the plan refreshes them).
# Every timed plan of those must be empty (`-detailed-exitcode` 0): a plan that fails or has
# changes is an error, not a time.
# And the provider's fixed and per-RPC cost, no network involved (issue 19):
#   - `terraform plan -refresh=false` of 1 and of 50 new `artifortress_backup` (never applied:
#     Terraform validates, configures the provider and plans each create), versus
#   - `terraform plan -refresh=false` of 1 and of 50 new `terraform_data`.
# Those plans must propose exactly their creates (`-detailed-exitcode` 2).
# The provider is the release build stripped as scripts/release packages it, installed from a
# filesystem mirror: Terraform hashes that file before every command, as it does for users.
# Prints the median of each, their ratios (goals in bench/README.md), the provider's peak RSS
# (VmHWM of every provider process of one more, untimed, plan of each of the provider's
# configurations, recorded by GNU time around the binary; goal <= 64 MiB) and the instructions
# of one provider start (callgrind: exec, handshake line, SIGTERM, exit; goal <= 30 M), and
# whether each goal is met. With BENCH_ROWS (bench/run) it also
# appends one result row per goal to that file (bench/README.md, "Row protocol").
#
# Needs the dev environment: `eval "$(scripts/dev-env up)"` (or `make bench`, which does it), and
# valgrind and openssl for the start-up count.
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

# The timed plans run the provider as a user gets it: the release build stripped as
# scripts/release packages it, in a filesystem mirror. Terraform hashes that file against the
# lock file before every command, so its size is part of every time below.
# shellcheck source=/dev/null
source "$repo/scripts/lib/common.sh"
platform_of() { echo "$1/registry.terraform.io/artifortress/artifortress/$version/linux_amd64"; }
platform=$(platform_of "$work/mirror")
mkdir -p "$platform"
shipped="$platform/terraform-provider-artifortress_v$version"
cp "$provider_bin" "$shipped"
af_release_strip "$shipped"
# A second mirror, for one untimed pass at the end, holds a wrapper that records the provider's
# peak RSS: GNU time runs the shipped binary, passes stdin/stdout/stderr through, and writes %M
# (KiB). (The wrapper is a few bytes, so Terraform's hash of it costs nothing: never timed.)
rss_platform=$(platform_of "$work/mirror-rss")
mkdir -p "$rss_platform"
cat >"$rss_platform/terraform-provider-artifortress_v$version" <<SHIM
#!/bin/sh
exec /usr/bin/time -f '%M' -o "$rss_dir/\$\$.kib" "$shipped" "\$@"
SHIM
chmod +x "$rss_platform/terraform-provider-artifortress_v$version"
for mirror in mirror mirror-rss; do
  cat >"$work/terraformrc-$mirror" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$work/$mirror"
    include = ["registry.terraform.io/artifortress/artifortress"]
  }
  direct {
    exclude = ["registry.terraform.io/artifortress/artifortress"]
  }
}
RC
done
export TF_CLI_CONFIG_FILE="$work/terraformrc-mirror" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
unset TF_LOG TF_LOG_PROVIDER

mkdir -p "$work/readiness" "$work/builtin" "$work/environment" "$work/new1" "$work/new50" \
  "$work/floor1" "$work/floor50"
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
# Never applied: `plan -refresh=false` plans n creates.
for n in 1 50; do
  cat >"$work/new$n/main.tf" <<TF
terraform {
  required_providers {
    artifortress = { source = "artifortress/artifortress" }
  }
}
resource "artifortress_backup" "new" {
  count  = $n
  prefix = "${env_prefix}new$n/\${count.index}/"
}
TF
  cat >"$work/floor$n/main.tf" <<TF
resource "terraform_data" "new" {
  count = $n
  input = "new-\${count.index}"
}
TF
done
cat >"$work/builtin/main.tf" <<TF
resource "terraform_data" "floor" {
  count = $count
  input = "floor-\${count.index}"
}
TF

for d in readiness new1 new50 floor1 floor50; do
  (cd "$work/$d" && "$terraform_bin" init -input=false >/dev/null)
done
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

# One timed `plan -refresh=false` of creates only, which must propose them (exit 2); prints seconds.
timed_create_plan() {
  local dir=$1 start end rc=0
  start=$(date +%s.%N)
  (cd "$dir" && "$terraform_bin" plan -refresh=false -detailed-exitcode -input=false -lock=false -no-color >"$work/plan.out" 2>&1) || rc=$?
  end=$(date +%s.%N)
  if ((rc != 2)) || ! grep -q "^Plan: [0-9]* to add, 0 to change, 0 to destroy" "$work/plan.out"; then
    tail -n 30 "$work/plan.out" >&2
    echo "plan_overhead: terraform plan -refresh=false in $(basename "$dir") exited $rc (2 = creates only expected)" >&2
    exit 1
  fi
  python3 -c "print(f'{$end - $start:.4f}')"
}

# Instructions of one provider start as Terraform starts it (AutoMTLS, so the server key and
# certificate are generated): exec to exit, the handshake line read, then SIGTERM. callgrind
# counts instructions, which repeat where wall time on a shared machine does not.
start_up_instructions() {
  local d=$work/callgrind pid line=""
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-521 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$d/client.key" -out "$d/client.pem" 2>/dev/null
  mkfifo "$d/out"
  TF_PLUGIN_MAGIC_COOKIE=d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2 \
    PLUGIN_PROTOCOL_VERSIONS=6 PLUGIN_CLIENT_CERT="$(cat "$d/client.pem")" PLUGIN_UNIX_SOCKET_DIR="$d" \
    valgrind --tool=callgrind --callgrind-out-file="$d/callgrind.out" "$provider_bin" >"$d/out" 2>"$d/valgrind.log" &
  pid=$!
  read -r line <"$d/out" || true
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || true
  if [[ $line != 1\|6\|unix\|*\|grpc\|?* ]]; then
    echo "plan_overhead: the provider under callgrind printed ${line:-nothing} as its handshake line" >&2
    tail -n 20 "$d/valgrind.log" >&2
    return 1
  fi
  sed -n 's/^summary: //p; s/^totals: //p' "$d/callgrind.out" | head -n1
}

start_up=""
if command -v valgrind >/dev/null && command -v openssl >/dev/null; then
  start_up=$(start_up_instructions) || start_up=""
else
  echo "plan_overhead: valgrind or openssl missing (scripts/install-deps installs valgrind); no start-up count" >&2
fi

# Warm up every configuration, then alternate so that machine noise hits both sides alike.
timed_plan "$work/builtin" >/dev/null
timed_plan "$work/readiness" >/dev/null
timed_plan "$work/environment" >/dev/null
for d in floor1 new1 floor50 new50; do timed_create_plan "$work/$d" >/dev/null; done
builtin_times=()
readiness_times=()
environment_times=()
floor1_times=()
new1_times=()
floor50_times=()
new50_times=()
for _ in $(seq "$runs"); do
  builtin_times+=("$(timed_plan "$work/builtin")")
  readiness_times+=("$(timed_plan "$work/readiness")")
  environment_times+=("$(timed_plan "$work/environment")")
  floor1_times+=("$(timed_create_plan "$work/floor1")")
  new1_times+=("$(timed_create_plan "$work/new1")")
  floor50_times+=("$(timed_create_plan "$work/floor50")")
  new50_times+=("$(timed_create_plan "$work/new50")")
done

# The peak RSS: one untimed plan of each of the provider's configurations through the wrapper
# mirror, in copies of their directories (the environment's with its state) initialised there.
rm -f "$rss_dir"/*.kib
for d in readiness environment new1 new50; do
  mkdir -p "$work/rss-$d"
  cp "$work/$d/main.tf" "$work/rss-$d/"
  [[ ! -f $work/$d/terraform.tfstate ]] || cp "$work/$d/terraform.tfstate" "$work/rss-$d/"
  (cd "$work/rss-$d" && TF_CLI_CONFIG_FILE="$work/terraformrc-mirror-rss" "$terraform_bin" init -input=false >/dev/null)
done
TF_CLI_CONFIG_FILE="$work/terraformrc-mirror-rss" timed_plan "$work/rss-readiness" >/dev/null
TF_CLI_CONFIG_FILE="$work/terraformrc-mirror-rss" timed_plan "$work/rss-environment" >/dev/null
TF_CLI_CONFIG_FILE="$work/terraformrc-mirror-rss" timed_create_plan "$work/rss-new1" >/dev/null
TF_CLI_CONFIG_FILE="$work/terraformrc-mirror-rss" timed_create_plan "$work/rss-new50" >/dev/null

python3 - "$runs" "$count" "$("$terraform_bin" version | head -1)" "$rss_dir" \
  "${builtin_times[*]}" "${readiness_times[*]}" "${environment_times[*]}" \
  "${floor1_times[*]}" "${new1_times[*]}" "${floor50_times[*]}" "${new50_times[*]}" "$start_up" <<'PY'
import glob, os, statistics, sys
(runs, count, tf, rss_dir, builtin, readiness, environment,
 floor1, new1, floor50, new50, start_up) = sys.argv[1:]
GOAL_RATIO = 2.0  # set in bench/README.md
GOAL_RSS_MIB = 64  # issue 4's memory bound
GOAL_NEW1, GOAL_NEW50 = 2.0, 1.8  # issue 19: plan -refresh=false of new resources
GOAL_START_UP = 30_000_000  # issue 19: instructions per start, every build Terraform may start
times = lambda arg: [float(x) for x in arg.split()]
builtin, readiness, environment = times(builtin), times(readiness), times(environment)
floor1, new1, floor50, new50 = times(floor1), times(new1), times(floor50), times(new50)
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
def create_plan(n, goal, floor, ours):
    """`plan -refresh=false` of n new backups against n new terraform_data, and its row."""
    f, m = statistics.median(floor), statistics.median(ours)
    ratio = m / f
    what = f"{n} new artifortress_backup, -refresh=false"
    floor_what = f"floor: {n} new terraform_data, -refresh=false"
    print(f"  {floor_what:<42} {f:.3f} s  (min {min(floor):.3f}, max {max(floor):.3f})")
    print(f"  {what:<42} {m:.3f} s  (min {min(ours):.3f}, max {max(ours):.3f}); {1000 * (m - f):.0f} ms more")
    print(f"  ratio new{n} / floor: {ratio:.2f}x  (goal <= {goal}x: {met(ratio <= goal)})")
    rows.append(("plan_overhead", f"plan -refresh=false, {n} new / terraform_data ({version})",
                 f"{m:.3f} s ({what})", f"{f:.3f} s ({n} new terraform_data)", f"{ratio:.2f}x",
                 f"<= {goal}x", met(ratio <= goal)))

create_plan(1, GOAL_NEW1, floor1, new1)
create_plan(50, GOAL_NEW50, floor50, new50)
if start_up:
    n = int(start_up)
    print(f"  provider start-up: {n / 1e6:.1f} M instructions (callgrind; exec, handshake, SIGTERM, exit)  (goal <= {GOAL_START_UP / 1e6:.0f} M: {met(n <= GOAL_START_UP)})")
    rows.append(("plan_overhead", "provider start-up instructions (release build)",
                 f"{n / 1e6:.1f} M (callgrind: exec to exit after the handshake line)",
                 "- (an absolute bound)", "-", f"<= {GOAL_START_UP / 1e6:.0f} M", met(n <= GOAL_START_UP)))
else:
    print("  provider start-up: not measured (see above)")
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
# The RSS and start-up goals cannot be judged without a measurement: an error, not a result.
sys.exit(0 if rss and start_up else 1)
PY
