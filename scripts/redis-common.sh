#!/usr/bin/env bash
# Helpers shared by scripts/redis-{standalone,sentinel,cluster}.sh. Sourced, not run.
#
# Every server binds to 127.0.0.1 only, runs daemonized with a pid file in the data directory
# (so `stop` kills exactly the processes `start` launched) and persists with AOF.
# Environment knobs:
#   APPENDFSYNC   always | everysec | no   (default everysec; see docs/STORAGE.md)
#   READY_TIMEOUT_S                         (default 20)

set -euo pipefail

APPENDFSYNC="${APPENDFSYNC:-everysec}"
READY_TIMEOUT_S="${READY_TIMEOUT_S:-20}"

die() { echo "error: $*" >&2; exit 1; }

need_bins() {
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install -y redis-server)"
  command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install -y redis-server)"
}

check_port() {
  [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1024 && $1 <= 55535 )) || die "bad port: $1 (want 1024..55535)"
}

# start_server DIR PORT [extra redis-server args...]
#
# AOF rewrites: Redis forks and writes the whole dataset again once the AOF doubled (every
# 10-15 s under the benchmark's load), compressing it with LZF. On two shared cores that
# child's CPU is taken from the replicas. Rewriting at 5x instead of 2x, uncompressed, keeps
# the same durability for more disk: 5 interleaved pairs, +6.5% transfers/s on the means and
# p99 -22% (docs/EVALUATION.md, session 18).
start_server() {
  local dir="$1" port="$2"; shift 2
  mkdir -p "$dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --protected-mode no \
    --dir "$dir/$port" --daemonize yes \
    --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log" \
    --appendonly yes --appendfsync "$APPENDFSYNC" --save '' \
    --auto-aof-rewrite-percentage 400 --rdbcompression no "$@" \
    || die "redis-server on port $port failed to start (see $dir/redis-$port.log)"
}

# start_sentinel DIR PORT MASTER_PORT QUORUM
start_sentinel() {
  local dir="$1" port="$2" master_port="$3" quorum="$4"
  local conf="$dir/sentinel-$port.conf"
  # Sentinel rewrites its config file at run time, so each one gets its own copy.
  cat >"$conf" <<CONF
port $port
bind 127.0.0.1
protected-mode no
daemonize yes
pidfile $dir/redis-$port.pid
logfile $dir/redis-$port.log
dir $dir
sentinel monitor coffer 127.0.0.1 $master_port $quorum
sentinel down-after-milliseconds coffer 1000
sentinel failover-timeout coffer 3000
sentinel parallel-syncs coffer 1
CONF
  redis-server "$conf" --sentinel || die "sentinel on port $port failed to start"
}

# wait_ping PORT: until the server answers PING or READY_TIMEOUT_S passes.
wait_ping() {
  local port="$1" deadline=$(( SECONDS + READY_TIMEOUT_S ))
  until [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == "PONG" ]]; do
    (( SECONDS < deadline )) || die "port $port not ready after ${READY_TIMEOUT_S}s"
    sleep 0.1
  done
}

# stop_pids DIR PORT...: SIGTERM each pid we started, then SIGKILL stragglers.
stop_pids() {
  local dir="$1"; shift
  local port pidfile pid
  for port in "$@"; do
    pidfile="$dir/redis-$port.pid"
    [[ -f "$pidfile" ]] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}
