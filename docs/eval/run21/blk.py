import sys,re,datetime
# blk.py LOG SECS: blocks/s and txs/block over the last SECS of load (ending 1 s before the last block with txs>0)
pts=[]
for l in open(sys.argv[1]):
    m=re.match(r'(\S+)Z\s+INFO executed height=(\d+) txs=(\d+)',l)
    if m:
        t=datetime.datetime.fromisoformat(m.group(1)).timestamp(); pts.append((t,int(m.group(3))))
secs=float(sys.argv[2])
end=max(t for t,n in pts if n>0)-1; start=end-secs
w=[n for t,n in pts if start<=t<end]
print(f"blocks/s {len(w)/secs:.1f}  txs/block {sum(w)/len(w):.1f}  txs/s {sum(w)/secs:.0f}")
