"""summarize.py FILE...: per build, each round's transfers/s, p50 and p99 (ms) and replica
µs per transfer from ab.sh output, and the means."""
import re, sys, collections

for path in sys.argv[1:]:
    rows = collections.defaultdict(list)
    label = None
    for line in open(path):
        m = re.match(r"== (\S+) round", line)
        if m:
            label = m.group(1)
            continue
        m = re.search(r"= (\d+)/s; p50 ([\d.]+) ms p90 [\d.]+ ms p99 ([\d.]+) ms", line)
        if m and label:
            rows[label].append([float(m.group(i)) for i in (1, 2, 3)])
            continue
        m = re.search(r"replicas_us_per_transfer': ([\d.]+)", line)
        if m and label and rows[label] and len(rows[label][-1]) == 3:
            rows[label][-1].append(float(m.group(1)))
    print(path)
    for label, rs in rows.items():
        cols = list(zip(*rs))
        means = " / ".join(f"{sum(c) / len(c):.1f}" for c in cols)
        each = ", ".join("/".join(f"{v:g}" for v in r) for r in rs)
        print(f"  {label:8} n={len(rs)} means {means}\n           {each}")
