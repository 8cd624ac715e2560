#!/usr/bin/env python3
"""Load and soak against a real daemon (issue: run it like infrastructure).

    .venv/bin/python bench/bench_load.py                      # 64 clients x 2,000 mixed requests
    .venv/bin/python bench/bench_load.py --soak-seconds 600   # 10 minutes of mixed load

Reports throughput, p50/p99 (overall and per request kind), errors; for the soak, the daemon's
uss after warm-up and at the end, its open fd count over time, and a PASS/FAIL line (uss growth
at most 1 MiB after warm-up, fd count back to its baseline after every minute, no errors).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from loadgen import corpus_object, run_mixed  # noqa: E402

from btfd.btf import Kind, Spec  # noqa: E402
from btfd.server.metrics import memory_bytes  # noqa: E402

SOAK_USS_GROWTH = 1 << 20
FD_SLACK = 2  # fds the daemon may hold transiently between samples (a closing connection)


def btfd_command() -> list[str]:
    """The btfd beside this interpreter (a venv's bin), else on PATH, else the module."""
    beside = Path(sys.executable).with_name("btfd")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("btfd")
    return [found] if found else [sys.executable, "-m", "btfd.server.main"]


def wait_ready(daemon: subprocess.Popen[bytes], fd_socket: str, limit: float = 120.0) -> None:
    end = time.monotonic() + limit
    while not os.path.exists(fd_socket):
        if daemon.poll() is not None:
            sys.exit(f"btfd exited with {daemon.returncode} before it was ready")
        if time.monotonic() > end:
            sys.exit(f"btfd was not ready after {limit:.0f} s")
        time.sleep(0.05)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--soak-seconds", type=float, default=0)
    ap.add_argument("--warmup-seconds", type=float, default=120, help="soak: load before the baseline")
    args = ap.parse_args()
    spec = Spec(Path("/sys/kernel/btf/vmlinux").read_bytes())
    names = sorted({t.name for t in spec.types(Kind.STRUCT) if t.name})
    obj = corpus_object()
    with tempfile.TemporaryDirectory() as d:
        sock = f"{d}/btfd.sock"
        daemon = subprocess.Popen([*btfd_command(), "--socket", sock, "--metrics-address", "off",
                                   "--log-level", "warning"])
        try:
            wait_ready(daemon, sock + ".fd")
            print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cpus; {time.strftime('%Y-%m-%d %H:%M')}")
            if not args.soak_seconds:
                r = asyncio.run(run_mixed(sock, args.clients, args.requests, names, obj))
                print(f"- {args.clients} clients x {args.requests} mixed requests: {r.ok} ok, {len(r.errors)} errors, "
                      f"{r.ok / r.wall:.0f} req/s, p50 {r.percentile_ms(0.5):.1f} ms, p99 {r.p99_ms():.1f} ms, "
                      f"{r.wall:.1f} s")
                for line in r.by_kind():
                    print("  " + line)
                for e in r.errors[:5]:
                    print("  error:", e)
                if daemon.poll() is not None:
                    sys.exit(f"btfd died during the run (exit {daemon.returncode})")
                return
            asyncio.run(run_mixed(sock, 16, 10**9, names, obj, deadline=time.monotonic() + args.warmup_seconds))
            m0, fds0 = memory_bytes(daemon.pid), fd_count(daemon.pid)
            end = time.monotonic() + args.soak_seconds
            total, errors, samples = 0, 0, []
            while time.monotonic() < end:
                if daemon.poll() is not None:
                    sys.exit(f"btfd died during the soak (exit {daemon.returncode})")
                r = asyncio.run(run_mixed(sock, 16, 10**9, names, obj, seed=total + 7,
                                          deadline=min(end, time.monotonic() + 60)))
                total += r.ok
                errors += len(r.errors)
                samples.append((memory_bytes(daemon.pid)["uss"], fd_count(daemon.pid)))
            m1 = memory_bytes(daemon.pid)
            print(f"- soak {args.soak_seconds:.0f} s after a {args.warmup_seconds:.0f} s warm-up, 16 clients of mixed "
                  f"load: {total} requests, {errors} errors")
            print(f"- uss after warm-up {m0['uss'] / 1048576:.2f} MiB, at the end {m1['uss'] / 1048576:.2f} MiB "
                  f"({(m1['uss'] - m0['uss']) / 1048576:+.2f} MiB); per minute: "
                  + ", ".join(f"{u / 1048576:.2f}" for u, _ in samples))
            print(f"- open fds after warm-up {fds0}, per minute: " + ", ".join(str(f) for _, f in samples))
            growth = m1["uss"] - m0["uss"]
            fds_ok = all(abs(f - fds0) <= FD_SLACK for _, f in samples)
            ok = growth <= SOAK_USS_GROWTH and fds_ok and errors == 0
            print(f"{'PASS' if ok else 'FAIL'}: uss growth {growth / 1048576:+.2f} MiB (limit +1.00), "
                  f"fd count {'stable' if fds_ok else 'NOT stable'} (baseline {fds0} +-{FD_SLACK}), "
                  f"{errors} errors")
            if not ok:
                sys.exit(1)
        finally:
            daemon.terminate()
            daemon.wait(30)


if __name__ == "__main__":
    main()
