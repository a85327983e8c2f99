#!/usr/bin/env bash
# A whole `terraform apply` of the service's real migrations, against the service's own way, in
# the same run (issue 19):
#   - ours: `terraform apply -auto-approve` of one `artifortress_migration` over the 15 files of
#     sremani/Artifortress@f628e74 `db/migrations/` into a new empty database (`terraform init`
#     once, untimed; the state removed before each run), with the provider installed as a user
#     gets it: the release build, stripped as scripts/release packages it, in a filesystem mirror.
#     Terraform checks that file against the lock file's hash on every command, so its size is
#     part of the time;
#   - service: acceptance-tests/testbed/db-migrate.sh (the service's scripts/db-migrate.sh way:
#     per file a psql check, `psql -f`, a separate `psql -c` insert) over the same files into
#     another new empty database.
# And, to show where ours goes, two floors: `terraform apply` of one builtin `terraform_data`
# (Terraform alone) and one `psql -1 -f ... -f ...` session over the 15 files (the DDL alone).
# Prints the medians, service / ours (goal >= 6x, issue 19) and whether it is met; with
# BENCH_ROWS (bench/run) it appends the result row. Not a pass/fail test: it exits non-zero only
# when something errors.
#
# The files are read from a git copy of the service (ARTIFORTRESS_SERVICE_GIT, default
# /work/.mirror/sremani+Artifortress/repo, e.g. a `git clone --bare` of it) into a temporary
# directory, never into this repository. Without such a copy the row says `skipped` and why.
#
# Needs the dev environment's PostgreSQL: ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL (`make bench` /
# bench/run source .dev/env.sh). Terraform: $TERRAFORM, default `terraform` on PATH.
# RUNS (default 7) sets the number of timed rounds (each runs all four once, after a warm-up).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-7}
goal=6
service_commit=f628e74dfb8b884f5113d3c4aadf16000228025a
service_git=${ARTIFORTRESS_SERVICE_GIT:-/work/.mirror/sremani+Artifortress/repo}
terraform_bin=${TERRAFORM:-terraform}
: "${ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL:?run inside the dev environment: eval \"\$(scripts/dev-env up)\"}"
admin_url=$ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL
server_url=${admin_url%/*}

# shellcheck source=/dev/null
source "$repo/scripts/lib/common.sh"
af_psql_on_path

row() { # row OURS FLOOR RATIO VERDICT
  [[ -n ${BENCH_ROWS:-} ]] || return 0
  printf 'migrate_apply\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "service's db-migrate.sh / terraform apply, real 15 migrations" "$1" "$2" "$3" ">= ${goal}x" "$4" \
    >>"$BENCH_ROWS"
}

work=$(mktemp -d /tmp/af-bench-migrate-XXXXXX)
databases=()
cleanup() {
  for db in "${databases[@]}"; do
    psql -X -q "$admin_url" -c "drop database if exists $db" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The service's migrations, from the git copy.
files_dir=$work/migrations
mkdir -p "$files_dir"
if ! git -C "$service_git" cat-file -e "$service_commit^{tree}" 2>/dev/null; then
  echo "migrate_apply: no git copy of sremani/Artifortress at $service_commit in $service_git" \
    "(set ARTIFORTRESS_SERVICE_GIT); skipped" >&2
  row "- (needs a git copy of the service: ARTIFORTRESS_SERVICE_GIT)" "-" "-" "skipped"
  exit 0
fi
while IFS= read -r path; do
  [[ $path == *.sql ]] || continue
  git -C "$service_git" show "$service_commit:$path" >"$files_dir/${path##*/}"
done < <(git -C "$service_git" ls-tree --name-only "$service_commit" db/migrations/)
file_count=$(find "$files_dir" -name '*.sql' | wc -l)
((file_count > 0)) || {
  echo "migrate_apply: no .sql files under db/migrations/ at $service_commit" >&2
  exit 1
}
echo "migrate_apply: $file_count migration files ($(cat "$files_dir"/*.sql | wc -c) bytes) of sremani/Artifortress@${service_commit:0:7}" >&2

# The provider as scripts/release packages it.
echo "building the release provider..." >&2
cargo build --quiet --release -p terraform-provider-artifortress --manifest-path "$repo/Cargo.toml"
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
version=$(grep -m1 '^version' "$repo/Cargo.toml" | cut -d'"' -f2)
platform="$work/mirror/registry.terraform.io/artifortress/artifortress/$version/linux_amd64"
mkdir -p "$platform"
shipped="$platform/terraform-provider-artifortress_v$version"
cp "$target_dir/release/terraform-provider-artifortress" "$shipped"
af_release_strip "$shipped"
shipped_mib=$(awk -v b="$(stat -c %s "$shipped")" 'BEGIN { printf "%.1f", b / 1048576 }')
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
unset TF_LOG TF_LOG_PROVIDER ARTIFORTRESS_DATABASE_URL

ours_db=bench_migrate_ours_$$
service_db=bench_migrate_service_$$
ddl_db=bench_migrate_ddl_$$
databases=("$ours_db" "$service_db" "$ddl_db")

