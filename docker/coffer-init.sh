#!/bin/sh
# coffer-init: generates a Coffer testnet into a shared volume, once, for the compose files.
#
# It runs `coffer-node testnet` into a staging directory, adapts the result to a container
# network, then moves it into place and writes OUT/.complete last. A second run finds
# `.complete` and does nothing; a run that finds a half-written volume (no `.complete`, e.g. the
# container was killed mid-way) clears it and starts over.
#
# Adaptations (the generator assumes every replica on one host):
#   - peer addresses: replica K's p2p address becomes IP_K:P2P_PORT (its static address on the
#     compose network; the node's config takes socket addresses, not host names);
#   - storage: the [storage] section is replaced by COFFER_INIT_STORAGE with @PREFIX@ set to
#     `coffer:<chain id>:replicaK`, so every replica has its own Redis namespace and a new
#     chain never reads an old chain's keys;
#   - replicaK/health.json: a one-replica (f = 0) client config pointing at
#     https://127.0.0.1:API_PORT, used only by the container health check (liveness of this
#     replica's API over TLS pinned to the cluster CA). Never use it as a wallet config.
# cluster.json keeps the generator's https://127.0.0.1:BASE_PORT+K URLs: the compose files
# publish replica K's API on 127.0.0.1:BASE_PORT+K of the host.
#
# Environment (all optional except COFFER_INIT_PEER_IPS):
#   COFFER_INIT_OUT        output directory (default /cluster)
#   COFFER_INIT_REPLICAS   number of replicas (default 4)
#   COFFER_INIT_BASE_PORT  host port of replica0's API; replica K gets +K (default 8443)
#   COFFER_INIT_PEER_IPS   space-separated IPv4 address of each replica, in order
#   COFFER_INIT_P2P_PORT   p2p port every replica listens on in its container (default 8543)
#   COFFER_INIT_API_PORT   API port every replica listens on in its container (default 8443)
#   COFFER_INIT_STORAGE    TOML body of [storage] (may use @PREFIX@); empty: keep the generated one
#   COFFER_INIT_SPENT_HORIZON  blocks the ledger remembers spent outputs (genesis; default 10000)
#   COFFER_NODE            the coffer-node binary (default coffer-node)
set -eu

OUT="${COFFER_INIT_OUT:-/cluster}"
N="${COFFER_INIT_REPLICAS:-4}"
BASE_PORT="${COFFER_INIT_BASE_PORT:-8443}"
PEER_IPS="${COFFER_INIT_PEER_IPS:-}"
P2P_PORT="${COFFER_INIT_P2P_PORT:-8543}"
API_PORT="${COFFER_INIT_API_PORT:-8443}"
NODE="${COFFER_NODE:-coffer-node}"
SPENT_HORIZON="${COFFER_INIT_SPENT_HORIZON:-}"
# Must match P2P_PORT_OFFSET in node/src/testnet.rs: the generator's p2p port of replica K is
# BASE_PORT + 100 + K.
GEN_P2P_OFFSET=100

die() { echo "coffer-init: error: $*" >&2; exit 1; }
log() { echo "coffer-init: $*"; }

case "$N" in '' | *[!0-9]*) die "COFFER_INIT_REPLICAS=$N is not a number" ;; esac
set -- $PEER_IPS
[ "$#" -eq "$N" ] || die "COFFER_INIT_PEER_IPS has $# addresses, want $N (one per replica)"

if [ -f "$OUT/.complete" ]; then
  log "$OUT already holds a generated testnet ($(cat "$OUT/.complete")); nothing to do"
  exit 0
fi
mkdir -p "$OUT" || die "cannot create $OUT"
if [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  log "$OUT holds an incomplete generation; clearing it"
  find "$OUT" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
fi

STAGE="$OUT/.staging"
"$NODE" testnet --replicas "$N" --out "$STAGE" --base-port "$BASE_PORT" --host 127.0.0.1 \
  ${SPENT_HORIZON:+--spent-horizon "$SPENT_HORIZON"} \
  || die "coffer-node testnet failed"

CHAIN="$(sed -n 's/.*"chain_id"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$STAGE/cluster.json" | head -n 1)"
[ -n "$CHAIN" ] || die "no chain_id in $STAGE/cluster.json"

k=0
for ip in "$@"; do
  gen_p2p=$((BASE_PORT + GEN_P2P_OFFSET + k))
  for cfg in "$STAGE"/replica*/config.toml; do
    sed -i "s|\"127\.0\.0\.1:$gen_p2p\"|\"$ip:$P2P_PORT\"|g" "$cfg"
  done
  k=$((k + 1))
done

k=0
while [ "$k" -lt "$N" ]; do
  name="replica$k"
  cfg="$STAGE/$name/config.toml"
  [ -f "$cfg" ] || die "the generator wrote no $cfg"
  # Every peer entry must now carry its replica's network address: anything else means the
  # generator's layout changed and the replicas could not reach each other.
  [ "$(grep -c '^address = ' "$cfg")" -eq "$N" ] || die "$cfg does not list $N peers"
  for ip in "$@"; do
    grep -q "^address = \"$ip:$P2P_PORT\"" "$cfg" || die "$cfg: no peer at $ip:$P2P_PORT after rewriting"
  done
  if [ -n "${COFFER_INIT_STORAGE:-}" ]; then
    prefix="coffer:$CHAIN:$name"
    PREFIX="$prefix" awk '
      BEGIN { body = ENVIRON["COFFER_INIT_STORAGE"]; gsub(/@PREFIX@/, ENVIRON["PREFIX"], body); sub(/\n+$/, "", body) }
      /^\[storage\]/ { print; print body; skipping = 1; replaced = 1; next }
      skipping && /^\[/ { skipping = 0; print "" }
      !skipping { print }
      END { if (!replaced) exit 3 }
    ' "$cfg" >"$cfg.new" || die "$cfg has no [storage] section to replace"
    mv "$cfg.new" "$cfg"
  fi
  # The replica's public key, from cluster.json (one "key": "value" per line, any key order).
  pk="$(awk -v want="$name" '
    /"name"/ { v = $0; sub(/^[^:]*:[[:space:]]*"/, "", v); sub(/".*$/, "", v); cur = v }
    /"public_key"/ { v = $0; sub(/^[^:]*:[[:space:]]*"/, "", v); sub(/".*$/, "", v); key = v }
    /}/ { if (cur == want && key != "") { print key; exit } cur = ""; key = "" }
  ' "$STAGE/cluster.json")"
  case "$pk" in
    '' | *[!0-9a-f]*) die "no public key for $name in $STAGE/cluster.json" ;;
  esac
  cat >"$STAGE/$name/health.json" <<EOF
{
  "chain_id": "$CHAIN",
  "f": 0,
  "replicas": [
    { "name": "$name", "url": "https://127.0.0.1:$API_PORT", "public_key": "$pk" }
  ],
  "ca_cert": "../tls/ca.pem"
}
EOF
  k=$((k + 1))
done

for entry in "$STAGE"/* "$STAGE"/.[!.]*; do
  [ -e "$entry" ] || continue
  mv "$entry" "$OUT/"
done
rmdir "$STAGE"
echo "chain $CHAIN, $N replicas, generated $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$OUT/.complete"
log "testnet $CHAIN with $N replicas written to $OUT (DEV ONLY keys and certificates)"
log "wallet config: $OUT/cluster.json (CA: $OUT/tls/ca.pem)"
