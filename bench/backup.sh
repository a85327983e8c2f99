#!/usr/bin/env bash
# Backup engine speed and memory, measured against two baselines taken in the same run:
#   - floor: `pg_dump -Fc -Z0 --no-owner --no-privileges > /dev/null` (dumping, nothing stored);
#   - ours: the provider's backup engine (provider/src/clients/backup.rs: pg_dump in an exported
#     snapshot streamed into an S3 multipart upload, sha256 on the fly, manifest last), custom
#     format, no compression, no read-back verification; also printed for information: with
#     verification, and with zstd;
#   - pipe: the cheapest way with the upload, `pg_dump -Fc -Z0 | aws s3 cp - s3://...` (needs the
#     `aws` CLI on PATH, e.g. `pip install awscli`; without it the way is left out with a note);
#   - service: the service's own way: `pg_dump` plain SQL to a file, then that file uploaded with a
#     multipart upload (8 MiB parts, sequential);
#   - diagnostics: ours and service into a "null S3" (an endpoint in the bench process that answers
#     the upload calls and discards the bytes), to show the engine's own cost without the object
#     store's CPU on the same cores.
# The database is one table of ints, a pgbench-like blank filler, md5 text and random bytes
# (pgcrypto's gen_random_bytes), so the dump is not trivially compressible. Every way runs
# interleaved; medians are printed with ratios: ours / floor (goal <= 1.3x), ours / service (goal
# <= 0.5x), ours / pipe (goal <= 1.1x), the provider process's user+sys CPU per GiB dumped (goal
# <= 1 s), and ours' peak RSS (VmHWM of the process running the backup, under GNU time; goal
# <= 64 MiB and not growing with the database's size), plus where the CPU went (client, PostgreSQL
# server, Garage), and whether each goal is met. Not a pass/fail test: it exits non-zero only when
# something errors.
#
# Servers: a throw-away PostgreSQL (fsync=off) and a throw-away Garage (S3), both on this machine,
# started for the run and stopped after it (the dev environment's servers are not used).
# Knobs (environment):
#   BENCH_SIZE_MB  target size of the custom-format dump in MiB (default 256; the full-size runs
#                  are 1024 and 4096; the database is ~0.75x the dump: the random bytes are hex in it)
#   RUNS           timed rounds of every way, after one untimed warm-up (default 3)
#   BENCH_SIZES    e.g. "1024,4096": also measure ours' peak RSS on a database of each size, to see
#                  whether it grows with size (without it, growth is not measured)
# Needs GNU time at /usr/bin/time, the PostgreSQL server binaries (with pgcrypto) and Garage (see
# acceptance-tests/src/support/garage.rs). Disk: the database, the service way's dump file and
# Garage's copies (it frees a deleted object's blocks only after a delay): a few times the dump size.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

echo "building the backup bench (release)..." >&2
cargo bench --quiet --profile benches -p terraform-provider-artifortress --bench backup \
  --manifest-path "$repo/Cargo.toml" --no-run
unset RUST_LOG
cargo bench --quiet --profile benches -p terraform-provider-artifortress --bench backup \
  --manifest-path "$repo/Cargo.toml"
