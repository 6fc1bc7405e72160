#!/bin/bash
# Interleaved A/B of /dev/shm/b-$A and /dev/shm/b-$B. Usage: A=base B=thin ab.sh OUT ROUNDS ARGS...
out=$1; rounds=$2; shift 2
for i in $(seq 1 $rounds); do
  for v in $A $B; do
    echo "== $v round $i $(date -u +%H:%M:%S)" >> $out
    /dev/shm/b-$v run "$@" --scripts /work/main/scripts --work-dir /dev/shm/cbw --no-progress --out /dev/shm/ab-out-$v 2>&1 | tail -1 >> $out
    python3 -c "
import json,sys
d=json.load(open(max(__import__('glob').glob('/dev/shm/ab-out-$v/*.json'), key=__import__('os').path.getmtime)))['measurement']['cpu']
print('   cpu', {k:round(v,3) for k,v in d.items()})" >> $out
  done
done
