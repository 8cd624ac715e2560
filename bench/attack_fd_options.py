#!/usr/bin/env python3
"""The fd socket's options under abuse, with an honest client timed beside it, for 20 s:

- 60 connections that each ask ``vmlinux +index +c`` fifty times and never read (their
  answers' fds stay in flight);
- 4 threads that ask and read as fast as they can (each answer: three fds);
- the honest client asks LookupType for every struct of vmlinux once (uncached), depth 0-2.

Prints one JSON line: honest calls, failures, p50/p99, answers the greedy threads got, the
daemon's uss before/peak/after and its open fds before/after, and how long SIGTERM took.

    .venv/bin/python bench/attack_fd_options.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from btfd.btf import Kind, Spec  # noqa: E402
from btfd.client import Client  # noqa: E402
from btfd.server.metrics import memory_bytes  # noqa: E402

SECONDS = 20.0
ASK = b"vmlinux +index +c\n"


def greedy(path: str, stop: float, counts: list[int]) -> None:
    n = 0
    while time.monotonic() < stop:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(path)
                s.sendall(ASK)
                _, fds, _, _ = socket.recv_fds(s, 4096, 4)
                for f in fds:
                    os.close(f)
                n += 1
        except OSError:
            pass
    counts.append(n)


def main() -> None:
    sock = os.path.join(tempfile.mkdtemp(), "b.sock")
    d = subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "btfd"), "--socket", sock,
                          "--metrics-address", "off", "--log-level", "warning"])
    while not os.path.exists(sock + ".fd"):
        time.sleep(0.05)
    time.sleep(1)
    names = sorted({t.name for t in Spec(open("/sys/kernel/btf/vmlinux", "rb").read()).types(Kind.STRUCT)
                    if t.name})
    base, fds0 = memory_bytes(d.pid)["uss"], len(os.listdir(f"/proc/{d.pid}/fd"))
    stop = time.monotonic() + SECONDS
    hold = []
    for _ in range(60):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock + ".fd")
        s.sendall(ASK * 50)
        hold.append(s)
    counts: list[int] = []
    threads = [threading.Thread(target=greedy, args=(sock + ".fd", stop, counts)) for _ in range(4)]
    for t in threads:
        t.start()
    lat: list[float] = []
    fails = peak = 0
    with Client(sock, timeout=5) as c:
        i = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                c.lookup_type(names[i % len(names)], depth=i % 3)
            except Exception:  # noqa: BLE001 - counted
                fails += 1
            lat.append(time.perf_counter() - t0)
            i += 1
            peak = max(peak, memory_bytes(d.pid)["uss"])
    for t in threads:
        t.join()
    for s in hold:
        s.close()
    time.sleep(3)
    after, fds1 = memory_bytes(d.pid)["uss"], len(os.listdir(f"/proc/{d.pid}/fd"))
    lat.sort()
    t0 = time.monotonic()
    d.terminate()
    d.wait(30)
    mib = 1 << 20
    print(json.dumps({
        "honest_calls": len(lat), "fails": fails, "p50_ms": round(lat[len(lat) // 2] * 1e3, 1),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 1), "greedy_answers": sum(counts),
        "uss_base_MiB": round(base / mib, 2), "uss_peak_MiB": round(peak / mib, 2),
        "uss_after_MiB": round(after / mib, 2), "fds_before": fds0, "fds_after": fds1,
        "sigterm_s": round(time.monotonic() - t0, 2)}))


if __name__ == "__main__":
    main()
