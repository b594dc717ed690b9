# lib.sh - shell helpers shared by the hack/ scripts (sourced, never run).

HACK=${HACK:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
ROOT=$(cd "$HACK/.." && pwd)
# shellcheck source=versions.env
. "$HACK/versions.env"
TENANCY_CACHE=${TENANCY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tenancy-operator}
CP_BIN="$TENANCY_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

log() { printf '[%s %s] %s\n' "${LOG_TAG:-hack}" "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# freeport: print a TCP port that is free on 127.0.0.1 right now.
freeport() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pid_alive PIDFILE: true when the process recorded in PIDFILE runs.
pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# stop_pid NAME PIDFILE [TIMEOUT]: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL.
stop_pid() {
  local name=$1 file=$2 timeout=${3:-20} pid i
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$file"
}

# as_pg CMD...: run CMD as the postgres system user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
