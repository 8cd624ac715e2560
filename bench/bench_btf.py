#!/usr/bin/env python3
"""BTF library benchmark: btfd.btf against libbpf (ctypes, Debian's libbpf1) on this machine's
/sys/kernel/btf/vmlinux, side by side in one run.

Each contender runs in its own fresh subprocess, so memory deltas are its own:
- wall time to open + index, to the first lookup by name (cold), median warm lookup (hit, miss);
- memory the BTF costs the process: the change in ``Anonymous`` and in
  ``Private_Clean + Private_Dirty`` of /proc/self/smaps_rollup after open, after the name
  index, after 10,000 random lookups; and tracemalloc's peak (Python only, separate run since
  tracemalloc slows everything down). The baseline sample is taken before anything else is
  allocated: the lookup names are read only after the index is measured (pages the
  allocator freed while loading them would otherwise be reused by the index, unseen);
- ``btfctl dump --file F --format c`` against ``bpftool btf dump file F format c``, wall
  time of whole processes (output to /dev/null).

btfd opens the blob through btfd.source (what the daemon does); libbpf looks names up with
``btf__find_by_name_kind`` (the kind is known for a hit; misses ask for STRUCT).

    .venv/bin/python bench/bench_btf.py [--btf PATH] [--json] [--runs N] [--lookups N] [--dump-runs N]
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


def sample_names(path: str, n: int = 10_000) -> list[tuple[str, int]]:
    """Deterministic sample of (name, kind) present in the blob (read in the parent, not
    timed)."""
    sys.path.insert(0, ROOT)
    from btfd.btf import Spec

    with open(path, "rb") as f:
        spec = Spec(f.read())
    names = [(spec.type_name(t), int(spec.kind(t))) for t in spec.ids()]
    names = [x for x in names if x[0]]
    step = max(1, len(names) // n)
    return names[::step][:n]


def load_names(names_file: str) -> list[tuple[str, int]]:
    with open(names_file) as f:
        return [(n, k) for n, k in json.load(f)]


def run_btfd(path: str, names_file: str, trace: bool) -> dict[str, float]:
    sys.path.insert(0, ROOT)
    import statistics
    import tracemalloc
    from array import array

    from btfd.btf import Kind
    from btfd.source import MODE_KERNEL_MMAP, open_btf

    res: dict[str, float] = {}
    if trace:
        tracemalloc.start()
    m0 = smaps()  # before anything of the run is allocated (names are loaded after the index)
    t0 = time.perf_counter()
    src = open_btf(path)
    spec = src.spec(name="vmlinux")
    t1 = time.perf_counter()
    m1 = smaps()
    res["mode_mmap"] = 1 if src.mode == MODE_KERNEL_MMAP else 0
    if trace:
        res["trace_after_open"] = tracemalloc.get_traced_memory()[0]
    tid = spec.find_ids("task_struct", Kind.STRUCT)[0]
    t2 = time.perf_counter()
    m2 = smaps()
    if trace:
        res["trace_after_index"] = tracemalloc.get_traced_memory()[0]
    assert spec.type(tid).name == "task_struct"
    traced_before_names = tracemalloc.get_traced_memory()[0] if trace else 0
    names = load_names(names_file)
    queries = [(nm, Kind(k)) for nm, k in names]
    misses = [nm + "_nope" for nm, _ in names]
    hit = array("d", bytes(8 * len(names)))
    miss = array("d", bytes(8 * len(names)))
    # what the lookup inputs themselves hold, not charged to the BTF
    names_bytes = tracemalloc.get_traced_memory()[0] - traced_before_names if trace else 0
    m_pre = smaps()
    for i, (nm, kind) in enumerate(queries):
        a = time.perf_counter()
        found = spec.find_ids(nm, kind)
        b = time.perf_counter()
        spec.find_ids(misses[i], Kind.STRUCT)
        c = time.perf_counter()
        hit[i] = b - a
        miss[i] = c - b
        assert found
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
        cur, peak = tracemalloc.get_traced_memory()
        res["trace_after_lookups"] = cur - names_bytes
        res["trace_peak"] = peak - names_bytes  # the peak is reached after the names are loaded
    return res


def run_libbpf(path: str, names_file: str, max_lookups: int) -> dict[str, float]:
    import ctypes
    import statistics

    lib = ctypes.CDLL("libbpf.so.1")
    lib.btf__parse_raw.restype = ctypes.c_void_p
    lib.btf__parse_raw.argtypes = [ctypes.c_char_p]
    lib.btf__find_by_name_kind.restype = ctypes.c_int32
    lib.btf__find_by_name_kind.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
    lib.btf__load_vmlinux_btf.restype = ctypes.c_void_p
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
    m2 = smaps()
    assert tid > 0
    # libbpf scans linearly: keep the number of lookups bounded
    encoded = [(n.encode(), k) for n, k in load_names(names_file)[:max_lookups]]
    hit, miss = [], []
    m_pre = smaps()
    for nm, k in encoded:
        a = time.perf_counter()
        found = lib.btf__find_by_name_kind(btf, nm, k)
        b = time.perf_counter()
        lib.btf__find_by_name_kind(btf, nm + b"_nope", 4)
        c = time.perf_counter()
        hit.append(b - a)
        miss.append(c - b)
        assert found > 0
    m3 = smaps()
    return dict(
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
    )


def child(which: str, path: str, names_file: str, libbpf_lookups: int) -> None:
    if which == "btfd":
        out = run_btfd(path, names_file, trace=False)
    elif which == "btfd-trace":
        out = run_btfd(path, names_file, trace=True)
    else:
        out = run_libbpf(path, names_file, libbpf_lookups)
    print(json.dumps(out))


def spawn(which: str, path: str, names_file: str, libbpf_lookups: int) -> dict[str, float]:
    r = subprocess.run(
        [sys.executable, __file__, "--child", which, "--btf", path, "--names", names_file,
         "--libbpf-lookups", str(libbpf_lookups)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def time_dumps(path: str, runs: int) -> dict[str, float]:
    """Median wall time of whole ``btfctl dump --format c`` and ``bpftool ... format c``
    processes (stdout to /dev/null), interleaved."""
    import shutil
    import statistics

    btfctl = os.path.join(os.path.dirname(sys.executable), "btfctl")
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    cmds = {
        "btfctl": [btfctl, "dump", "--file", path, "--format", "c"],
        "bpftool": [bpftool, "btf", "dump", "file", path, "format", "c"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for k, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times[k].append(time.perf_counter() - t0)
    return {f"{k}_s": statistics.median(v) for k, v in times.items()}


def mib(x: float) -> str:
    return f"{x / 1048576:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    ap.add_argument("--runs", type=int, default=3, help="fresh processes per contender (median)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--lookups", type=int, default=10_000, help="names looked up by btfd")
    ap.add_argument("--libbpf-lookups", type=int, default=2_000,
                    help="names looked up by libbpf (a linear scan each)")
    ap.add_argument("--dump-runs", type=int, default=3, help="timed C dumps per tool (0: skip)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--names", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.btf, args.names, args.libbpf_lookups)
        return
    import statistics
    import tempfile

    names = sample_names(args.btf, args.lookups)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(names, f)
        names_file = f.name
    try:
        runs: dict[str, list[dict[str, float]]] = {"btfd": [], "libbpf": []}
        for _ in range(args.runs):
            for which in runs:  # interleaved, so machine noise hits both alike
                runs[which].append(spawn(which, args.btf, names_file, args.libbpf_lookups))
        trace = spawn("btfd-trace", args.btf, names_file, args.libbpf_lookups)
    finally:
        os.unlink(names_file)
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in runs.items()}
    dumps = time_dumps(args.btf, args.dump_runs) if args.dump_runs > 0 else {}
    if args.json:
        print(json.dumps({"median": med, "tracemalloc": trace, "dump_c": dumps}, indent=2))
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
        ("anon_lookups", f"Anonymous after {len(names):,} lookups (MiB)"),
        ("priv_lookups", f"Private_Clean+Dirty after {len(names):,} lookups (MiB)"),
    ]:
        print(f"| {label} | {mib(b[key])} | {mib(lb[key])} | |")
    print(f"| index bytes reported by the spec (MiB) | {mib(b['index_bytes'])} | | |")
    print()
    print("tracemalloc (btfd.btf, separate run): "
          f"after open {mib(trace['trace_after_open'])} MiB, "
          f"after index {mib(trace['trace_after_index'])} MiB, "
          f"after lookups {mib(trace['trace_after_lookups'])} MiB, peak {mib(trace['trace_peak'])} MiB")
    print(f"libbpf lookups (btf__find_by_name_kind) are timed over {min(args.libbpf_lookups, len(names)):,} "
          f"names (it scans linearly); btfd over {len(names):,}.")
    if dumps:
        print(f"C dump, whole process, median of {args.dump_runs}: btfctl dump --format c "
              f"{dumps['btfctl_s']:.2f} s, bpftool {dumps['bpftool_s']:.2f} s, "
              f"ratio {dumps['btfctl_s'] / dumps['bpftool_s']:.1f}")


if __name__ == "__main__":
    main()
