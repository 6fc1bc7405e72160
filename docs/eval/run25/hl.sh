#!/usr/bin/env bash
# hl.sh RATE THREADS [secs] — 4 replicas by hand, coffer-bench --cluster at RATE; blocks/s during the window
BIN=/work/main/target/release/coffer-node; BENCH=/work/main/target/release/coffer-bench
RATE=$1; TH=$2; SECS=${3:-20}
cd /dev/shm && rm -rf tn && $BIN testnet --replicas 4 --out /dev/shm/tn --base-port 19000 >/dev/null
for i in 0 1 2 3; do sed -i "s/requests_per_second = 200/requests_per_second = 1000000/" tn/replica$i/config.toml; done
[ -n "$SEDX" ] && for i in 0 1 2 3; do sed -i "$SEDX" tn/replica$i/config.toml; done
pids=()
for i in 0 1 2 3; do $BIN start --home tn/replica$i > tn/r$i.log 2>&1 & pids+=($!); done
height() { curl -sk --cacert tn/tls/ca.pem https://127.0.0.1:19000/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["height"])'; }
cpu() { t=0; for p in "${pids[@]}"; do s=$(awk '{print $14+$15}' /proc/$p/stat); t=$((t+s)); done; echo $t; }
sleep 3
R=""; [ "$RATE" != "0" ] && R="--rate $RATE"
$BENCH run --cluster tn/cluster.json --issuer-key tn/issuer.key $R --threads $TH --duration $SECS --warmup 5 --no-progress --out /dev/shm/hlo > /dev/shm/hl.out 2>&1 &
bp=$!
# wait for the warm-up to end: funding + 5 s
sleep 4
sleep 6
h0=$(height); c0=$(cpu); s=$SECS; sleep $((s-4))
h1=$(height); c1=$(cpu)
wait $bp
tck=$(getconf CLK_TCK)
tail -1 /dev/shm/hl.out
python3 -c "s=$s-4; b=$h1-$h0; c=($c1-$c0)/$tck; print(f'blocks/s {b/s:.1f}  replica cores {c/s:.2f}  ms CPU per block {1000*c/b:.2f}')"
kill "${pids[@]}"; wait 2>/dev/null
