#!/bin/sh
# Artifortress test bed release control script (installed as <release>/bin/artifortress).
#
#   artifortress {start|stop|restart|status} {api|worker} [INSTANCE]
#
# INSTANCE (a positive integer, default 1) is the worker process: the service scales its worker
# by process count (its docs/27 and docs/31), each process with its own pid, version and log
# files (<role>-<INSTANCE>.*; instance 1 keeps the plain <role>.* names). The provider passes
# it as {{instance}} (worker_processes).
#
# Release layout: <root>/releases/<version>/{VERSION,bin/...} (in a role archive, built by
# build-releases.sh: <root>/releases/<version>/<role>/{VERSION,bin/...}); by default
#   pid file  <root>/run/<role>.pid      (run dir: $ARTIFORTRESS_RUN_DIR, else <release>/../../run)
#   log file  <run dir>/<role>.log
#   env file  $ARTIFORTRESS_ENV_FILE, else <release>/../../shared/<role>.env (KEY=VALUE lines,
#             '#' comments; values are taken literally, optional surrounding quotes removed)
# status: prints "running <version> pid N" (exit 0) or "stopped" (exit 3).
# start/stop are idempotent; stop sends SIGTERM, waits up to ARTIFORTRESS_STOP_TIMEOUT (10) s,
# then SIGKILL.
set -u

usage() {
  echo "usage: $0 {start|stop|restart|status} {api|worker} [INSTANCE]" >&2
  exit 2
}

[ $# -eq 2 ] || [ $# -eq 3 ] || usage
action=$1
role=$2
instance=${3:-1}
case "$role" in api|worker) ;; *) usage ;; esac
case "$instance" in ''|*[!0-9]*|0*) usage ;; esac
case "$action" in start|stop|restart|status) ;; *) usage ;; esac

self=$(readlink -f "$0" 2>/dev/null || echo "$0")
release_dir=$(cd "$(dirname "$self")/.." && pwd -P)
version=$(cat "$release_dir/VERSION" 2>/dev/null || echo unknown)
root_dir="$release_dir/../.."
# @@LAYOUT@@
run_dir=${ARTIFORTRESS_RUN_DIR:-$root_dir/run}
env_file=${ARTIFORTRESS_ENV_FILE:-$root_dir/shared/$role.env}
if [ "$instance" = 1 ]; then name=$role; else name=$role-$instance; fi
pid_file="$run_dir/$name.pid"
version_file="$run_dir/$name.version"
log_file="$run_dir/$name.log"
binary="$release_dir/bin/artifortress-testbed-$role"
stop_timeout=${ARTIFORTRESS_STOP_TIMEOUT:-10}

# True when the process exists and is not a zombie (an exited child not yet reaped by init).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ]; then
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$state" != Z ] || return 1
  fi
  return 0
}

# Prints the pid and returns 0 when the pid file names a live process of this role.
running_pid() {
  [ -f "$pid_file" ] || return 1
  pid=$(cat "$pid_file" 2>/dev/null)
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  alive "$pid" || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    # Guard against a recycled pid: the process must be this role's binary.
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1 | grep -q "artifortress-testbed-$role" || return 1
  fi
  echo "$pid"
}

running_version() {
  cat "$version_file" 2>/dev/null || echo unknown
}

load_env() {
  [ -f "$env_file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line=$(printf '%s' "$line" | sed 's/\r$//; s/^[[:space:]]*//')
    case "$line" in ''|'#'*) continue ;; esac
    case "$line" in export[[:space:]]*) line=$(printf '%s' "$line" | sed 's/^export[[:space:]]*//') ;; esac
    case "$line" in *=*) ;; *) echo "artifortress: ignoring malformed line in $env_file" >&2; continue ;; esac
    key=${line%%=*}
    value=${line#*=}
    case "$key" in ''|*[!A-Za-z0-9_]*|[0-9]*) echo "artifortress: ignoring bad key '$key' in $env_file" >&2; continue ;; esac
    case "$value" in
      \"*\") value=${value#\"}; value=${value%\"} ;;
      \'*\') value=${value#\'}; value=${value%\'} ;;
    esac
    export "$key=$value"
  done <"$env_file"
}

do_status() {
  if pid=$(running_pid); then
    echo "running $(running_version) pid $pid"
    return 0
  fi
  echo "stopped"
  return 3
}

do_start() {
  if pid=$(running_pid); then
    echo "already running $(running_version) pid $pid"
    return 0
  fi
  [ -x "$binary" ] || { echo "artifortress: missing $binary" >&2; return 1; }
  mkdir -p "$run_dir" || return 1
  load_env
  # @@RELEASE_ENV@@
  log_offset=0
  [ -f "$log_file" ] && log_offset=$(wc -c <"$log_file")
  echo "=== $(date -u +%Y-%m-%dT%H:%M:%S.%NZ) starting $role $version" >>"$log_file"
  if command -v setsid >/dev/null 2>&1; then
    setsid "$binary" >>"$log_file" 2>&1 </dev/null &
  else
    nohup "$binary" >>"$log_file" 2>&1 </dev/null &
  fi
  pid=$!
  echo "$pid" >"$pid_file"
  echo "$version" >"$version_file"
  # Wait until the process is up (api: until it reports its address), or report its death.
  i=0
  while [ $i -lt 100 ]; do
    if ! alive "$pid"; then
      echo "artifortress: $role $version exited during start; log tail:" >&2
      tail -c +$((log_offset + 1)) "$log_file" | tail -n 20 >&2
      rm -f "$pid_file" "$version_file"
      return 1
    fi
    if [ "$role" = worker ]; then
      [ $i -ge 3 ] && break
    elif tail -c +$((log_offset + 1)) "$log_file" | grep -q 'Now listening on:'; then
      break
    fi
    sleep 0.1
    i=$((i + 1))
  done
  echo "started $version pid $pid"
  return 0
}

do_stop() {
  if ! pid=$(running_pid); then
    rm -f "$pid_file" "$version_file"
    echo "stopped"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null
  i=0
  while alive "$pid"; do
    if [ $i -ge $((stop_timeout * 10)) ]; then
      echo "artifortress: $role pid $pid did not stop within ${stop_timeout}s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null
      sleep 0.2
      break
    fi
    sleep 0.1
    i=$((i + 1))
  done
  rm -f "$pid_file" "$version_file"
  echo "stopped"
  return 0
}

case "$action" in
  start) do_start ;;
  stop) do_stop ;;
  restart) do_stop >/dev/null && do_start ;;
  status) do_status ;;
esac
exit $?
