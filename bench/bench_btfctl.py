#!/usr/bin/env python3
"""btfctl against a local daemon, whole process, next to the C tools in the same run:

- ``btfctl lookup task_struct`` over the fd socket (``--via fd``: the daemon's mapping and
  index read in-process, no grpc imported) and over gRPC (``--via grpc``), against a C
  program on Debian's libbpf that loads vmlinux BTF, finds the type and dumps it with
  ``btf_dump`` (bench/agents/libbpf_lookup.c);
- ``btfctl dump --format c`` repeated (the daemon rendered vmlinux.h once; the fd socket hands
  out its fd), first and again, against ``bpftool btf dump file /sys/kernel/btf/vmlinux
  format c``; outputs compared byte for byte.

Python's bytecode is compiled first and kept in a temporary PYTHONPYCACHEPREFIX (as an
installed package has it), whatever PYTHONDONTWRITEBYTECODE says.

    .venv/bin/python bench/bench_btfctl.py [--runs 21]
"""

from __future__ import annotations

import argparse
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


def timed(cmd: list[str], env: dict[str, str], runs: int, out: str = os.devnull) -> list[float]:
    ts = []
    for _ in range(runs):
        with open(out, "wb") as f:
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=f, env=env, check=True)
            ts.append(time.perf_counter() - t0)
    return ts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=21)
    runs = ap.parse_args().runs
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PYTHONPYCACHEPREFIX=f"{d}/pycache")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "btfd")], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cc", "-O2", "-o", f"{d}/lookup", str(ROOT / "bench/agents/libbpf_lookup.c"), "-lbpf"],
                       check=True)
        sock = f"{d}/btfd.sock"
        daemon = subprocess.Popen([str(BIN / "btfd"), "--socket", sock, "--metrics-address", "off",
                                   "--log-level", "warning"], env=env)
        try:
            while not os.path.exists(sock + ".fd"):
                if daemon.poll() is not None:
                    raise SystemExit("btfd did not start")
                time.sleep(0.05)
            btfctl = [str(BIN / "btfctl"), "--socket", sock]
            first = timed(btfctl + ["dump", "--format", "c"], env, 1, f"{d}/first.h")[0]
            c = timed([f"{d}/lookup", "task_struct"], env, runs)
            fd = timed(btfctl + ["--via", "fd", "lookup", "task_struct"], env, runs)
            grpc = timed(btfctl + ["--via", "grpc", "lookup", "task_struct"], env, runs)
            bt = timed([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"], env, runs,
                       f"{d}/bpftool.h")
            again = timed(btfctl + ["dump", "--format", "c"], env, runs, f"{d}/again.h")
            same = Path(f"{d}/bpftool.h").read_bytes() == Path(f"{d}/again.h").read_bytes() \
                == Path(f"{d}/first.h").read_bytes()
        finally:
            daemon.terminate()
            daemon.wait(30)
    med = statistics.median
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; medians of {runs} whole processes")
    print()
    print("| command | median (ms) | ratio to the C reference |")
    print("|---|---|---|")
    print(f"| C on libbpf 1.1: load vmlinux BTF, find task_struct, btf_dump it | {med(c) * 1e3:.1f} | 1 |")
    print(f"| `btfctl --via fd lookup task_struct` (fd socket, shared index) | {med(fd) * 1e3:.1f} | "
          f"{med(fd) / med(c):.2f} (target <= 3) |")
    print(f"| `btfctl --via grpc lookup task_struct` | {med(grpc) * 1e3:.1f} | {med(grpc) / med(c):.2f} |")
    print(f"| `bpftool btf dump file /sys/kernel/btf/vmlinux format c` | {med(bt) * 1e3:.1f} | 1 |")
    print(f"| `btfctl dump --format c`, first (the daemon renders) | {first * 1e3:.0f} | {first / med(bt):.2f} |")
    print(f"| `btfctl dump --format c`, again (the rendered fd) | {med(again) * 1e3:.1f} | "
          f"{med(again) / med(bt):.2f} (target < 1) |")
    print()
    print(f"vmlinux.h byte-identical to bpftool's (first and again): {same}")


if __name__ == "__main__":
    main()
