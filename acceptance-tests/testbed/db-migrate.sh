#!/usr/bin/env bash
# Artifortress test bed: apply db migrations the way the real service's scripts/db-migrate.sh does.
#
#   db-migrate.sh DATABASE_URL [DIR]      (DIR defaults to the migrations/ next to this script)
#
# Ledger: schema_migrations(version text primary key, applied_at timestamptz not null default now()),
# version = the file's base name including ".sql". Each not-yet-applied *.sql file (file-name order)
# is run with `psql -v ON_ERROR_STOP=1 -f FILE` and then recorded with a separate `psql -c insert`.
# Like the original: no transaction around a file, no lock; the files are written to be re-runnable.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 DATABASE_URL [DIR]" >&2
  exit 2
fi
database_url=$1
dir=${2:-"$(cd "$(dirname "$0")" && pwd)/migrations"}

psql_exec() {
  psql "$database_url" -X -v ON_ERROR_STOP=1 "$@"
}

psql_exec <<'SQL'
create table if not exists schema_migrations (
  version text primary key,
  applied_at timestamptz not null default now()
);
SQL

shopt -s nullglob
export LC_ALL=C   # file-name order = byte order
migration_files=("$dir"/*.sql)

if [ "${#migration_files[@]}" -eq 0 ]; then
  echo "No migration files found in $dir."
  exit 0
fi

for file in "${migration_files[@]}"; do
  version="$(basename "$file")"
  version_sql="${version//\'/\'\'}"
  applied="$(psql_exec -tAc "select 1 from schema_migrations where version = '${version_sql}' limit 1;")"

  if [ "$applied" = "1" ]; then
    echo "Skipping $version (already applied)."
    continue
  fi

  echo "Applying $version..."
  psql_exec -f "$file"
  psql_exec -c "insert into schema_migrations (version) values ('${version_sql}');"
done

echo "Migrations are up to date."
