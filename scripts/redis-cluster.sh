#!/usr/bin/env bash
# Start or stop a Redis cluster on loopback: 3 masters and 3 replicas (one per master).
#   scripts/redis-cluster.sh start|stop DIR BASE_PORT
# Ports BASE..BASE+5 (cluster bus on port+10000). cluster-node-timeout 1000 keeps failover short.
source "$(dirname "$0")/redis-common.sh"

usage() { die "usage: $0 start|stop DIR BASE_PORT"; }
[[ $# -eq 3 ]] || usage
cmd="$1"; dir="$(mkdir -p "$2" && cd "$2" && pwd)"; base="$3"
check_port "$base"; need_bins
ports=("$base" $((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)) $((base + 5)))

case "$cmd" in
  start)
    addrs=()
    for p in "${ports[@]}"; do
      start_server "$dir" "$p" --cluster-enabled yes --cluster-config-file "$dir/nodes-$p.conf" \
        --cluster-node-timeout 1000
      addrs+=("127.0.0.1:$p")
    done
    for p in "${ports[@]}"; do wait_ping "$p"; done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/cluster-create.log" 2>&1 \
      || die "cluster create failed (see $dir/cluster-create.log)"
    deadline=$(( SECONDS + READY_TIMEOUT_S ))
    for p in "${ports[@]}"; do
      until redis-cli -p "$p" cluster info | tr -d '\r' | grep -q '^cluster_state:ok'; do
        (( SECONDS < deadline )) || die "cluster not ok on port $p"
        sleep 0.1
      done
    done
    echo "cluster seeds=$(IFS=,; echo "${addrs[*]}") (appendfsync $APPENDFSYNC, data $dir)"
    ;;
  stop) stop_pids "$dir" "${ports[@]}" ;;
  *) usage ;;
esac
