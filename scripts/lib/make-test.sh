#!/usr/bin/env bash
# The body of `make test` (kept out of the Makefile so that clean-up and exit codes are plain bash).
#
#   install-deps -> fuzz smoke (if provider/fuzz exists) -> build (nextest --no-run) -> dev-env
#   up on those binaries -> cargo fmt --check -> cargo clippy -D warnings -> cargo nextest
#   (acceptance feature, dev env exported) -> dev-env down
#
# Every check runs even when an earlier one failed (install-deps, the build or dev-env up failing
# stops the run); the exit code is the first failure's. `dev-env down` always runs, and the very
# last line printed is nextest's summary line (re-printed after the clean-up output).
set -uo pipefail

AF_LOG_TAG=make-test
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$AF_REPO" || exit 1

MAKE_CMD=${MAKE:-make}
FEATURES=(--features acceptance-tests/acceptance)
NEXTEST_LOG=$(mktemp /tmp/artifortress-nextest.XXXXXX)
first_rc=0
failed=()
ran=()

record() { # record RC WHAT
  ran+=("$2")
  if (($1 != 0)); then
    failed+=("$2 (exit $1)")
    ((first_rc != 0)) || first_rc=$1
  fi
}

finish() {
  local rc=$?
  trap - EXIT INT TERM
  ((first_rc != 0)) || first_rc=$rc
  af_disk_report
  af_log "stopping the dev environment"
  if ! scripts/dev-env down; then
    af_log "dev-env down failed"
    ((first_rc != 0)) || first_rc=1
  fi
  if ((${#failed[@]})); then
    af_log "FAILED: ${failed[*]}"
  elif ((first_rc == 0)); then
    af_log "ok: ${ran[*]}"
  fi
  local summary
  summary=$(sed -e 's/\x1b\[[0-9;]*m//g' "$NEXTEST_LOG" | grep -E '^[[:space:]]*Summary \[' | tail -n1)
  rm -f "$NEXTEST_LOG"
  # Flush stderr before the final stdout line (both usually go to the same log).
  [[ -z $summary ]] || printf '%s\n' "$summary"
  exit "$first_rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

scripts/install-deps || exit $?
af_disk_report
# Measured on a clean run: the fuzz build takes 2.3 GiB, target/ 2.2 GiB, the deploy hosts'
# releases 1.8 GiB by the end of the tests.
free_kib=$(df -Pk "$AF_REPO" 2>/dev/null | awk 'NR == 2 { print $4 }')
if [[ -n $free_kib ]] && ((free_kib < 6 * 1024 * 1024)); then
  af_log "WARNING: only $((free_kib / 1024)) MiB free; a clean make test needs about 5 GiB"
fi

# First, so that on CI its build (release profile, its own target dir) is deleted before the
# main build starts: the two never take disk at the same time.
if [[ -d provider/fuzz ]]; then
  af_log "$MAKE_CMD fuzz-smoke"
  $MAKE_CMD --no-print-directory fuzz-smoke
  record $? "fuzz-smoke"
  if [[ ${CI:-} == true ]]; then
    rm -rf provider/fuzz/target
  fi
fi

# One build of everything, by the very command the test run uses: the dev env then runs the test
# bed and provider binaries that build produced (ARTIFORTRESS_SKIP_BUILD). dev-env's own
# `cargo build -p ...` resolves dependency features differently from the workspace test build, so
# every dependency would be compiled (and stored) twice.
af_log "cargo nextest run --workspace ${FEATURES[*]} --no-run"
cargo nextest run --workspace "${FEATURES[@]}" --no-run
record $? "build"
((first_rc == 0)) || exit "$first_rc"
af_disk_report

# The exports go to .dev/env.sh; keep the tokens out of the build log.
ARTIFORTRESS_SKIP_BUILD=1 scripts/dev-env up --hosts 4 >/dev/null || exit $?

af_log "cargo fmt --all -- --check"
cargo fmt --all -- --check
record $? "cargo fmt"

af_log "cargo clippy --workspace --all-targets ${FEATURES[*]} -- -D warnings"
cargo clippy --workspace --all-targets "${FEATURES[@]}" -- -D warnings
record $? "cargo clippy"

# shellcheck source=/dev/null
source .dev/env.sh
af_log "cargo nextest run --workspace ${FEATURES[*]} --no-fail-fast"
cargo nextest run --workspace "${FEATURES[@]}" --no-fail-fast 2>&1 | tee "$NEXTEST_LOG"
record "${PIPESTATUS[0]}" "cargo nextest"
