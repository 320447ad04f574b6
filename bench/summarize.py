#!/usr/bin/env python3
"""Summarizes bench/vs-etcd.sh output: median [min .. max] per label and metric.

Reads JSON lines from stdin: coordbench's flat objects and etcd loadgen's {"label", "m": {...}}.
A line's "rss" string (the members' /proc status fields) becomes per-member figures in MB
(VmRSS, RssAnon, RssFile), every member of every repetition counted.
"""
import json
import re
import statistics
import sys
from collections import defaultdict

RSS_FIELD = re.compile(r"(VmRSS|RssAnon|RssFile):\s*([0-9.]+)\s*(kB|MB)")


def rss_figures(text):
    out = defaultdict(list)
    for field, value, unit in RSS_FIELD.findall(text):
        mb = float(value) / 1024 if unit == "kB" else float(value)
        out[field + "_mb"].append(mb)
    return out


runs = defaultdict(lambda: defaultdict(list))
order = []
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    obj = json.loads(line)
    label = obj.pop("label")
    metrics = obj.pop("m", obj)
    if label not in runs:
        order.append(label)
    for name, value in metrics.items():
        if isinstance(value, (int, float)):
            runs[label][name].append(value)
        elif name == "rss" and isinstance(value, str):
            for field, values in rss_figures(value).items():
                runs[label][field].extend(values)

print("| label | n | metric: median [min .. max] |")
print("|---|---|---|")
for label in order:
    cells = []
    n = 0
    for name, values in runs[label].items():
        n = max(n, len(values))
        cells.append(f"{name}: {statistics.median(values):.4g} [{min(values):.4g} .. {max(values):.4g}]")
    print(f"| {label} | {n} | {'; '.join(cells)} |")
