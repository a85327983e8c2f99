#!/usr/bin/env bash
# Drift check of the quickstart (examples/quickstart), measured against a floor taken in the same
# run:
#   - ours: `terraform plan -refresh-only -detailed-exitcode -input=false -lock=false` in the
#     quickstart applied at v1 (exit 0 expected; exit 2, changes found outside Terraform, is
#     tolerated and reported; any other exit is an error);
#   - floor: a shell drift probe of the things that refresh reads, run at once with `&` and `wait`
#     like an operator's own script: `curl -fsS <api_url>/health/ready` of each API host; one
#     `ssh` per deploy host (the options of host_ssh() in scripts/demo) reading what the release's
#     refresh reads (provider/src/clients/hosts/files.rs `inspect`: `readlink current`, the release's
#     .artifact-sha256, sha256sum of shared/<role>.env); one `psql` query of the ledger (versions
#     with their checksums, which live in the sidecar table) on the quickstart's database; one
#     S3 GET (curl --aws-sigv4, path-style) of the backup's manifest; one GET of the ops summary
#     with the admin token (the preflight's backlog check reads it).
# The two alternate (which goes first alternates) after one untimed warm-up of each; prints the
# medians, the ratio ours / floor (goal <= 1.5x, issue 19; bench/README.md) and whether it is met;
# with BENCH_ROWS (bench/run) it appends the result row to that file. Not a pass/fail test: it
# exits non-zero only when something errors.
#
# Needs root (the deploy hosts): this script runs `scripts/dev-env up --hosts 3` (hosts already
# running are kept; hosts beyond 3 are stopped) and sources .dev/env.sh. Terraform is the dev
# environment's ($TERRAFORM), with the release build of the provider (built here; a dev_overrides
# file in a temporary directory points at it). When the quickstart's state holds no managed
# resources, it is applied at v1 the way scripts/demo does (same TF_VAR_ variables, same database
# password file) and destroyed at the end (also on error or interrupt); a quickstart that was
# already applied is refreshed as it is and left alone.
# Knobs (environment):
#   RUNS  timed rounds, each running both once (default 5)
set -euo pipefail

AF_LOG_TAG=drift
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
repo=$AF_REPO
runs=${RUNS:-5}
[[ $runs =~ ^[1-9][0-9]*$ ]] || af_die "RUNS must be a positive integer, not '$runs'"
GOAL_RATIO=1.5 # issue 19 (bench/README.md)
export LC_NUMERIC=C # $EPOCHREALTIME with a decimal point

"$repo/scripts/dev-env" up --hosts 3 >/dev/null
# shellcheck source=/dev/null
source "$repo/.dev/env.sh"
[[ -n ${ARTIFORTRESS_TEST_HOSTS:-} ]] || af_die "no deploy hosts in .dev/env.sh"
af_psql_on_path
af_require curl ssh psql sha256sum

echo "building the release provider..." >&2
cargo build --quiet --release -p terraform-provider-artifortress --manifest-path "$repo/Cargo.toml"
release_dir=$(af_target_dir)/release
[[ -x $release_dir/terraform-provider-artifortress ]] || af_die "no $release_dir/terraform-provider-artifortress"

