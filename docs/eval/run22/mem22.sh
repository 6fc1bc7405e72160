#!/bin/bash
# RSS of the replica and Redis every 5 s during one n=1 standalone open-loop run.
# Usage: mem22.sh old|new OUTCSV
v=$1; out=$2
/dev/shm/bench22-$v run --replicas 1 --store standalone --threads 256 --rate 3000 --duration 240 --warmup 5 --work-dir /dev/shm/cbw --no-progress --scripts /work/main/scripts --out /dev/shm/mem22-$v > /dev/shm/mem22-$v.log 2>&1 &
bench=$!
echo "unix_s,replica_rss_kb,redis_rss_kb" > $out
while kill -0 $bench 2>/dev/null; do
  r=$(pgrep -f "bench22-$v replica --home" | head -1); d=$(pgrep -f "redis-server 127.0.0.1" | head -1)
  rr=$( [ -n "$r" ] && awk '/VmRSS/{print $2}' /proc/$r/status 2>/dev/null); dr=$( [ -n "$d" ] && awk '/VmRSS/{print $2}' /proc/$d/status 2>/dev/null)
  echo "$(date +%s),${rr:-0},${dr:-0}" >> $out
  sleep 5
done
