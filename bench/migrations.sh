#!/usr/bin/env bash
# Migration engine speed, measured against two baselines taken in the same run:
#   - ours: the provider's migration engine (provider/src/clients/migrations/: one session, the
#     advisory lock, one transaction per file holding the file, its ledger row and its sidecar row);
#   - floor: one `psql -1 -f ... -f ...` session over the same files, plus the ledger table and its
#     rows in that session;
#   - service: acceptance-tests/testbed/db-migrate.sh, the service's own way (per file a psql check,
#     `psql -f`, then a separate `psql -c` insert).
# Each run applies 50 migrations (the test bed's 3 plus 47 generated, realistic ones: tables with
# keys and indexes, added columns with defaults, backfills, updates, views, triggers) to a new empty
# database. Prints the median of each, ours / floor (goal <= 1.3x) and service / ours (goal >= 5x),
# and whether each goal is met. Not a pass/fail test: it exits non-zero only when something errors.
#
# PostgreSQL: ARTIFORTRESS_DEV_POSTGRES_ADMIN_URL (set by the dev environment; `make bench` sources
# it) selects that server; without it a throw-away server (fsync=off) is started for the run.
# RUNS (default 5) sets the number of timed runs of each way, interleaved, after one warm-up round.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# psql for the baselines: the PostgreSQL binaries first in PATH when psql is not already there.
# shellcheck source=/dev/null
source "$repo/scripts/lib/common.sh"
af_psql_on_path

echo "building the migrations bench (release)..." >&2
cargo bench --quiet --profile benches -p terraform-provider-artifortress --bench migrations \
  --manifest-path "$repo/Cargo.toml" --no-run
unset RUST_LOG
cargo bench --quiet --profile benches -p terraform-provider-artifortress --bench migrations \
  --manifest-path "$repo/Cargo.toml"
