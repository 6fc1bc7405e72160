import sys, collections, re
pats=[('simplex '+a, re.compile(r'commonware_consensus::simplex::actors::'+a)) for a in ['voter','batcher','resolver']]
pats+=[('marshal', re.compile(r'commonware_consensus::marshal')),
('p2p', re.compile(r'commonware_p2p')),
('storage(cw)', re.compile(r'commonware_storage')),
('coffer executor', re.compile(r'coffer_node::executor')),
('coffer witness', re.compile(r'coffer_node::witness')),
('coffer ledger/app', re.compile(r'coffer_node::(ledger|consensus|mempool|app)')),
('coffer api', re.compile(r'coffer_node::api')),
('coffer other', re.compile(r'coffer_node::')),
('blocking pool', re.compile(r'tokio::runtime::blocking::pool')),
('tokio park/sched', re.compile(r'tokio::runtime::scheduler|tokio::runtime::park|tokio::runtime::driver')),
]
c=collections.Counter(); total=0
for block in open(sys.argv[1]).read().split('\n\n'):
    lines=[l.strip() for l in block.strip().split('\n')[1:]]
    if not lines: continue
    total+=1
    k='other'
    for l in lines:
        hit=[n for n,p in pats if p.search(l)]
        if hit: k=hit[0]; break
    c[k]+=1
for k,v in c.most_common(): print(f"{100*v/total:5.1f}% {k}")
print(total,'samples')