mkdir -p "$work/ours" "$work/builtin"
cat >"$work/ours/main.tf" <<TF
terraform {
  required_providers {
    artifortress = { source = "artifortress/artifortress", version = "$version" }
  }
}
variable "database_url" {
  type      = string
  sensitive = true
}
provider "artifortress" {
  database_url = var.database_url
}
resource "artifortress_migration" "schema" {
  dir = "$files_dir"
}
TF
cat >"$work/builtin/main.tf" <<'TF'
resource "terraform_data" "one" {
  input = "one"
}
TF
(cd "$work/ours" && "$terraform_bin" init -input=false >/dev/null)
(cd "$work/builtin" && "$terraform_bin" init -input=false >/dev/null)

fresh() { # fresh DB: drop and create it
  psql -X -q -v ON_ERROR_STOP=1 "$admin_url" -c "drop database if exists $1" -c "create database $1" \
    >"$work/fresh.out" 2>&1 || { cat "$work/fresh.out" >&2; echo "migrate_apply: cannot re-create $1" >&2; exit 1; }
}
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", (b - a) / 1e9 }'; }
ours_secs=() service_secs=() builtin_secs=() ddl_secs=()
ddl_args=()
for f in "$files_dir"/*.sql; do ddl_args+=(-f "$f"); done

round() { # round TIMED(0|1)
  local t0 t1
  fresh "$ours_db"
  fresh "$service_db"
  fresh "$ddl_db"
  rm -f "$work/ours/terraform.tfstate" "$work/ours/terraform.tfstate.backup" \
    "$work/builtin/terraform.tfstate" "$work/builtin/terraform.tfstate.backup"
  sync
  t0=$(now)
  (cd "$work/ours" && TF_VAR_database_url="$server_url/$ours_db" \
    "$terraform_bin" apply -auto-approve -input=false >"$work/ours.out" 2>&1) ||
    { cat "$work/ours.out" >&2; echo "migrate_apply: terraform apply failed" >&2; exit 1; }
  t1=$(now)
  (($1)) && ours_secs+=("$(secs "$t0" "$t1")")
  t0=$(now)
  bash "$repo/acceptance-tests/testbed/db-migrate.sh" "$server_url/$service_db" "$files_dir" \
    >"$work/service.out" 2>&1 ||
    { cat "$work/service.out" >&2; echo "migrate_apply: db-migrate.sh failed" >&2; exit 1; }
  t1=$(now)
  (($1)) && service_secs+=("$(secs "$t0" "$t1")")
  t0=$(now)
  (cd "$work/builtin" && "$terraform_bin" apply -auto-approve -input=false >"$work/builtin.out" 2>&1) ||
    { cat "$work/builtin.out" >&2; echo "migrate_apply: terraform apply of terraform_data failed" >&2; exit 1; }
  t1=$(now)
  (($1)) && builtin_secs+=("$(secs "$t0" "$t1")")
  t0=$(now)
  psql -X -q -1 -v ON_ERROR_STOP=1 "${ddl_args[@]}" "$server_url/$ddl_db" >"$work/ddl.out" 2>&1 ||
    { cat "$work/ddl.out" >&2; echo "migrate_apply: psql -1 failed" >&2; exit 1; }
  t1=$(now)
  (($1)) && ddl_secs+=("$(secs "$t0" "$t1")")
  return 0
}

round 0
# Both ways must leave the same ledger: every file recorded once.
for db in "$ours_db" "$service_db"; do
  n=$(psql -X -tA "$server_url/$db" -c "select count(*) from schema_migrations")
  [[ $n == "$file_count" ]] || {
    echo "migrate_apply: $db's ledger holds $n rows, expected $file_count" >&2
    exit 1
  }
done
for i in $(seq "$runs"); do
  round 1
  echo "  round $i: apply ${ours_secs[-1]} s, db-migrate.sh ${service_secs[-1]} s," \
    "terraform_data apply ${builtin_secs[-1]} s, psql -1 ${ddl_secs[-1]} s" >&2
done

python3 - "$runs" "$goal" "$file_count" "$shipped_mib" "$("$terraform_bin" version | head -n1)" \
  "${ours_secs[*]}" "${service_secs[*]}" "${builtin_secs[*]}" "${ddl_secs[*]}" <<'PY'
import os, statistics, sys
runs, goal, files, mib, tf, ours, service, builtin, ddl = sys.argv[1:]
goal = float(goal)
med = lambda s: statistics.median(float(x) for x in s.split())
o, s, b, d = med(ours), med(service), med(builtin), med(ddl)
ratio = s / o
verdict = "met" if ratio >= goal else "missed"
print(f"whole apply of the service's {files} migrations: {tf}, median of {runs} rounds")
print(f"  ours: terraform apply (artifortress_migration, shipped build {mib} MiB)  {o:.3f} s")
print(f"  service: db-migrate.sh  {s:.3f} s")
print(f"  floors: terraform apply of one terraform_data {b:.3f} s; psql -1 of the files {d:.3f} s;"
      f" ours beyond both: {o - b - d:.3f} s")
print(f"  service / ours: {ratio:.2f}x  (goal >= {goal:g}x: {verdict})")
if os.environ.get("BENCH_ROWS"):
    row = ("migrate_apply", f"service's db-migrate.sh / terraform apply, real {files} migrations ({tf.removeprefix('Terraform ')})",
           f"{o:.3f} s (terraform apply; Terraform alone {b:.3f} s, the DDL alone {d:.3f} s)",
           f"{s:.3f} s (db-migrate.sh)", f"{ratio:.2f}x", f">= {goal:g}x", verdict)
    with open(os.environ["BENCH_ROWS"], "a") as f:
        f.write("\t".join(" ".join(x.split()) for x in row) + "\n")
PY
