#!/usr/bin/env bash
# Rehearses a compose file without a container engine (root, Linux): every Coffer replica runs
# in its own network namespace on a bridge, at the compose file's static address, with the
# environment the compose file gives it; `coffer-init` runs with the init service's environment;
# Redis (sentinel group or cluster, AOF on) runs on the bridge address with the topology the
# compose file describes (Redis addresses in the storage template are mapped to it). A
# forwarder publishes each API on 127.0.0.1 like Docker's port mapping, and the host-side wallet
# uses cluster.json + the CA copied out of the generated directory, as docs/DEPLOY.md says.
#
#   docker/rehearse.sh sentinel|cluster BIN_DIR     # BIN_DIR holds coffer-node and coffer
#
# Checks, in order: every replica's container health check (`coffer --cluster
# /cluster/replicaK/health.json status` inside its namespace) passes; mint + transfer through
# the published ports are verified by f+1 replicas; a replica killed and restarted with the same
# data recovers; the Redis master (sentinel) or a cluster master is killed and a transfer still
# commits. Everything it started is stopped on exit. Takes about a minute.
set -euo pipefail

MODE="${1:-}"; BIN="${2:-}"
[[ "$MODE" == sentinel || "$MODE" == cluster ]] && [[ -x "$BIN/coffer-node" && -x "$BIN/coffer" ]] \
  || { echo "usage: $0 sentinel|cluster BIN_DIR (with coffer-node and coffer)" >&2; exit 2; }
BIN="$(cd "$BIN" && pwd)"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COMPOSE="$ROOT/docker/compose.$MODE.yml"
W="$(mktemp -d /tmp/coffer-rehearse-XXXXXX)"
BR="cofrh$$"; BR="${BR:0:15}"
NS_PREFIX="cofrh$$-"
HOST_PORT=29443          # cluster.json's first host port here (compose uses 8443 / 9443)
REDIS_PORT=29600         # first Redis port on the bridge address
PIDS=()

die() { echo "rehearse: FAIL: $*" >&2; exit 1; }
step() { echo "rehearse: $*"; }

compose() { python3 - "$COMPOSE" "$@" <<'PY'
import sys, yaml, shlex, ipaddress
doc = yaml.safe_load(open(sys.argv[1])); what = sys.argv[2]
svc = doc["services"]
if what == "subnet":
    print(doc["networks"]["coffer"]["ipam"]["config"][0]["subnet"])
elif what == "env":
    for k, v in (svc[sys.argv[3]].get("environment") or {}).items():
        print(f"export {k}={shlex.quote(str(v).replace('${COFFER_LOG:-info}', 'info'))}")
elif what == "ip":
    print(svc[sys.argv[3]]["networks"]["coffer"]["ipv4_address"])
elif what == "redis-ips":   # data nodes then sentinels, in file order
    for name, s in svc.items():
        if str(s.get("image", "")).startswith("redis:") and "networks" in s and isinstance(s["networks"], dict):
            cmd = " ".join(map(str, s.get("command", []))) if isinstance(s.get("command"), list) else str(s.get("command", ""))
            kind = "sentinel" if "--sentinel" in cmd else "data"
            print(kind, s["networks"]["coffer"]["ipv4_address"])
PY
}

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for f in "$W"/redis/redis-*.pid; do kill "$(cat "$f" 2>/dev/null)" 2>/dev/null; done
  sleep 1
  for k in 0 1 2 3; do ip netns del "${NS_PREFIX}$k" 2>/dev/null; done
  ip link del "$BR" 2>/dev/null
  [[ -n "${KEEP:-}" ]] || rm -rf "$W"
}
trap cleanup EXIT

SUBNET="$(compose subnet)"
GW="$(python3 -c "import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))" "$SUBNET")"
PREFIXLEN="${SUBNET#*/}"
ip link add "$BR" type bridge
ip addr add "$GW/$PREFIXLEN" dev "$BR"
ip link set "$BR" up
for k in 0 1 2 3; do
  ns="${NS_PREFIX}$k"
  ip netns add "$ns"
  ip link add "${BR}v$k" type veth peer name eth0 netns "$ns"
  ip link set "${BR}v$k" master "$BR"; ip link set "${BR}v$k" up
  ip -n "$ns" addr add "$(compose ip replica$k)/$PREFIXLEN" dev eth0
  ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up
