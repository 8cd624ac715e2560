#!/usr/bin/env python3
"""btfctl's JSON output against bpftool's, on this machine's /sys/kernel/btf/vmlinux.

Whole processes, output to /dev/null, median of N runs each, interleaved:
- ``bpftool btf dump file F -j`` (the reference: the same type objects, fewer fields);
- ``btfctl dump --file F --format json`` (every type through the wire message and the one JSON
  converter, docs/JSON.md);
- ``btfctl dump --file F --format raw`` (bpftool's text format, for scale).

    .venv/bin/python bench/bench_json.py [--btf PATH] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BTFCTL = os.path.join(os.path.dirname(sys.executable), "btfctl")


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    cmds = {
        "bpftool btf dump -j": [bpftool, "btf", "dump", "file", a.btf, "-j"],
        "btfctl dump --format json": [BTFCTL, "dump", "--file", a.btf, "--format", "json"],
        "btfctl dump --format raw": [BTFCTL, "dump", "--file", a.btf, "--format", "raw"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(a.runs):
        for k, c in cmds.items():
            times[k].append(wall(c))
    ref = statistics.median(times["bpftool btf dump -j"])
    print(f"{a.btf}, {a.runs} runs each, median wall time (min):")
    for k, ts in times.items():
        m = statistics.median(ts)
        print(f"  {k:<28} {m * 1000:7.0f} ms ({min(ts) * 1000:.0f})  {m / ref:5.2f}x bpftool -j")
    return 0


if __name__ == "__main__":
    sys.exit(main())
