#!/usr/bin/env python3
"""Results computed once per node (btfd/server/results.py), as ratios against real references
measured in the same run:

- ``btfctl dump --format c`` of the running kernel's vmlinux, first (the daemon renders it) and
  repeated (the daemon streams the kept header), against ``bpftool btf dump file ... format c``;
  the library's render (``dump_c``) in-process, for the first-render cost alone;
- ``ResolveCore`` in the daemon, first and repeated, for every object of tests/data/core/objs;
- ``btfctl core OBJ`` against the daemon, whole process, against a small C program on Debian's
  libbpf 1.1 doing ``bpf_object__open_file`` + ``bpf_object__load`` of the same object (CO-RE
  against the running kernel's BTF, then the kernel's verifier, which refuses these test
  programs at the first one: libbpf 1.1 has no load-free CO-RE entry point), and where
  btfctl's own time goes (interpreter start, imports, the call).

Whole-process times are medians of interleaved runs (the machine is shared and noisy).

    .venv/bin/python bench/bench_results.py [--repeat 15] [--json]
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

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from btfd.btf import Spec  # noqa: E402
from btfd.btf.format_c import dump_c  # noqa: E402
from btfd.server.metrics import memory_bytes  # noqa: E402
from btfd.v1 import btfd_pb2 as pb  # noqa: E402
from btfd.v1 import btfd_pb2_grpc as pb_grpc  # noqa: E402

VMLINUX = "/sys/kernel/btf/vmlinux"
OBJS = ROOT / "tests" / "data" / "core" / "objs"
BIN = Path(sys.executable).parent
BTFD, BTFCTL = str(BIN / "btfd"), str(BIN / "btfctl")

LOADER_C = r"""
#include <bpf/libbpf.h>
#include <stdarg.h>
#include <stdio.h>
static int quiet(enum libbpf_print_level l, const char *f, va_list a) { (void)l; (void)f; (void)a; return 0; }
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    libbpf_set_print(quiet);
    struct bpf_object *o = bpf_object__open_file(argv[1], NULL);
    if (!o) return 2;
    int err = bpf_object__load(o);   /* CO-RE against /sys/kernel/btf/vmlinux, then the verifier */
    bpf_object__close(o);
    return err ? 1 : 0;
}
"""


def wall(cmd: list[str], ok: tuple[int, ...] = (0,)) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode not in ok:
        raise RuntimeError(f"{cmd} exited {r.returncode}: {r.stderr.decode(errors='replace')[-500:]}")
    return dt


def median_interleaved(cmds: dict[str, tuple[list[str], tuple[int, ...]]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for k, (cmd, ok) in cmds.items():
            times[k].append(wall(cmd, ok))
    return {k: statistics.median(v) for k, v in times.items()}


def start_daemon(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = str(tmp / "btfd.sock")
    log = tmp / "btfd.log"
    proc = subprocess.Popen([BTFD, "--socket", sock, "--metrics-address", "off", "--log-level", "info"],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "ready:" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"btfd did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc, sock


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not Path("/usr/include/bpf/libbpf.h").exists():
        print("needs a C compiler and libbpf-dev (make sysdeps)", file=sys.stderr)
        return 2
    out: dict[str, object] = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cpus, kernel "
                   f"{platform.release()}, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        (tmp / "load.c").write_text(LOADER_C)
        loader = str(tmp / "load")
        subprocess.run([cc, "-O2", "-o", loader, str(tmp / "load.c"), "-lbpf"], check=True)

        # ---- first render, in-process (the library alone) vs bpftool
        spec = Spec(Path(VMLINUX).read_bytes())
        renders, renders_wall = [], []
        for _ in range(3):
            t0, w0 = time.process_time(), time.perf_counter()
            text = "".join(dump_c(spec))
            renders.append(time.process_time() - t0)
            renders_wall.append(time.perf_counter() - w0)
        want = subprocess.run([bpftool, "btf", "dump", "file", VMLINUX, "format", "c"],
                              capture_output=True, check=True).stdout
        assert text.encode() == want, "dump_c differs from bpftool"
        del text, spec

        proc, sock = start_daemon(tmp)
        try:
            btfctl_dump = [BTFCTL, "--socket", sock, "dump", "--format", "c"]
            uss0 = memory_bytes(proc.pid)["uss"]
            t0 = time.perf_counter()
            first = subprocess.run(btfctl_dump, capture_output=True, check=True).stdout
            dump_first = time.perf_counter() - t0
            time.sleep(1.0)
            uss1 = memory_bytes(proc.pid)["uss"]
            assert first == want, "btfctl dump --format c differs from bpftool"
            dump = median_interleaved({
                "bpftool": ([bpftool, "btf", "dump", "file", VMLINUX, "format", "c"], (0,)),
                "btfctl_repeat": (btfctl_dump, (0,)),
            }, a.repeat)
            out["dump_c"] = {
                "bpftool_s": dump["bpftool"],
                "library_render_cpu_s": statistics.median(renders),
                "library_render_wall_s": statistics.median(renders_wall),
                "btfctl_first_s": dump_first,
                "btfctl_repeat_s": dump["btfctl_repeat"],
                "first_over_bpftool": dump_first / dump["bpftool"],
                "repeat_over_bpftool": dump["btfctl_repeat"] / dump["bpftool"],
                "bytes": len(want),
                "daemon_uss_before_mib": uss0 / 2**20,
                "daemon_uss_after_render_mib": uss1 / 2**20,
            }

            # ---- ResolveCore in the daemon, first and repeated (client-side: an upper bound)
            ch = grpc.insecure_channel(f"unix:{sock}")
            stub = pb_grpc.BtfStub(ch)  # type: ignore[no-untyped-call]
            stub.GetInfo(pb.GetInfoRequest(), timeout=30)
            firsts, repeats = {}, {}
            for obj in sorted(OBJS.glob("*.bpf.o")):
                req = pb.ResolveCoreRequest(object=obj.read_bytes())
                t0 = time.perf_counter()
                r1 = stub.ResolveCore(req, timeout=60)
                firsts[obj.name] = time.perf_counter() - t0
                lat = []
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    r2 = stub.ResolveCore(req, timeout=60)
                    lat.append(time.perf_counter() - t0)
                assert r1 == r2
                repeats[obj.name] = statistics.median(lat)
            ch.close()
            out["resolve_core_ms"] = {
                "first_median": statistics.median(firsts.values()) * 1e3,
                "first_max": max(firsts.values()) * 1e3,
                "repeat_median": statistics.median(repeats.values()) * 1e3,
                "repeat_max": max(repeats.values()) * 1e3,
            }

            # ---- btfctl core (repeat, cached) vs libbpf 1.1 open+load, whole processes
            core: dict[str, dict[str, float]] = {}
            for name in ("k_task_fields.bpf.o", "k_types.bpf.o", "k_bitfields.bpf.o"):
                obj = str(OBJS / name)
                m = median_interleaved({
                    "libbpf_open_load": ([loader, obj], (0, 1)),
                    "btfctl_core": ([BTFCTL, "--socket", sock, "core", obj], (0, 1)),
                }, a.repeat)
                m["ratio"] = m["btfctl_core"] / m["libbpf_open_load"]
                core[name] = m
            out["core_whole_process_s"] = core

            # ---- where btfctl's time goes
            py = sys.executable
            header = tmp / "vmlinux.h"
            header.write_bytes(want)
            # The floor of handing the kept header out by fd (no gRPC): btfctl's interpreter and
            # import, then sendfile of a 2.8 MB file to stdout. Not the fd-socket route itself.
            floor = ("import btfd.cli, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); n = os.fstat(fd).st_size\n"
                     "o = 0\nwhile o < n: o += os.sendfile(1, fd, o, n - o)")
            out["btfctl_startup_s"] = median_interleaved({
                "bpftool_dump_c": ([bpftool, "btf", "dump", "file", VMLINUX, "format", "c"], (0,)),
                "fd_route_floor": ([py, "-c", floor, str(header)], (0,)),
                "python_start": ([py, "-c", "pass"], (0,)),
                "import_btfctl": ([py, "-c", "import btfd.cli"], (0,)),
                "import_grpc_and_client": ([py, "-c", "import btfd.cli, btfd.client, btfd.v1.btfd_pb2"], (0,)),
                "btfctl_help": ([BTFCTL, "--help"], (0,)),
            }, a.repeat)
        finally:
            proc.terminate()
            proc.wait(30)

    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    d = out["dump_c"]
    assert isinstance(d, dict)
    print(f"# {out['machine']}; {out['date']}")
    print(f"vmlinux.h ({d['bytes']:,} bytes):")
    print(f"  bpftool btf dump ... format c     {d['bpftool_s'] * 1e3:8.1f} ms (whole process)")
    print(f"  dump_c in-process (first render)  {d['library_render_wall_s'] * 1e3:8.1f} ms "
          f"({d['library_render_cpu_s'] * 1e3:.1f} ms CPU)")
    print(f"  btfctl dump --format c, first     {d['btfctl_first_s'] * 1e3:8.1f} ms  "
          f"({d['first_over_bpftool']:.2f}x bpftool)")
    print(f"  btfctl dump --format c, repeat    {d['btfctl_repeat_s'] * 1e3:8.1f} ms  "
          f"({d['repeat_over_bpftool']:.2f}x bpftool)")
    print(f"  daemon uss before / after the render: {d['daemon_uss_before_mib']:.2f} / "
          f"{d['daemon_uss_after_render_mib']:.2f} MiB (the header is in a memfd, not the heap)")
    r = out["resolve_core_ms"]
    assert isinstance(r, dict)
    print(f"ResolveCore in the daemon ({len(list(OBJS.glob('*.bpf.o')))} objects, client-side):")
    print(f"  first  median {r['first_median']:7.2f} ms, max {r['first_max']:7.2f} ms")
    print(f"  repeat median {r['repeat_median']:7.2f} ms, max {r['repeat_max']:7.2f} ms")
    print("btfctl core OBJ (cached answer) vs libbpf 1.1 open+load, whole process:")
    core_out = out["core_whole_process_s"]
    assert isinstance(core_out, dict)
    for name, m in core_out.items():
        print(f"  {name:22} libbpf {m['libbpf_open_load'] * 1e3:6.1f} ms  btfctl {m['btfctl_core'] * 1e3:6.1f} ms"
              f"  ({m['ratio']:.1f}x)")
    s = out["btfctl_startup_s"]
    assert isinstance(s, dict)
    print("btfctl start-up, whole process:")
    for k, v in s.items():
        print(f"  {k:24} {v * 1e3:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
