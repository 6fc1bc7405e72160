#!/usr/bin/env bash
# Emulated three-machine setup of the original evaluation, on one Linux box (needs root):
# two "hosts" with two replicas each and a client "host", each a network namespace joined by a
# bridge, with an optional netem delay on every host's link.
#
#   scripts/netns-3host.sh up [DELAY]         namespaces cb-h1 cb-h2 cb-cl, bridge cbbr0,
#                                             10.77.0.1 (h1), 10.77.0.2 (h2), 10.77.0.3 (client);
#                                             DELAY e.g. 1ms (netem on each veth, both ways)
#   scripts/netns-3host.sh run DIR [coffer-bench run options...]
#                                             testnet in DIR (must not exist), replicas 0,1 in
#                                             cb-h1 and 2,3 in cb-h2, the benchmark in cb-cl;
#                                             results in DIR/results
#   scripts/netns-3host.sh down               removes namespaces and bridge
#
# Environment: BENCH (default target/release/coffer-bench; build it with
# `cargo build --release -p coffer-bench`).
# The replicas share the machine's cores exactly as on loopback: namespaces separate the
# network paths (and add the delay), not the CPUs.
set -euo pipefail

NS=(cb-h1 cb-h2 cb-cl)
IPS=(10.77.0.1 10.77.0.2 10.77.0.3)
BR=cbbr0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH:-${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer-bench}"

die() { echo "error: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"

up() {
  local delay="${1:-}"
  ip link show "$BR" >/dev/null 2>&1 && die "$BR exists: run '$0 down' first"
  ip link add "$BR" type bridge
  ip link set "$BR" up
  for i in 0 1 2; do
    local ns="${NS[$i]}" ip="${IPS[$i]}"
    ip netns add "$ns"
    ip link add "veth-$ns" type veth peer name eth0 netns "$ns"
    ip link set "veth-$ns" master "$BR" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    if [[ -n "$delay" ]]; then
      # Both directions: the namespace's egress and the bridge port's egress towards it.
      tc -n "$ns" qdisc add dev eth0 root netem delay "$delay" \
        || { down >/dev/null; die "netem unavailable (kernel module sch_netem); run 'up' without DELAY"; }
      tc qdisc add dev "veth-$ns" root netem delay "$delay"
    fi
  done
  if command -v ping >/dev/null; then
    for i in 0 1 2; do
      for j in 0 1 2; do
        [[ $i == "$j" ]] || ip netns exec "${NS[$i]}" ping -c1 -W2 "${IPS[$j]}" >/dev/null \
          || die "${NS[$i]} cannot reach ${IPS[$j]}"
      done
    done
  fi
  echo "up: ${NS[*]} on $BR${delay:+ with netem delay $delay per link direction}"
}

down() {
  for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "$BR" 2>/dev/null || true
  echo "down"
}

run() {
  local dir="$1"; shift
  [[ -x "$BENCH" ]] || die "$BENCH not built (cargo build --release -p coffer-bench)"
  [[ ! -e "$dir" ]] || die "$dir exists"
  "$BENCH" testnet-hosts --out "$dir" --hosts "${IPS[0]},${IPS[0]},${IPS[1]},${IPS[1]}" >/dev/null
  local pids=()
  cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
  trap cleanup EXIT
  for r in 0 1 2 3; do
    local ns="${NS[$((r / 2))]}"
    ip netns exec "$ns" "$BENCH" replica --home "$dir/replica$r" 2>"$dir/replica$r/replica.log" &
    pids+=($!)
  done
  ip netns exec "${NS[2]}" "$BENCH" run --cluster "$dir/cluster.json" \
    --issuer-key "$dir/issuer.key" --out "$dir/results" --name n4-3host "$@"
}

case "${1:-}" in
  up) shift; up "${1:-}" ;;
  down) down ;;
  run) shift; [[ $# -ge 1 ]] || die "usage: $0 run DIR [options]"; run "$@" ;;
  *) die "usage: $0 up [DELAY] | run DIR [coffer-bench run options] | down" ;;
esac
