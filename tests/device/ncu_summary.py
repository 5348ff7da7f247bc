#!/usr/bin/env python3
"""Sum an `ncu --csv --metrics gpu__time_duration.sum` log per kernel name.

usage: ncu_summary.py LOG.csv [TITLE]   (prints a table: calls, us/call, total us, share)
ncu serialises kernels and flushes caches, so absolute sums exceed real runs;
the shares say where the time goes."""
import csv, sys, collections

rows = []
with open(sys.argv[1], newline="") as f:
    lines = [l for l in f if l.startswith('"')]
for r in csv.DictReader(lines):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    v = float(r["Metric Value"].replace(",", ""))
    unit = r.get("Metric Unit", "ns")
    us = v / 1000.0 if unit in ("ns", "nsecond") else v * 1000.0 if unit in ("ms", "msecond") else v
    name = r["Kernel Name"].split("(")[0][:60]
    rows.append((name, r.get("Grid Size", ""), r.get("Block Size", ""), us))
agg = collections.OrderedDict()
for name, g, b, us in rows:
    k = (name, g, b)
    c, t = agg.get(k, (0, 0.0))
    agg[k] = (c + 1, t + us)
total = sum(t for c, t in agg.values())
print("# %s: %d kernels, %.1f us total" % (sys.argv[2] if len(sys.argv) > 2 else sys.argv[1], len(rows), total))
print("%-60s %-16s %-14s %6s %9s %10s %6s" % ("kernel", "grid", "block", "calls", "us/call", "total us", "share"))
for (name, g, b), (c, t) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print("%-60s %-16s %-14s %6d %9.2f %10.1f %5.1f%%" % (name, g, b, c, t / c, t, 100 * t / total))