QS=$repo/examples/quickstart
work=$(mktemp -d /tmp/af-bench-drift-XXXXXX)
applied=0
cleanup() {
  local rc=$?
  if ((applied)); then
    af_log "destroying the quickstart this bench applied"
    if ! (cd "$QS" && "$TERRAFORM" destroy -auto-approve -input=false -var release_version=v1 >"$work/destroy.out" 2>&1); then
      tail -n 30 "$work/destroy.out" >&2
      af_log "error: terraform destroy failed; the quickstart state is left in $QS"
      ((rc != 0)) || rc=1
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The dev environment's Terraform settings, with the release provider instead of the debug one.
cat >"$work/terraformrc" <<RC
provider_installation {
  dev_overrides {
    "registry.terraform.io/artifortress/artifortress" = "$release_dir"
  }
  direct {}
}
RC
export TF_CLI_CONFIG_FILE=$work/terraformrc
unset TF_LOG TF_LOG_PROVIDER

# As scripts/demo does.
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
export TF_VAR_hosts=$ARTIFORTRESS_TEST_HOSTS
export TF_VAR_artifacts_dir=$ARTIFORTRESS_TEST_ARTIFACTS
export TF_VAR_known_hosts_file=$ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE
TF_VAR_ssh_private_key=$(cat "$ARTIFORTRESS_SSH_PRIVATE_KEY_FILE")
export TF_VAR_ssh_private_key
export TF_VAR_admin_database_url=$ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL
export TF_VAR_bootstrap_token=$ARTIFORTRESS_BOOTSTRAP_TOKEN
export TF_VAR_s3="{ endpoint = \"$ARTIFORTRESS_S3_ENDPOINT\", bucket = \"$ARTIFORTRESS_S3_BUCKET\", access_key = \"$AWS_ACCESS_KEY_ID\" }"
export TF_VAR_s3_secret_key=$AWS_SECRET_ACCESS_KEY
pw_file=$repo/.dev/quickstart-db-password
if [[ ! -s $pw_file ]]; then
  (umask 077 && af_rand_hex 16 >"$pw_file")
fi
TF_VAR_db_password=$(cat "$pw_file")
export TF_VAR_db_password

tf() { (cd "$QS" && "$TERRAFORM" "$@"); }

has_state() {
  [[ -s $QS/terraform.tfstate ]] && "$AF_PYTHON" -c 'import json, sys
sys.exit(not any(r.get("mode") == "managed" for r in json.load(open(sys.argv[1])).get("resources", [])))' "$QS/terraform.tfstate"
}

if has_state; then
  af_log "the quickstart is already applied: refreshing it as it is (it is left in place)"
else
  af_log "applying the quickstart at v1 (destroyed at the end)"
  applied=1
  t_apply=$SECONDS
  if ! tf apply -auto-approve -input=false -var release_version=v1 >"$work/apply.out" 2>&1; then
    tail -n 40 "$work/apply.out" >&2
    af_die "terraform apply of the quickstart failed"
  fi
  af_log "applied in $((SECONDS - t_apply)) s"
fi

# What the refresh reads, from the state: the release's hosts, deploy_dir and managed env files,
# the API URLs, the backup's bucket and manifest, the bootstrap's database.
"$AF_PYTHON" - "$QS/terraform.tfstate" >"$work/targets" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
res = {}
for r in state.get("resources", []):
    if r.get("mode") == "managed" and r.get("instances"):
        res[r["type"]] = r["instances"][0]["attributes"]
def need(kind):
    if kind not in res:
        sys.exit(f"the quickstart state has no {kind}")
    return res[kind]
rel, bak, boot = need("artifortress_release"), need("artifortress_backup"), need("artifortress_bootstrap")
version = rel.get("version") or ""
print("version", version if version in ("v1", "v2", "broken") else "v1")
print("deploy_dir", rel["deploy_dir"])
print("roles", *sorted((rel.get("env_sha256") or {}).keys()))
for name, h in sorted(rel["hosts"].items()):
    print("host", name, h["address"], h.get("port") or 22)
    if h.get("api_url"):
        print("api", name, h["api_url"])
print("bucket", bak.get("bucket") or "")
print("manifest_key", bak["manifest_key"])
print("database", boot["database"])
PY
version=v1 deploy_dir='' roles=() host_names=() host_addrs=() host_ports=() api_urls=()
bucket='' manifest_key='' database=''
while read -r kind a b c; do
  case $kind in
    version) version=$a ;;
    deploy_dir) deploy_dir=$a ;;
    roles) read -ra roles <<<"$a${b:+ $b}${c:+ $c}" ;;
    host)
      host_names+=("$a")
      host_addrs+=("$b")
      host_ports+=("$c")
      ;;
    api) api_urls+=("$b") ;;
    bucket) bucket=$a ;;
    manifest_key) manifest_key=$a ;;
    database) database=$a ;;
  esac
