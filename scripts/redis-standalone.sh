#!/usr/bin/env bash
# Start or stop one standalone Redis server on loopback.
#   scripts/redis-standalone.sh start|stop DIR PORT
# Prints the URL to use as `mode = "standalone"` in the node's storage config.
source "$(dirname "$0")/redis-common.sh"

usage() { die "usage: $0 start|stop DIR PORT"; }
[[ $# -eq 3 ]] || usage
cmd="$1"; dir="$(mkdir -p "$2" && cd "$2" && pwd)"; port="$3"
check_port "$port"; need_bins

case "$cmd" in
  start)
    start_server "$dir" "$port"
    wait_ping "$port"
    echo "standalone redis://127.0.0.1:$port (appendfsync $APPENDFSYNC, data $dir)"
    ;;
  stop) stop_pids "$dir" "$port" ;;
  *) usage ;;
esac
