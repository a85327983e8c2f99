#!/usr/bin/env bash
# Release engine speed (provider/src/clients/release.rs), two measurements in one run:
#   - rollout scaling: Deployment::deploy of the test bed's release v2 to 10 SSH deploy hosts with
#     max_parallel = 10, versus the same deploy to 1 host, interleaved in the same run. Every timed
#     deploy follows an untimed deploy of v1 to the same hosts, so it really writes the env file,
#     switches `current`, restarts the API (the release's control script) and waits for readiness
#     (/health/live, then 3 ready /health/ready in a row) on every host; the outcome and the
#     control script's status (running v2, a new pid) are checked, so a broken run cannot look
#     fast. Prints the medians and median(10 hosts) / median(1 host), goal <= 1.5x; for
#     information also the time of one no-op command (`true`) on 10 hosts at once vs 1 host over
#     the same SSH sessions (what every host command costs on these hosts, whatever the engine does).
#   - readiness detection lag: a test bed API of its own on 127.0.0.1 (run-time faults on); per
#     sample PUT /testbed/faults {"readyAfterSeconds": 2}, then release::wait_api_ready (1 ready
#     answer, 200 ms poll), started (i-1)/n of a poll interval after the PUT in sample i of n so
#     the samples cover every phase of the probe schedule; lag = its return - (the PUT's return +
#     2 s). Prints median and max, goal <= 250 ms, and the probe request rate and spacing from the
#     test bed's request log.
# Prints "met"/"missed" for each goal. Not a pass/fail test: it exits non-zero only when something
# errors.
#
# Needs root (the deploy hosts): this script runs `scripts/dev-env up --hosts 10` (PostgreSQL,
# Garage, the test bed, release tarballs and 10 sshd hosts on 127.0.0.2..11; hosts already running
# are kept), sources .dev/env.sh, and deploys into <deploy_dir>/bench-release on each host. The
# APIs it starts on the hosts are stopped at the end; the dev environment keeps running.
# Knobs (environment):
#   RUNS         timed rounds, each deploying once to 10 hosts and once to 1 host, after one
#                untimed warm-up round (default 3)
#   LAG_SAMPLES  readiness lag samples (default 10)
#   RUST_LOG     is unset for the run; run the bench binary with it to see the engine's log
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

"$repo/scripts/dev-env" up --hosts 10 >/dev/null
# shellcheck source=/dev/null
source "$repo/.dev/env.sh"

echo "building the release bench (release)..." >&2
cargo bench --quiet --profile benches -p terraform-provider-artifortress --bench release \
  --manifest-path "$repo/Cargo.toml" --no-run
unset RUST_LOG
cargo bench --quiet --profile benches -p terraform-provider-artifortress --bench release \
  --manifest-path "$repo/Cargo.toml"
