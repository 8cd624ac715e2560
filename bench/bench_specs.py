#!/usr/bin/env python3
"""Memory per spec: the daemon serving a vmlinux plus every corpus module of that kernel, as a
directory standing in for /sys/kernel/btf. Reports the daemon's uss/anonymous growth as each
module spec is opened (first lookup in it) and what each spec says its indexes cost.

    .venv/bin/python bench/bench_specs.py
"""

from __future__ import annotations

import lzma
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from btfd.server.metrics import memory_bytes  # noqa: E402
from btfd.v1 import btfd_pb2 as pb  # noqa: E402
from btfd.v1 import btfd_pb2_grpc  # noqa: E402

DATA = ROOT / "tests" / "data" / "btf"
MODULES = ["veth", "nf_conntrack", "zstd_compress", "btrfs"]


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        sysfs = Path(d) / "sysfs"
        sysfs.mkdir()
        (sysfs / "vmlinux").write_bytes(lzma.decompress((DATA / "vmlinux-6.1.0-56-amd64.btf.xz").read_bytes()))
        for m in MODULES:
            (sysfs / m).write_bytes(lzma.decompress((DATA / f"{m}-6.1.0-56-amd64.btf.xz").read_bytes()))
        sock = f"{d}/btfd.sock"
        p = subprocess.Popen([str(ROOT / ".venv/bin/btfd"), "--socket", sock, "--sysfs-btf-dir", str(sysfs),
                              "--metrics-address", "off", "--log-level", "warning"])
        try:
            while not os.path.exists(sock + ".fd"):
                time.sleep(0.05)
            time.sleep(0.5)
            stub = btfd_pb2_grpc.BtfStub(grpc.insecure_channel(f"unix:{sock}"))
            stub.LookupType(pb.LookupTypeRequest(name="task_struct"))
            print(f"# {platform.node()} {platform.machine()}, Python {platform.python_version()}; "
                  f"{time.strftime('%Y-%m-%d')}; vmlinux 6.1.0-56-amd64 + modules, served from regular files")
            print("| step | spec bytes | mode | index bytes (offsets + names) | daemon uss | Δ uss | Δ anonymous |")
            print("|---|---|---|---|---|---|---|")
            prev = memory_bytes(p.pid)
            info = {s.name: s for s in stub.GetInfo(pb.GetInfoRequest()).specs}
            vm = info["vmlinux"]
            print(f"| vmlinux (at start) | {vm.size} | {vm.mode} | {sum(vm.index_bytes.values())} | "
                  f"{prev['uss'] / 1048576:.2f} MiB | | |")
            for m in MODULES:
                stub.LookupType(pb.LookupTypeRequest(spec=f"module/{m}", name="list_head"))
                stub.ListTypes(pb.ListTypesRequest(spec=f"module/{m}", limit=1)).next()
                now = memory_bytes(p.pid)
                s = {x.name: x for x in stub.GetInfo(pb.GetInfoRequest()).specs}[f"module/{m}"]
                print(f"| module/{m} opened | {s.size} | {s.mode} | {sum(s.index_bytes.values())} | "
                      f"{now['uss'] / 1048576:.2f} MiB | {(now['uss'] - prev['uss']) / 1024:+.0f} KiB | "
                      f"{(now['anonymous'] - prev['anonymous']) / 1024:+.0f} KiB |")
                prev = now
        finally:
            p.terminate()
            p.wait(20)


if __name__ == "__main__":
    main()
