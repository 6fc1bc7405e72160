#!/usr/bin/env bash
# tr.sh N RATE TH SECS — N replicas by hand with COFFER_LOG=$LOG, bench --cluster at RATE
BIN=/work/main/target/release/coffer-node; BENCH=/work/main/target/release/coffer-bench
N=$1; RATE=$2; TH=$3; SECS=$4
cd /dev/shm && rm -rf tn && $BIN testnet --replicas $N --out /dev/shm/tn --base-port 19000 >/dev/null
for i in $(seq 0 $((N-1))); do sed -i "s/requests_per_second = 200/requests_per_second = 1000000/" tn/replica$i/config.toml; [ -n "$SEDX" ] && sed -i "$SEDX" tn/replica$i/config.toml; done
pids=()
for i in $(seq 0 $((N-1))); do COFFER_LOG="${LOG:-warn,coffer_node=info}" $BIN start --home tn/replica$i > tn/r$i.log 2>&1 & pids+=($!); done
sleep 3
R=""; [ "$RATE" != "0" ] && R="--rate $RATE"
$BENCH run --cluster tn/cluster.json --issuer-key tn/issuer.key $R --threads $TH --duration $SECS --warmup 3 --no-progress --out /dev/shm/hlo 2>&1 | tail -1
kill "${pids[@]}"; wait 2>/dev/null
