#!/usr/bin/env bash
# Start or stop a sentinel group on loopback: 1 master, 2 replicas, 3 sentinels (quorum 2).
#   scripts/redis-sentinel.sh start|stop DIR BASE_PORT
# Ports: master BASE, replicas BASE+1 and BASE+2, sentinels BASE+3..BASE+5. Master name: coffer.
# Failover is tuned for tests: down-after-milliseconds 1000, failover-timeout 3000.
source "$(dirname "$0")/redis-common.sh"

usage() { die "usage: $0 start|stop DIR BASE_PORT"; }
[[ $# -eq 3 ]] || usage
cmd="$1"; dir="$(mkdir -p "$2" && cd "$2" && pwd)"; base="$3"
check_port "$base"; need_bins
ports=("$base" $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)) $((base + 5)))

case "$cmd" in
  start)
    start_server "$dir" "$base"
    wait_ping "$base"
    for p in $((base + 1)) $((base + 2)); do
      start_server "$dir" "$p" --replicaof 127.0.0.1 "$base"
      wait_ping "$p"
    done
    # Replicas must be in sync before sentinels watch, or a failover could promote an empty one.
    deadline=$(( SECONDS + READY_TIMEOUT_S ))
    until [[ "$(redis-cli -p "$base" info replication | tr -d '\r' | grep -c 'state=online')" == 2 ]]; do
      (( SECONDS < deadline )) || die "replicas of $base not online"
      sleep 0.1
    done
    for p in $((base + 3)) $((base + 4)) $((base + 5)); do
      start_sentinel "$dir" "$p" "$base" 2
      wait_ping "$p"
    done
    echo "sentinel master_name=coffer sentinels=127.0.0.1:$((base + 3)),127.0.0.1:$((base + 4)),127.0.0.1:$((base + 5))"
    echo "  master 127.0.0.1:$base replicas 127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)) (appendfsync $APPENDFSYNC, data $dir)"
    ;;
  stop) stop_pids "$dir" "${ports[@]}" ;;
  *) usage ;;
esac
