#!/usr/bin/env bash
# Usage: perview.sh BIN [secs] — 4 replicas, empty blocks back to back; blocks/s and CPU per block.
BIN=$1; SECS=${2:-20}
cd /dev/shm && rm -rf tn && $BIN testnet --replicas 4 --out /dev/shm/tn --base-port 19000 >/dev/null
for i in 0 1 2 3; do sed -i 's/^idle_block_ms = 300 /idle_block_ms = 0 /' tn/replica$i/config.toml; done
if [ -n "$RETAIN" ]; then for i in 0 1 2 3; do sed -i "s/^# retain_blocks = 1000000/retain_blocks = $RETAIN/" tn/replica$i/config.toml; done; fi
if [ -n "$URING" ]; then for i in 0 1 2 3; do sed -i "s/^# \[runtime\]/[runtime]/; s/^# engine = \"io_uring\"/engine = \"io_uring\"/" tn/replica$i/config.toml; done; fi
pids=()
for i in 0 1 2 3; do $BIN start --home tn/replica$i > tn/r$i.log 2>&1 & pids+=($!); done
height() { curl -sk --cacert tn/tls/ca.pem https://127.0.0.1:19000/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["height"])'; }
cpu() { t=0; for p in "${pids[@]}"; do s=$(awk '{print $14+$15}' /proc/$p/stat); t=$((t+s)); done; echo $t; }
sleep 8
h0=$(height); c0=$(cpu)
if [ -n "$PERF" ]; then perf record -q -F 499 --call-graph dwarf,16384 -p ${pids[0]} -o /dev/shm/pv.data -- sleep $SECS 2>/dev/null; else sleep $SECS; fi
h1=$(height); c1=$(cpu)
tck=$(getconf CLK_TCK)
python3 -c "b=$h1-$h0; c=($c1-$c0)/$tck; print(f'blocks/s {b/$SECS:.1f}  cores {c/$SECS:.2f}  ms CPU per block (4 replicas) {1000*c/b:.2f}')"
kill "${pids[@]}"; wait 2>/dev/null
