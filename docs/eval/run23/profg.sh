#!/usr/bin/env bash
# profg.sh NAME args... : like prof.sh but call graph (dwarf) of the replicas only, 6 s
cd /work/main
NAME=$1; shift
./target/release/coffer-bench run "$@" --work-dir /dev/shm/cbw --no-progress --out /dev/shm/prof-$NAME > /dev/shm/prof-$NAME.log 2>&1 &
B=$!
while ! grep -q "warm-up" /dev/shm/prof-$NAME.log 2>/dev/null; do sleep 0.5; done
sleep ${PSLEEP:-20}
pids=$(pgrep -f "coffer-bench replica" | tr '\n' ',' | sed 's/,$//')
perf record -F 499 --call-graph dwarf,16384 -o /dev/shm/prof-$NAME.data -p "${pids}" -- sleep 6 2>/dev/null >/dev/null
wait $B
tail -1 /dev/shm/prof-$NAME.log