done <"$work/targets"
bucket=${bucket:-$ARTIFORTRESS_S3_BUCKET}
[[ -n $deploy_dir && ${#host_names[@]} -gt 0 && -n $manifest_key && -n $database ]] ||
  af_die "cannot tell what the refresh reads from the quickstart state ($(tr '\n' ';' <"$work/targets"))"

# The probe's commands, prepared once (an operator's script would have them written down).
# The artifact's sha256 as hosts::inspect reads it: the release's own marker, or one per role
# when the release was installed from one archive per role (the quickstart's case).
inspect_cmd="d='$deploy_dir'; readlink -- \"\$d/current\"; cat -- \"\$d/current/.artifact-sha256\" 2>/dev/null"
for role in "${roles[@]}"; do
  inspect_cmd+="; cat -- \"\$d/current/$role/.artifact-sha256\" 2>/dev/null"
  inspect_cmd+="; f=\"\$d/shared/$role.env\"; if [ -f \"\$f\" ]; then sha256sum -- \"\$f\"; else echo \"\$f missing\"; fi"
done
ledger_sql="select m.version, l.checksum from schema_migrations m
  left join artifortress_migrations_log l using (version) order by m.version"
# The admin URL's server and role, on the quickstart's database; psql gets them as PG* variables
# (only psql: the provider's clients read PG* too), so that no password shows in a process list
# (the same for curl: its secrets are in config files).
"$AF_PYTHON" - >"$work/pg.env" <<'PY'
import os, shlex, urllib.parse as u
p = u.urlsplit(os.environ["ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL"])
for k, v in (("pg_host", p.hostname), ("pg_port", p.port or 5432), ("pg_user", u.unquote(p.username or "")),
             ("pg_password", u.unquote(p.password or ""))):
    print(f"{k}={shlex.quote(str(v))}")
PY
pg_host='' pg_port='' pg_user='' pg_password=''
# shellcheck source=/dev/null
source "$work/pg.env"
(
  umask 077
  printf 'user = "%s:%s"\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$work/s3.curlrc"
  printf 'header = "Authorization: Bearer %s"\n' "$ARTIFORTRESS_ADMIN_TOKEN" >"$work/ops.curlrc"
)
s3_url="${ARTIFORTRESS_S3_ENDPOINT%/}/$bucket/$manifest_key"
region=${AWS_REGION:-us-east-1}
empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
ssh_opts=(-o BatchMode=yes -o UserKnownHostsFile="$ARTIFORTRESS_SSH_KNOWN_HOSTS_FILE" -o GlobalKnownHostsFile=/dev/null
  -o LogLevel=ERROR -i "$ARTIFORTRESS_SSH_PRIVATE_KEY_FILE")
mkdir -p "$work/probe"

# One round of the shell drift probe, every read at once; its answers in $work/probe/.
probe() {
  local out=$work/probe pids=() pid rc=0 i
  for i in "${!api_urls[@]}"; do
    curl -fsS --max-time 10 "${api_urls[$i]}/health/ready" >"$out/ready.$i" &
    pids+=("$!")
  done
  for i in "${!host_names[@]}"; do
    ssh "${ssh_opts[@]}" -p "${host_ports[$i]}" "${ARTIFORTRESS_SSH_USER:?}@${host_addrs[$i]}" "$inspect_cmd" \
      </dev/null >"$out/host.$i" &
    pids+=("$!")
  done
  PGHOST=$pg_host PGPORT=$pg_port PGUSER=$pg_user PGPASSWORD=$pg_password PGDATABASE=$database \
    psql -X -q -A -t -v ON_ERROR_STOP=1 -c "$ledger_sql" >"$out/ledger" &
  pids+=("$!")
  curl -fsS --max-time 10 -K "$work/s3.curlrc" --aws-sigv4 "aws:amz:$region:s3" \
    -H "x-amz-content-sha256: $empty_sha256" "$s3_url" >"$out/manifest" &
  pids+=("$!")
  curl -fsS --max-time 10 -K "$work/ops.curlrc" "${ARTIFORTRESS_API_URL%/}/v1/admin/ops/summary" >"$out/ops" &
  pids+=("$!")
  for pid in "${pids[@]}"; do
    wait "$pid" || rc=1
  done
  return "$rc"
}

# Every answer of the last probe is there (a broken probe must not look fast).
probe_check() {
  local f
  for f in "$work"/probe/*; do
    [[ -s $f ]] || af_die "the probe read nothing into $(basename "$f")"
  done
  for f in "$work"/probe/ready.*; do
    grep -q '"status"' "$f" || af_die "a /health/ready answer has no status: $(head -c 200 "$f")"
  done
  for f in "$work"/probe/host.*; do
    grep -Eq '^[0-9a-f]{64}$' "$f" || af_die "a host answer holds no artifact sha256: $(head -c 300 "$f")"
  done
}

refresh_codes=()
# One refresh-only plan; its exit code appended to refresh_codes (0 or 2; else an error).
refresh() {
  local rc=0
  tf plan -refresh-only -detailed-exitcode -input=false -lock=false -no-color \
    -var release_version="$version" >"$work/refresh.out" 2>&1 || rc=$?
  if ((rc != 0 && rc != 2)); then
    tail -n 40 "$work/refresh.out" >&2
    af_die "terraform plan -refresh-only exited $rc"
  fi
  if ((rc == 2)); then
    cp "$work/refresh.out" "$work/refresh-exit2.out"
  fi
  refresh_codes+=("$rc")
}

# timed_* : run one, append its seconds to the array.
refresh_secs=()
probe_secs=()
timed_refresh() {
  local t0=$EPOCHREALTIME t1
  refresh
  t1=$EPOCHREALTIME
  refresh_secs+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')")
}
timed_probe() {
  local t0=$EPOCHREALTIME t1
  probe || af_die "the shell probe failed (answers so far in $work/probe)"
  t1=$EPOCHREALTIME
  probe_check
  probe_secs+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')")
}

echo "drift: quickstart at $version (${#host_names[@]} hosts: ${host_names[*]}; ${#api_urls[@]} API URLs)," \
  "1 untimed warm-up of each, then $runs timed rounds, interleaved (which goes first alternates)"
refresh
probe || af_die "the shell probe failed (answers so far in $work/probe)"
probe_check
echo "  warm-up: refresh-only plan exit ${refresh_codes[0]}; the probe read: live versions" \
  "$(for i in "${!host_names[@]}"; do printf '%s=%s ' "${host_names[$i]}" "$(head -n1 "$work/probe/host.$i" | sed 's#.*/##')"; done)" \
  "| ledger rows $(grep -c . "$work/probe/ledger")" \
  "| manifest $(wc -c <"$work/probe/manifest") bytes | ops summary $(wc -c <"$work/probe/ops") bytes"
refresh_codes=()
rm -f "$work/refresh-exit2.out"
for i in $(seq "$runs"); do
  if ((i % 2 == 1)); then
    timed_refresh
    timed_probe
  else
    timed_probe
    timed_refresh
  fi
  echo "  round $i: refresh-only plan ${refresh_secs[-1]} s (exit ${refresh_codes[-1]}), probe ${probe_secs[-1]} s"
done
if [[ -f $work/refresh-exit2.out ]]; then
  echo "  note: the refresh-only plan exited 2 (changes outside Terraform) in some runs; the last such plan says:"
  grep -E 'changed outside|has changed|has been deleted|drifted|Changes to Outputs|^ *[~+-] ' "$work/refresh-exit2.out" |
    head -n 20 | sed 's/^/    /' || true
fi

"$AF_PYTHON" - "$runs" "$GOAL_RATIO" "${#api_urls[@]}" "${#host_names[@]}" "$("$TERRAFORM" version | head -n1)" \
  "${refresh_secs[*]}" "${probe_secs[*]}" "${refresh_codes[*]}" <<'PY'
import os, statistics, sys
runs, goal, n_api, n_hosts, tf, refresh, probe, codes = sys.argv[1:]
goal = float(goal)
refresh = [float(x) for x in refresh.split()]
probe = [float(x) for x in probe.split()]
exit2 = codes.split().count("2")
r, p = statistics.median(refresh), statistics.median(probe)
ratio = r / p
verdict = "met" if ratio <= goal else "missed"
probes = f"{n_api} curl /health/ready, {n_hosts} ssh, psql, S3 GET, ops summary; concurrent"
print(f"drift check of the quickstart: {tf}, median of {runs} runs")
print(f"  floor: shell probe ({probes})  {p:.3f} s  (min {min(probe):.3f}, max {max(probe):.3f})")
print(f"  ours: terraform plan -refresh-only  {r:.3f} s  (min {min(refresh):.3f}, max {max(refresh):.3f});"
      f" exit 2 (changes outside Terraform) in {exit2} of {len(refresh)} runs")
print(f"  ratio refresh / probe: {ratio:.2f}x  (goal <= {goal}x: {verdict})")
if os.environ.get("BENCH_ROWS"):
    exit_note = f"; exit 2 in {exit2} of {len(refresh)}" if exit2 else ""
    row = ("drift", f"refresh-only plan / shell probe ({tf.removeprefix('Terraform ')})",
           f"{r:.3f} s (plan -refresh-only of the quickstart{exit_note})",
           f"{p:.3f} s ({probes})", f"{ratio:.2f}x", f"<= {goal}x", verdict)
    with open(os.environ["BENCH_ROWS"], "a") as f:
        f.write("\t".join(" ".join(x.split()) for x in row) + "\n")
PY