done

# Redis with the compose file's topology, on GW:REDIS_PORT+i; SEDMAP maps compose addresses.
mkdir -p "$W/redis"
redis() { local p=$1; shift; mkdir -p "$W/redis/$p"
  redis-server --port "$p" --bind "$GW" --protected-mode no --dir "$W/redis/$p" --daemonize yes \
    --pidfile "$W/redis/redis-$p.pid" --logfile "$W/redis/redis-$p.log" \
    --appendonly yes --save '' "$@" >/dev/null; }
wait_ping() { for _ in $(seq 100); do [[ "$(redis-cli -h "$GW" -p "$1" ping 2>/dev/null)" == PONG ]] && return; sleep 0.1; done; die "redis $1 not up"; }
SEDMAP=""; data_ports=(); sentinel_ports=(); i=0
while read -r kind ip; do
  p=$((REDIS_PORT + i)); i=$((i + 1))
  if [[ "$kind" == sentinel ]]; then
    SEDMAP+="s|$ip:26379|$GW:$p|g;"; sentinel_ports+=("$p")
  else
    SEDMAP+="s|$ip:6379|$GW:$p|g;"; data_ports+=("$p")
  fi
done < <(compose redis-ips)
if [[ "$MODE" == sentinel ]]; then
  master="${data_ports[0]}"
  redis "$master"; wait_ping "$master"
  for p in "${data_ports[@]:1}"; do redis "$p" --replicaof "$GW" "$master"; wait_ping "$p"; done
  for p in "${sentinel_ports[@]}"; do
    printf '%s\n' "port $p" "bind $GW" "protected-mode no" "daemonize yes" \
      "pidfile $W/redis/redis-$p.pid" "logfile $W/redis/redis-$p.log" "dir $W/redis" \
      "sentinel monitor coffer $GW $master 2" "sentinel down-after-milliseconds coffer 2000" \
      "sentinel failover-timeout coffer 10000" >"$W/redis/sentinel-$p.conf"
    redis-server "$W/redis/sentinel-$p.conf" --sentinel >/dev/null
  done
  for _ in $(seq 100); do
    redis-cli -h "$GW" -p "${sentinel_ports[0]}" sentinel ckquorum coffer 2>/dev/null | grep -q OK && break; sleep 0.1
  done
else
  addrs=()
  for p in "${data_ports[@]}"; do
    redis "$p" --cluster-enabled yes --cluster-config-file "$W/redis/nodes-$p.conf" --cluster-node-timeout 2000
    addrs+=("$GW:$p")
  done
  for p in "${data_ports[@]}"; do wait_ping "$p"; done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$W/redis/create.log" 2>&1 \
    || die "cluster create failed: $(tail -3 "$W/redis/create.log")"
  for p in "${data_ports[@]}"; do
    for _ in $(seq 200); do redis-cli -h "$GW" -p "$p" cluster info | grep -q '^cluster_state:ok' && break; sleep 0.1; done
  done
fi
step "redis ($MODE) up on $GW"

eval "$(compose env init)"
export COFFER_INIT_OUT="$W/cluster" COFFER_NODE="$BIN/coffer-node" COFFER_INIT_BASE_PORT="$HOST_PORT"
COFFER_INIT_STORAGE="$(printf '%s\n' "$COFFER_INIT_STORAGE" | sed -e "$SEDMAP")"
export COFFER_INIT_STORAGE
sh "$ROOT/docker/coffer-init.sh" >"$W/init.log" 2>&1 || die "coffer-init: $(tail -3 "$W/init.log")"
again="$(sh "$ROOT/docker/coffer-init.sh")"; [[ "$again" == *"nothing to do"* ]] || die "second coffer-init run did not skip"

start_replica() {
  local k=$1
  ( eval "$(compose env "replica$k")"
    export COFFER_DATA_DIR="$W/data$k"      # the compose file mounts a volume at /data
    exec ip netns exec "${NS_PREFIX}$k" "$BIN/coffer-node" start --home "$W/cluster/replica$k" \
      >>"$W/replica$k.log" 2>&1 ) &
  PIDS[$k]=$!
}
health() { ip netns exec "${NS_PREFIX}$1" env HOME="$W/home" "$BIN/coffer" \
  --cluster "$W/cluster/replica$1/health.json" status >/dev/null 2>&1; }
