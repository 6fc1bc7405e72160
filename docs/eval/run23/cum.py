import sys, collections, re
# cum.py file regex...: share of samples whose stack contains each regex
pats=sys.argv[2:]; c=collections.Counter(); total=0
for block in open(sys.argv[1]).read().split('\n\n'):
    lines=[l.strip() for l in block.strip().split('\n')[1:]]
    if not lines: continue
    total+=1
    s='\n'.join(lines)
    for p in pats:
        if re.search(p,s): c[p]+=1
for p in pats: print(f"{100*c[p]/total:5.1f}% {p}")
print(total)
