#!/usr/bin/env python3
"""Agent-side benchmark: what an agent pays to use btfd.

- private memory an agent adds with ``open_shared`` (fd over SCM_RIGHTS, mapped, name index
  built), measured in a fresh process from /proc/self/smaps_rollup;
- lookup latency in-process (over the shared mapping) vs over gRPC, same names;
- btfctl cold start to the answer of a lookup against a running daemon.

    .venv/bin/python bench/bench_client.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"

MEM = textwrap.dedent("""
    import json, sys, time
    def private():
        f = dict(l.split()[:2] for l in open('/proc/self/smaps_rollup') if l.endswith('kB\\n'))
        return (int(f['Private_Clean:']) + int(f['Private_Dirty:'])) * 1024, int(f['Anonymous:']) * 1024
    import btfd.btf.spec, btfd.source, btfd.client, btfd.btf.kinds  # imports are not the BTF's cost
    from btfd_client import open_shared, Kind
    p0, a0 = private()
    t0 = time.perf_counter()
    s = open_shared(socket_path=sys.argv[1])
    t1 = time.perf_counter()
    s.spec.find_one('task_struct', Kind.STRUCT)
    t2 = time.perf_counter()
    p1, a1 = private()
    print(json.dumps({"private": p1 - p0, "anon": a1 - a0, "open_ms": (t1 - t0) * 1e3,
                      "first_lookup_ms": (t2 - t0) * 1e3, "blob": s.answer["size"],
                      "index": sum(s.spec.index_bytes().values())}))
""")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from btfd.btf import Kind, Spec
    from btfd.client import Client
    from btfd.shared import open_shared

    spec = Spec(Path("/sys/kernel/btf/vmlinux").read_bytes())
    names = sorted({t.name for t in spec.types(Kind.STRUCT) if t.name})[::20][:500]
    with tempfile.TemporaryDirectory() as d:
        sock = f"{d}/btfd.sock"
        daemon = subprocess.Popen([str(BIN / "btfd"), "--socket", sock, "--metrics-address", "off",
                                   "--log-level", "warning"])
        try:
            while not os.path.exists(sock + ".fd"):
                time.sleep(0.05)
            time.sleep(0.3)
            mems = [json.loads(subprocess.run([sys.executable, "-c", MEM, sock], capture_output=True, text=True,
                                              check=True).stdout) for _ in range(5)]
            shared = open_shared(socket_path=sock)
            local = []
            for n in names:
                t0 = time.perf_counter()
                shared.spec.find(n, Kind.STRUCT)
                local.append(time.perf_counter() - t0)
            c = Client(sock)
            remote = []
            for n in names:
                t0 = time.perf_counter()
                c.lookup_type(n, kind=Kind.STRUCT)
                remote.append(time.perf_counter() - t0)
            cold = []
            for _ in range(10):
                t0 = time.perf_counter()
                subprocess.run([str(BIN / "btfctl"), "--socket", sock, "lookup", "task_struct"],
                               capture_output=True, check=True)
                cold.append(time.perf_counter() - t0)
            helpt = []
            for _ in range(10):
                t0 = time.perf_counter()
                subprocess.run([str(BIN / "btfctl"), "--help"], capture_output=True, check=True)
                helpt.append(time.perf_counter() - t0)
            shared.close()
            c.close()
        finally:
            daemon.terminate()
            daemon.wait(20)
    med = {k: statistics.median(m[k] for m in mems) for k in mems[0]}
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d')}; medians")
    print(f"- open_shared + first lookup, fresh process: private memory {med['private'] / 1048576:.2f} MiB, "
          f"anonymous {med['anon'] / 1048576:.2f} MiB (blob {med['blob'] / 1048576:.2f} MiB, index "
          f"{med['index'] / 1048576:.2f} MiB); open {med['open_ms']:.1f} ms, to first lookup {med['first_lookup_ms']:.1f} ms")
    print(f"- lookup by name (decoded struct), in-process over the shared mapping: "
          f"{statistics.median(local) * 1e6:.1f} us median")
    print(f"- LookupType over gRPC (structured + C text, cached after first use): "
          f"{statistics.median(remote) * 1e6:.1f} us median")
    print(f"- btfctl lookup task_struct, cold process to answer: {statistics.median(cold) * 1e3:.0f} ms median "
          f"(min {min(cold) * 1e3:.0f}); btfctl --help: {statistics.median(helpt) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
