#!/usr/bin/env bash
# Restore drill speed, measured against the service's own drill method in the same run:
#   - ours: the provider's drill engine (provider/src/clients/restore.rs) on one backup taken up
#     front with the backup engine (custom format, no compression): download with sha256 check,
#     re-create the drill database, pg_restore --jobs, count the ten parity tables, drop; the
#     report must pass its data verification;
#   - service: the service's drill method: `pg_dump` plain SQL (--no-owner --no-privileges) of
#     the source to a file, terminate + drop + create the drill database, `psql -v ON_ERROR_STOP=1
#     -f FILE` into it, count(*) of the ten parity tables in the source and the drill database via
#     psql, drop the drill database. Its restore-only time (psql -f + counts, without the dump) is
#     printed for information.
# The source database is the test bed's schema and seed plus one table of ints, a blank filler,
# md5 text and random bytes (pgcrypto's gen_random_bytes), so the dump is not trivially
# compressible. Both ways run interleaved; medians are printed with the ratio ours / service
# (goal <= 0.6x), ours' phase times from its report and the service's by step, and whether the
# goal is met. Not a pass/fail test: it exits non-zero only when something errors.
#
# Servers: a throw-away PostgreSQL (fsync=off) and a throw-away Garage (S3), both on this machine,
# started for the run and stopped after it (the dev environment's servers are not used).
# Knobs (environment):
#   BENCH_SIZE_MB  target size of the custom-format dump in MiB (default 256)
#   RUNS           timed rounds of both ways, after one untimed warm-up of each (default 3)
# Needs the PostgreSQL server binaries (with pgcrypto) and Garage (see
# acceptance-tests/src/support/garage.rs). Disk: the source database, the drill database, the
# backup in Garage and the service's dump file: a few times the dump size.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

echo "building the drill bench (release)..." >&2
cargo bench --quiet --profile benches -p terraform-provider-artifortress --bench drill \
  --manifest-path "$repo/Cargo.toml" --no-run
unset RUST_LOG
cargo bench --quiet --profile benches -p terraform-provider-artifortress --bench drill \
  --manifest-path "$repo/Cargo.toml"
