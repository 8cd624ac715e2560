"""A minimal Python agent for bench/bench_node.py: does its BTF work, prints what it measured
as one JSON line, then stays alive (so its memory can be read) until stdin closes.

    py_agent.py shared|shared-idle|grpc|grpc-idle FD_SOCKET GRPC_SOCKET

``*-idle`` imports the same modules and does nothing: the baseline its BTF work is measured
against."""

from __future__ import annotations

import json
import sys
import time

mode, fd_socket, grpc_socket = sys.argv[1:4]
if mode.startswith("shared"):
    from btfd_client import Kind, open_shared

    import btfd.source  # noqa: F401  (imported by open_shared on first use: not the BTF's cost)

    def private() -> int:
        """This process's Private_Clean + Private_Dirty (bytes)."""
        f = dict(ln.split()[:2] for ln in open("/proc/self/smaps_rollup") if ln.endswith("kB\n"))
        return (int(f["Private_Clean:"]) + int(f["Private_Dirty:"])) * 1024

    out: dict[str, object] = {}
    p0 = private()  # idle twins too: the same allocations before the work
    if mode == "shared":
        t0 = time.perf_counter()
        s = open_shared("vmlinux", fd_socket=fd_socket)
        t = s.spec.find_one("task_struct", Kind.STRUCT)
        t1 = time.perf_counter()
        out = {"open_find_ms": (t1 - t0) * 1e3, "size": t.size, "private": private() - p0,
               "index": s.spec.index_bytes()}
else:
    from btfd_client import Client, Kind

    c = Client(grpc_socket)
    c.health()  # connected: the channel is part of the baseline
    out = {}
    if mode == "grpc":
        t0 = time.perf_counter()
        r = c.lookup_type("task_struct", kind=Kind.STRUCT)
        out = {"lookup_ms": (time.perf_counter() - t0) * 1e3, "size": r.types[0].size}
print(json.dumps(out), flush=True)
sys.stdin.read()
