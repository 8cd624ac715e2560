#!/usr/bin/env python3
"""BTF library benchmark: btfd.btf against libbpf (ctypes, Debian's libbpf1) on this machine's
/sys/kernel/btf/vmlinux, side by side in one run.

Each contender runs in its own fresh subprocess, so memory deltas are its own:
- wall time to open + index, to the first lookup by name (cold), median warm lookup (hit, miss);
- memory the BTF costs the process: the change in ``Anonymous`` and in
  ``Private_Clean + Private_Dirty`` of /proc/self/smaps_rollup after open, after the name
  index, after 10,000 random lookups; and tracemalloc's peak (Python only, separate run since
  tracemalloc slows everything down).

    .venv/bin/python bench/bench_btf.py [--btf PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def smaps() -> dict[str, int]:
    out = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def private(s: dict[str, int]) -> int:
    return s["Private_Clean"] + s["Private_Dirty"]


def sample_names(path: str, n: int = 10_000) -> list[str]:
    """Deterministic sample of names present in the blob (read in the parent, not timed)."""
    sys.path.insert(0, ROOT)
    from btfd.btf import Spec

    with open(path, "rb") as f:
        spec = Spec(f.read())
    names = [spec.type_name(t) for t in spec.ids()]
    names = [x for x in names if x]
    step = max(1, len(names) // n)
    return names[::step][:n]


def run_btfd(path: str, names: list[str], trace: bool) -> dict[str, float]:
    sys.path.insert(0, ROOT)
    import mmap
    import statistics
    import tracemalloc
    from array import array

    from btfd.btf import Kind, Spec

    misses = [nm + "_nope" for nm in names]
    hit = array("d", bytes(8 * len(names)))
    miss = array("d", bytes(8 * len(names)))
    res: dict[str, float] = {}
    if trace:
        tracemalloc.start()
    m0 = smaps()
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        data = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        res["mode_mmap"] = 1
    except OSError:
        data = mmap.mmap(-1, os.fstat(fd).st_size)
        data.write(os.read(fd, os.fstat(fd).st_size))
        res["mode_mmap"] = 0
    spec = Spec(data, name="vmlinux")
    t1 = time.perf_counter()
    m1 = smaps()
    if trace:
        res["trace_after_open"] = tracemalloc.get_traced_memory()[0]
    tid = spec.find_ids("task_struct", Kind.STRUCT)[0]
    t2 = time.perf_counter()
    m2 = smaps()
    if trace:
        res["trace_after_index"] = tracemalloc.get_traced_memory()[0]
    assert spec.type(tid).name == "task_struct"
    m_pre = smaps()
    for i, nm in enumerate(names):
        a = time.perf_counter()
        spec.find_ids(nm)
        b = time.perf_counter()
        spec.find_ids(misses[i])
        c = time.perf_counter()
        hit[i] = b - a
        miss[i] = c - b
    m3 = smaps()
    res.update(
        open_ms=(t1 - t0) * 1e3,
        first_lookup_ms=(t2 - t0) * 1e3,
        hit_us=statistics.median(hit) * 1e6,
        miss_us=statistics.median(miss) * 1e6,
        anon_open=m1["Anonymous"] - m0["Anonymous"],
        priv_open=private(m1) - private(m0),
        anon_index=m2["Anonymous"] - m0["Anonymous"],
        priv_index=private(m2) - private(m0),
        anon_lookups=m3["Anonymous"] - m_pre["Anonymous"] + m2["Anonymous"] - m0["Anonymous"],
        priv_lookups=private(m3) - private(m_pre) + private(m2) - private(m0),
        index_bytes=sum(spec.index_bytes().values()),
        types=spec.count,
    )
    if trace:
        res["trace_after_lookups"] = tracemalloc.get_traced_memory()[0]
        res["trace_peak"] = tracemalloc.get_traced_memory()[1]
    return res


def run_libbpf(path: str, names: list[str]) -> dict[str, float]:
    import ctypes
    import statistics

    lib = ctypes.CDLL("libbpf.so.1")
    lib.btf__parse_raw.restype = ctypes.c_void_p
    lib.btf__parse_raw.argtypes = [ctypes.c_char_p]
    lib.btf__find_by_name_kind.restype = ctypes.c_int32
    lib.btf__find_by_name_kind.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
    lib.btf__find_by_name.restype = ctypes.c_int32
    lib.btf__find_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.btf__load_vmlinux_btf.restype = ctypes.c_void_p
    encoded = [n.encode() for n in names[:2000]]  # libbpf scans linearly: keep it bounded
    m0 = smaps()
    t0 = time.perf_counter()
    if path == "/sys/kernel/btf/vmlinux":
        btf = lib.btf__load_vmlinux_btf()
    else:
        btf = lib.btf__parse_raw(path.encode())
    t1 = time.perf_counter()
    m1 = smaps()
    if not btf:
        raise SystemExit("libbpf could not load the BTF")
    tid = lib.btf__find_by_name_kind(btf, b"task_struct", 4)
    t2 = time.perf_counter()
    assert tid > 0
    hit, miss = [], []
    for nm in encoded:
        a = time.perf_counter()
        lib.btf__find_by_name(btf, nm)
        b = time.perf_counter()
        lib.btf__find_by_name(btf, nm + b"_nope")
        c = time.perf_counter()
        hit.append(b - a)
        miss.append(c - b)
    m3 = smaps()
    return dict(
        open_ms=(t1 - t0) * 1e3,
        first_lookup_ms=(t2 - t0) * 1e3,
        hit_us=statistics.median(hit) * 1e6,
        miss_us=statistics.median(miss) * 1e6,
        anon_open=m1["Anonymous"] - m0["Anonymous"],
        priv_open=private(m1) - private(m0),
        anon_index=m1["Anonymous"] - m0["Anonymous"],
        priv_index=private(m1) - private(m0),
        anon_lookups=m3["Anonymous"] - m0["Anonymous"],
        priv_lookups=private(m3) - private(m0),
    )


def child(which: str, path: str, names_file: str) -> None:
    with open(names_file) as f:
        names = json.load(f)
    if which == "btfd":
        out = run_btfd(path, names, trace=False)
    elif which == "btfd-trace":
        out = run_btfd(path, names, trace=True)
    else:
        out = run_libbpf(path, names)
    print(json.dumps(out))


def spawn(which: str, path: str, names_file: str) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, __file__, "--child", which, "--btf", path, "--names", names_file],
        check=True, capture_output=True, text=True,
    )
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def mib(x: float) -> str:
    return f"{x / 1048576:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    ap.add_argument("--runs", type=int, default=3, help="fresh processes per contender (median)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--names", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.btf, args.names)
        return
    import statistics
    import tempfile

    names = sample_names(args.btf)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(names, f)
        names_file = f.name
    try:
        runs: dict[str, list[dict[str, float]]] = {"btfd": [], "libbpf": []}
        for _ in range(args.runs):
            for which in runs:  # interleaved, so machine noise hits both alike
                runs[which].append(spawn(which, args.btf, names_file))
        trace = spawn("btfd-trace", args.btf, names_file)
    finally:
        os.unlink(names_file)
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in runs.items()}
    if args.json:
        print(json.dumps({"median": med, "tracemalloc": trace}, indent=2))
        return
    b, lb = med["btfd"], med["libbpf"]
    print(f"# {args.btf}: {int(b['types'])} types; {platform.node()} {platform.machine()}, "
          f"{os.cpu_count()} cpus, Python {platform.python_version()}; median of {args.runs} fresh processes")
    print("| metric | btfd.btf | libbpf 1.1 (ctypes) | ratio |")
    print("|---|---|---|---|")
    for key, label, fmt in [
        ("open_ms", "open + offset pass (ms)", "{:.1f}"),
        ("first_lookup_ms", "open to first lookup by name, cold (ms)", "{:.1f}"),
        ("hit_us", "warm lookup by name, hit, median (us)", "{:.1f}"),
        ("miss_us", "warm lookup by name, miss, median (us)", "{:.1f}"),
    ]:
        print(f"| {label} | {fmt.format(b[key])} | {fmt.format(lb[key])} | {b[key] / lb[key]:.2f} |")
    for key, label in [
        ("anon_open", "Anonymous after open (MiB)"),
        ("priv_open", "Private_Clean+Dirty after open (MiB)"),
        ("anon_index", "Anonymous after name index (MiB)"),
        ("priv_index", "Private_Clean+Dirty after name index (MiB)"),
        ("anon_lookups", "Anonymous after 10,000 lookups (MiB)"),
        ("priv_lookups", "Private_Clean+Dirty after 10,000 lookups (MiB)"),
    ]:
        print(f"| {label} | {mib(b[key])} | {mib(lb[key])} | |")
    print(f"| index bytes reported by the spec (MiB) | {mib(b['index_bytes'])} | | |")
    print()
    print("tracemalloc (btfd.btf, separate run): "
          f"after open {mib(trace['trace_after_open'])} MiB, "
          f"after index {mib(trace['trace_after_index'])} MiB, "
          f"after lookups {mib(trace['trace_after_lookups'])} MiB, peak {mib(trace['trace_peak'])} MiB")
    print("libbpf lookups are timed over 2,000 names (it scans linearly); btfd over 10,000.")


if __name__ == "__main__":
    main()