wait_healthy() {
  for _ in $(seq 60); do health "$1" && return; sleep 1; done
  die "replica$1 never healthy: $(tail -3 "$W/replica$1.log")"
}
for k in 0 1 2 3; do start_replica "$k"; done
cat >"$W/forward.py" <<'PY'
# Docker's port mapping: 127.0.0.1:HOST_PORT+K -> replica K's address, port 8443.
import asyncio, sys
base = int(sys.argv[1]); ips = sys.argv[2:]
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    except Exception:
        pass
    finally:
        w.close()
def handler(ip):
    async def h(r, w):
        try:
            r2, w2 = await asyncio.open_connection(ip, 8443)
        except Exception:
            w.close(); return
        await asyncio.gather(pipe(r, w2), pipe(r2, w))
    return h
async def main():
    servers = [await asyncio.start_server(handler(ip), "127.0.0.1", base + k) for k, ip in enumerate(ips)]
    await asyncio.gather(*(s.serve_forever() for s in servers))
asyncio.run(main())
PY
replica_ips=(); for k in 0 1 2 3; do replica_ips+=("$(compose ip "replica$k")"); done
python3 "$W/forward.py" "$HOST_PORT" "${replica_ips[@]}" >"$W/forward.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$HOST_PORT") 2>/dev/null && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || die "port forwarder exited: $(cat "$W/forward.log")"
  sleep 0.1
done
for k in 0 1 2 3; do wait_healthy "$k"; done
step "4 replicas healthy (container health check)"

# The wallet on the host: cluster.json and the CA copied out, as in docs/DEPLOY.md.
export HOME="$W/home" COFFER_PASSWORD=rehearsal COFFER_KDF_M_KIB=64 COFFER_KDF_T=1
mkdir -p "$HOME/coffer/tls"
cp "$W/cluster/cluster.json" "$HOME/coffer/"; cp "$W/cluster/tls/ca.pem" "$HOME/coffer/tls/"
cli() { "$BIN/coffer" --cluster "$HOME/coffer/cluster.json" "$@"; }
cli status >/dev/null || die "coffer status through the published ports"
cli keys import issuer <"$W/cluster/issuer.key" >/dev/null
cli keys new alice >/dev/null; cli keys new bob >/dev/null
cli mint --issuer issuer --to alice 1000 >/dev/null || die "mint"
cli send --from alice --to bob 250 >/dev/null || die "send"
balance="$(cli balance bob)"; [[ "$balance" == *": 250 "* ]] || die "bob's balance is not 250: $balance"
step "mint + transfer verified through 127.0.0.1:$HOST_PORT..$((HOST_PORT + 3))"

kill "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true
health 2 && die "health check passes with replica2 down"
cli send --from alice --to bob 10 >/dev/null || die "send with replica2 down"
start_replica 2
wait_healthy 2
step "replica2 replaced (same data, same keys) and healthy again"

if [[ "$MODE" == sentinel ]]; then
  kill -9 "$(cat "$W/redis/redis-${data_ports[0]}.pid")"
else
  victim="$(redis-cli -h "$GW" -p "${data_ports[0]}" cluster nodes | awk '/master/ && !/fail/ {split($2, a, "[:@]"); print a[2]; exit}')"
  kill -9 "$(cat "$W/redis/redis-$victim.pid")"
  # As the compose file's restart policy would: the node comes back (as a replica of the
  # promoted one), which a one-replica-per-master cluster needs before WAIT 1 succeeds again
  # for that master's slots.
  ( sleep 6
    redis "$victim" --cluster-enabled yes --cluster-config-file "$W/redis/nodes-$victim.conf" \
      --cluster-node-timeout 2000 ) &
fi
cli send --from alice --to bob 5 >/dev/null || die "send after a Redis master was killed"
balance="$(cli balance bob)"; [[ "$balance" == *": 265 "* ]] || die "bob's balance is not 265: $balance"
step "Redis master killed; transfer committed after failover"
echo "rehearse $MODE: OK"
