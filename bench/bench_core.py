#!/usr/bin/env python3
"""CO-RE benchmark: resolve every corpus object (tests/data/core/objs) against vmlinux-6.18.

- cold: a fresh Spec over the target bytes (offset pass), the name index built by the first
  candidate search, the object parsed, every relocation resolved and validated;
- warm: the same object again on a spec whose name index is built (what the daemon does on
  every ResolveCore call): median of --repeat runs.

Also, where it can run: libbpf (Debian's libbpf1 through ctypes) opening each object with
btf_custom_path and bpf_object__load() — which needs privileges and loads programs into the
kernel, so its time includes verification; libbpf 1.1 has no load-free CO-RE entry point.

    .venv/bin/python bench/bench_core.py [--repeat 20] [--json] [--no-libbpf]
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import lzma
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

OBJS = os.path.join(ROOT, "tests", "data", "core", "objs")
TARGET_XZ = os.path.join(ROOT, "tests", "data", "btf", "vmlinux-6.18-amd64.btf.xz")


def _median_ms(fn: object, repeat: int) -> float:
    assert callable(fn)
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def bench_btfd(target: bytes, repeat: int) -> list[dict[str, float | int | str]]:
    """Per object: cold; warm from bytes on a plain Spec (name index built); warm from bytes
    through a CoreTarget (decoded target types kept across calls, what the daemon keeps per
    spec); and the resolution alone (object parsed once)."""
    from btfd.btf import Spec
    from btfd.core import CoreTarget, parse_object, resolve_object

    rows: list[dict[str, float | int | str]] = []
    warm_spec = Spec(target)
    warm_spec.find_essential("task_struct")  # build the name index once
    core_target = CoreTarget(warm_spec)
    for name in sorted(os.listdir(OBJS)):
        obj = open(os.path.join(OBJS, name), "rb").read()
        t0 = time.perf_counter()
        spec = Spec(target)
        n = len(resolve_object(obj, spec).records)
        cold = (time.perf_counter() - t0) * 1e3
        parsed = parse_object(obj)
        warm = _median_ms(functools.partial(resolve_object, obj, warm_spec), repeat)
        warm_ct = _median_ms(functools.partial(resolve_object, obj, core_target), repeat)
        resolve_only = _median_ms(functools.partial(resolve_object, parsed, core_target), repeat)
        rows.append({"object": name, "relocations": n, "cold_ms": cold, "warm_ms": warm,
                     "warm_target_ms": warm_ct, "resolve_only_ms": resolve_only})
    return rows


class _OpenOpts(ctypes.Structure):
    # struct bpf_object_open_opts as of libbpf 1.1 (sz first; later fields zero).
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


def bench_libbpf(target_path: str, repeat: int) -> list[dict[str, float | int | str]] | str:
    try:
        lib = ctypes.CDLL("libbpf.so.1")
    except OSError as e:
        return f"libbpf.so.1 not available: {e}"
    printer = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    silent = printer(lambda level, fmt, args: 0)
    lib.libbpf_set_print(silent)
    lib.bpf_object__open_file.restype = ctypes.c_void_p
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.POINTER(_OpenOpts)]
    lib.bpf_object__load.argtypes = [ctypes.c_void_p]
    lib.bpf_object__close.argtypes = [ctypes.c_void_p]
    rows: list[dict[str, float | int | str]] = []
    for name in sorted(os.listdir(OBJS)):
        path = os.path.join(OBJS, name).encode()
        times, rc = [], 0
        for _ in range(repeat):
            opts = _OpenOpts(sz=ctypes.sizeof(_OpenOpts), btf_custom_path=target_path.encode())
            t0 = time.perf_counter()
            obj = lib.bpf_object__open_file(path, ctypes.byref(opts))
            if not obj or obj > (1 << 64) - 4096:
                return f"bpf_object__open_file failed for {name}"
            rc = lib.bpf_object__load(obj)
            times.append(time.perf_counter() - t0)
            lib.bpf_object__close(obj)
        rows.append({"object": name, "open_load_ms": statistics.median(times) * 1e3, "load_rc": rc})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-libbpf", action="store_true")
    a = ap.parse_args()
    target = lzma.decompress(open(TARGET_XZ, "rb").read())
    rows = bench_btfd(target, a.repeat)
    total_n = sum(int(r["relocations"]) for r in rows)
    tot = {k: sum(float(r[k]) for r in rows)
           for k in ("cold_ms", "warm_ms", "warm_target_ms", "resolve_only_ms")}
    lib: list[dict[str, float | int | str]] | str = "skipped"
    if not a.no_libbpf:
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".btf") as f:
            f.write(target)
            f.flush()
            lib = bench_libbpf(f.name, max(3, a.repeat // 4))
    out = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()} "
                   f"{os.cpu_count()} cpus, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "objects": rows,
        "total": {"relocations": total_n, **tot,
                  **{f"{k[:-3]}_ms_per_100": v * 100 / total_n for k, v in tot.items()}},
        "libbpf": lib,
    }
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['machine']}, {out['date']}; target vmlinux-6.18-amd64")
    cols = ("cold_ms", "warm_ms", "warm_target_ms", "resolve_only_ms")
    print(f"{'object':22} {'relos':>5} {'cold':>8} {'warm':>7} {'warm+tgt':>8} {'resolve':>7}   (ms)")
    for r in rows:
        print(f"{r['object']:22} {r['relocations']:>5} " + " ".join(
            f"{float(r[c]):>{w}.2f}" for c, w in zip(cols, (8, 7, 8, 7), strict=True)))
    t = out["total"]
    assert isinstance(t, dict)
    widths = (8, 7, 8, 7)
    print(f"{'all':22} {total_n:>5} "
          + " ".join(f"{t[c]:>{w}.2f}" for c, w in zip(cols, widths, strict=True)))
    print(f"{'per 100 relocations':28} " + " ".join(
        f"{t[c[:-3] + '_ms_per_100']:>{w}.2f}" for c, w in zip(cols, (8, 7, 8, 7), strict=True)))
    print(f"warm relocations/s: {total_n / t['warm_ms'] * 1e3:.0f} (plain spec), "
          f"{total_n / t['warm_target_ms'] * 1e3:.0f} (CoreTarget), "
          f"{total_n / t['resolve_only_ms'] * 1e3:.0f} (resolution only)")
    if isinstance(lib, str):
        print(f"libbpf: {lib}")
    else:
        print("libbpf 1.1 (ctypes) bpf_object__open_file(btf_custom_path) + bpf_object__load():")
        for r in lib:
            print(f"  {r['object']:24} {r['open_load_ms']:>8.2f} ms (load rc {r['load_rc']})")


if __name__ == "__main__":
    main()
