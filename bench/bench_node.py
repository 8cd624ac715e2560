#!/usr/bin/env python3
"""The whole node: what N agents (16 by default) alive at once cost in BTF memory, with and
without btfd, measured in one run.

Configurations, each N processes started one after another and kept alive together:

- ``libbpf``: a C agent on Debian's libbpf (1.1) that loads vmlinux BTF itself and finds
  ``task_struct`` (bench/agents/libbpf_agent.c);
- ``btfd+shared``: the daemon plus Python agents that ``open_shared`` (blob and index mapped
  from the daemon's fds) and find ``task_struct`` in-process;
- ``btfd+grpc``: the daemon plus Python agents that ask ``LookupType`` over gRPC.

Each agent's BTF-attributable memory is its PSS minus the PSS of the same program started
idle (same imports, same connection, no BTF work), so interpreters and libraries are not
counted. The daemon's whole PSS is counted (it exists only for BTF). Also per process: the
time from nothing to the first answer (libbpf load + find vs open_shared + find).

    .venv/bin/python bench/bench_node.py [--agents 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
AGENTS = Path(__file__).resolve().parent / "agents"
MiB = 1048576
sys.path.insert(0, str(ROOT))
from btfd.server.metrics import memory_bytes  # noqa: E402  (the daemon's own smaps reader)


def pss(pid: int) -> int:
    return memory_bytes(pid)["pss"]


def uss(pid: int) -> int:
    return memory_bytes(pid)["uss"]


class Fleet:
    """N copies of one command, started one after another (each waited for until it has
    printed its JSON line), alive together until :meth:`stop`."""

    def __init__(self, cmd: list[str], n: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: list[dict[str, object]] = []
        for _ in range(n):
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line:
                self.stop()
                raise SystemExit(f"agent {cmd} died before answering (exit {p.wait()})")
            self.lines.append(json.loads(line))
        time.sleep(0.3)

    def pss(self) -> int:
        return sum(pss(p.pid) for p in self.procs)

    def uss(self) -> int:
        return sum(uss(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.stdin:
                p.stdin.close()
        for p in self.procs:
            p.wait(30)


def settled(pid: int) -> int:
    """The daemon's PSS, median of 5 readings 0.5 s apart (malloc trims move it by ~0.5 MiB)."""
    vals = []
    for _ in range(5):
        vals.append(pss(pid))
        time.sleep(0.5)
    return int(statistics.median(vals))


def attributable(cmd_work: list[str], cmd_idle: list[str], n: int) -> tuple[int, list[dict[str, object]]]:
    """(sum of PSS of n working agents minus n idle ones, the working agents' lines). The
    idle fleet runs first and is gone before the working one starts."""
    idle = Fleet(cmd_idle, n)
    base = idle.pss()
    idle.stop()
    work = Fleet(cmd_work, n)
    total = work.pss()
    lines = work.lines
    work.stop()
    return total - base, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=16)
    n = ap.parse_args().agents
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not Path("/usr/include/bpf/btf.h").exists():
        raise SystemExit("needs a C compiler and libbpf-dev (make sysdeps)")
    with tempfile.TemporaryDirectory() as d:
        lagent = f"{d}/libbpf_agent"
        subprocess.run([cc, "-O2", "-o", lagent, str(AGENTS / "libbpf_agent.c"), "-lbpf"], check=True)
        libbpf_btf, libbpf_lines = attributable([lagent], [lagent, "idle"], n)

        sock = f"{d}/btfd.sock"
        daemon = subprocess.Popen([str(BIN / "btfd"), "--socket", sock, "--metrics-address", "off",
                                   "--log-level", "warning"])
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(sock + ".fd"):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("btfd did not start")
                time.sleep(0.05)
            py = [sys.executable, str(AGENTS / "py_agent.py")]
            rows = {}
            alone = []
            for mode in ("shared", "grpc"):
                idle = Fleet(py + [f"{mode}-idle", sock + ".fd", sock], n)
                base, base_uss = idle.pss(), idle.uss()
                d_before = settled(daemon.pid)  # with idle agents connected, no BTF work yet
                idle.stop()
                work = Fleet(py + [mode, sock + ".fd", sock], n)
                agents, agents_uss = work.pss() - base, work.uss() - base_uss
                d_with = settled(daemon.pid)
                rows[mode] = (agents, d_with, work.lines, agents_uss, d_before)
                alone.append(d_before)
                work.stop()
            d_alone_pss = statistics.median(alone)
            d_alone_uss = uss(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(30)

    def med(lines: list[dict[str, object]], key: str) -> float:
        return statistics.median(float(x[key]) for x in lines)  # type: ignore[arg-type]

    lib_ms = med(libbpf_lines, "load_find_ms")
    sh_ms = med(rows["shared"][2], "open_find_ms")
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"libbpf 1.1 (Debian); {time.strftime('%Y-%m-%d %H:%M')}; {n} agents alive at once")
    print()
    print("| configuration | daemon PSS (MiB) | agents' BTF-attributable PSS, all together (MiB) | node total (MiB) "
          "| per agent PSS (KiB) | per agent private (KiB) |")
    print("|---|---|---|---|---|---|")
    print(f"| {n} x libbpf 1.1 (C) | - | {libbpf_btf / MiB:.2f} | {libbpf_btf / MiB:.2f} | {libbpf_btf / n / 1024:.0f} | |")
    for mode, label in (("shared", "open_shared"), ("grpc", "gRPC-only")):
        agents, d_with, _, a_uss, _ = rows[mode]
        print(f"| btfd + {n} x {label} (Python) | {d_with / MiB:.2f} | {agents / MiB:.2f} | "
              f"{(d_with + agents) / MiB:.2f} | {agents / n / 1024:.0f} | {a_uss / n / 1024:.0f} |")
    print()
    print(f"daemon before the agents' BTF work: PSS {d_alone_pss / MiB:.2f} MiB (median over the two idle fleets), "
          f"USS {d_alone_uss / MiB:.2f} MiB")
    for mode in ("shared", "grpc"):
        agents, d_with, _, _, d_before = rows[mode]
        # The daemon's PSS before the BTF work is read with the idle fleet alive: the daemon
        # shares the interpreter's and libraries' pages with it, and PSS splits them.
        extra = d_with + agents - d_before
        per_btfd = agents / n
        per_lib = libbpf_btf / n
        even = d_alone_pss / (per_lib - per_btfd) if per_lib > per_btfd else float("inf")
        print(f"- btfd + {n} x {mode}: node total - daemon before = {extra / MiB:.2f} MiB for all {n} agents "
              f"(target <= 1 MiB); break-even against libbpf 1.1 at {even:.1f} agents")
    print(f"- to the first answer, per process (median of {n}): libbpf 1.1 load + find {lib_ms:.1f} ms; "
          f"open_shared + find_one {sh_ms:.1f} ms (ratio {sh_ms / lib_ms:.2f}, target <= 2)")
    print(f"- index in the agents: {rows['shared'][2][0]['index']}")
    print(f"- private memory each open_shared agent added, measured inside it (smaps before and after "
          f"open_shared + find_one, median of {n}): {med(rows['shared'][2], 'private') / 1024:.0f} KiB "
          f"(target <= 64 KiB)")


if __name__ == "__main__":
    main()
