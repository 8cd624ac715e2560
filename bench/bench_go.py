#!/usr/bin/env python3
"""Go agents: what a cilium/ebpf agent pays to load a CO-RE object with btfd, against the
references that parse the kernel's BTF themselves.

Every agent loads the same object (clients/go/agent/testdata/task_ids.bpf.c: three CO-RE
reads of task_struct, attached to raw_tracepoint/sys_enter), prints a "ready" line, then holds
its programs until its stdin closes. Measured per process from exec to the ready line (wall
time seen by this script) and, while it holds, /proc/PID/smaps_rollup (PSS; USS = private
clean + dirty) and VmHWM (peak RSS) from /proc/PID/status.

Variants:
- go-baseline: the same Go agent binary parsing the object and loading nothing (Go runtime,
  gRPC, cilium/ebpf linked in: what any Go agent pays before BTF);
- go-btfd-minimize: Go (cilium/ebpf 0.9.1), btfd's MinimizeBtf as KernelTypes;
- go-btfd-patched: Go (cilium/ebpf 0.9.1), btfd's ResolveCore patched instructions;
- go-kernel: Go (cilium/ebpf 0.9.1) parsing /sys/kernel/btf/vmlinux itself (fails on ENUM64:
  the error is recorded);
- libbpf-kernel: C, libbpf 1.1 (Debian libbpf-dev) bpf_object__open_file + load + attach,
  libbpf parsing the kernel's BTF itself;
- libbpf-btfd: the same C loader given btfd's minimal BTF (btf_custom_path).

    .venv/bin/python bench/bench_go.py [--runs 8] [--agents 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
GO_DIR = ROOT / "clients" / "go"
PROG = GO_DIR / "agent" / "testdata" / "task_ids.bpf.c"

LOADER_C = r"""
#include <bpf/libbpf.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* argv[1]: BPF object; argv[2] (optional): custom BTF for CO-RE (libbpf's btf_custom_path). */
int main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct bpf_object *obj;
	struct bpf_program *p;
	char buf[256];

	clock_gettime(CLOCK_MONOTONIC, &t0);
	LIBBPF_OPTS(bpf_object_open_opts, opts, .btf_custom_path = argc > 2 ? argv[2] : NULL);
	obj = bpf_object__open_file(argv[1], &opts);
	if (!obj) { perror("bpf_object__open_file"); return 1; }
	if (bpf_object__load(obj)) { perror("bpf_object__load"); return 1; }
	bpf_object__for_each_program(p, obj)
		if (!bpf_program__attach(p)) { perror("bpf_program__attach"); return 1; }
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("{\"ready\": true, \"startup_ms\": %.3f}\n",
		(t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	bpf_object__close(obj);
	return 0;
}
"""


def run(*cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)  # type: ignore[call-overload]


def rollup(pid: int) -> dict[str, int]:
    """PSS, USS, anonymous memory and peak RSS of a process, in bytes."""
    f: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            f[parts[0].rstrip(":")] = int(parts[1]) * 1024
    hwm = next(int(x.split()[1]) * 1024 for x in Path(f"/proc/{pid}/status").read_text().splitlines()
               if x.startswith("VmHWM:"))
    return {"pss": f["Pss"], "uss": f["Private_Clean"] + f["Private_Dirty"], "anon": f["Anonymous"], "hwm": hwm}


def start(cmd: list[str]) -> tuple[subprocess.Popen[str], float]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, t0


def ready(p: subprocess.Popen[str], t0: float) -> float | str:
    """Wall ms from exec to the ready line, or the agent's error."""
    assert p.stdout is not None
    line = p.stdout.readline()
    if '"ready"' not in line:
        assert p.stderr is not None
        p.wait(30)
        return (p.stderr.read() or line).strip()
    return (time.perf_counter() - t0) * 1e3


def stop(p: subprocess.Popen[str]) -> None:
    assert p.stdin is not None
    p.stdin.close()
    if p.wait(30) != 0:
        assert p.stderr is not None
        raise RuntimeError(p.stderr.read())


def measure(cmd: list[str], runs: int, agents: int) -> dict[str, object]:
    single = []
    for _ in range(runs):
        p, t0 = start(cmd)
        r = ready(p, t0)
        if isinstance(r, str):
            return {"error": r}
        single.append({"ms": r, **rollup(p.pid)})
        stop(p)
    procs = [start(cmd) for _ in range(agents)]
    together = []
    for p, t0 in procs:
        r = ready(p, t0)
        if isinstance(r, str):
            raise RuntimeError(r)
        together.append(r)
    mems = [rollup(p.pid) for p, _ in procs]
    for p, _ in procs:
        stop(p)
    med = {k: statistics.median(float(s[k]) for s in single) for k in single[0]}
    return {"single": med, "n_ms_median": statistics.median(together), "n_ms_max": max(together),
            "n_pss": sum(m["pss"] for m in mems), "n_uss": sum(m["uss"] for m in mems),
            "n_hwm": sum(m["hwm"] for m in mems)}


def mib(b: float) -> str:
    return f"{b / 1048576:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=8, help="sequential fresh processes per variant (medians)")
    ap.add_argument("--agents", type=int, default=16, help="agents alive at once")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from btfd.client import Client

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = {**os.environ, "BTFD_GO_DIR": str(tmp / "gopath")}
        agent = tmp / "btfd-agent"
        run(str(GO_DIR / "debian-go.sh"), "build", "-o", str(agent), "./cmd/btfd-agent", env=env)
        loader = tmp / "libbpf-loader"
        (tmp / "loader.c").write_text(LOADER_C)
        run("cc", "-O2", "-o", str(loader), str(tmp / "loader.c"), "-lbpf")
        multiarch = run("clang", "-print-multiarch").stdout.strip() or f"{platform.machine()}-linux-gnu"
        arch = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390"}.get(platform.machine(), platform.machine())
        obj = tmp / "task_ids.o"
        run("clang", "-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{arch}", f"-I/usr/include/{multiarch}",
            "-c", str(PROG), "-o", str(obj))
        obj_size = obj.stat().st_size
        sock = str(tmp / "btfd.sock")
        daemon = subprocess.Popen([str(BIN / "btfd"), "--socket", sock, "--metrics-address", "off",
                                   "--log-level", "warning"])
        try:
            while not os.path.exists(sock + ".fd"):
                time.sleep(0.05)
            with Client(sock) as c:
                minimal = c.minimize_btf([obj.read_bytes()]).btf
            min_path = tmp / "minimal.btf"
            min_path.write_bytes(minimal)
            variants = {
                "go-baseline": [str(agent), "-route", "none", "-hold", "stdin", str(obj)],
                "go-btfd-minimize": [str(agent), "-socket", sock, "-route", "minimize", "-attach", "-hold", "stdin",
                                     str(obj)],
                "go-btfd-patched": [str(agent), "-socket", sock, "-route", "patched", "-attach", "-hold", "stdin",
                                    str(obj)],
                "go-kernel": [str(agent), "-route", "kernel", "-attach", "-hold", "stdin", str(obj)],
                "libbpf-kernel": [str(loader), str(obj)],
                "libbpf-btfd": [str(loader), str(obj), str(min_path)],
            }
            results = {name: measure(cmd, args.runs, args.agents) for name, cmd in variants.items()}
            btfd_mem = rollup(daemon.pid)
        finally:
            daemon.terminate()
            daemon.wait(20)
    go_version = run("go", "version").stdout.split()[2]
    libbpf = run("dpkg-query", "-W", "-f=${Version}", "libbpf-dev").stdout
    cilium = run("dpkg-query", "-W", "-f=${Version}", "golang-github-cilium-ebpf-dev").stdout
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, kernel {platform.release()}, {go_version}, "
          f"cilium/ebpf {cilium}, libbpf {libbpf}; {time.strftime('%Y-%m-%d')}")
    print(f"# object: task_ids.bpf.c ({obj_size} bytes); minimal BTF "
          f"{len(minimal)} bytes; medians of {args.runs} fresh processes, then {args.agents} alive at once")
    print(f"| agent | start-up ms | PSS MiB | USS MiB | anon MiB | peak RSS MiB | {args.agents} at once: start-up ms median / max "
          f"| {args.agents} at once: PSS MiB total | USS MiB total | peak RSS MiB total |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if "error" in r:
            print(f"| {name} | fails: `{r['error'][:200]}` | | | | | | | | |")
            continue
        s = r["single"]
        assert isinstance(s, dict)
        print(f"| {name} | {s['ms']:.1f} | {mib(s['pss'])} | {mib(s['uss'])} | {mib(s['anon'])} | {mib(s['hwm'])} | "
              f"{r['n_ms_median']:.1f} / {r['n_ms_max']:.1f} | {mib(r['n_pss'])} | {mib(r['n_uss'])} | "
              f"{mib(r['n_hwm'])} |")  # type: ignore[arg-type]
    print(f"# btfd itself (shared by every agent on the node): PSS {mib(btfd_mem['pss'])} MiB, "
          f"USS {mib(btfd_mem['uss'])} MiB")
    base = results.get("go-baseline", {})
    if "single" in base:
        for name in ("go-btfd-minimize", "go-btfd-patched"):
            r = results[name]
            if "single" in r:
                a, b = r["single"], base["single"]
                assert isinstance(a, dict) and isinstance(b, dict)
                print(f"- {name} - go-baseline: PSS +{mib(a['pss'] - b['pss'])} MiB, USS +{mib(a['uss'] - b['uss'])} "
                      f"MiB (anonymous +{mib(a['anon'] - b['anon'])} MiB), peak RSS +{mib(a['hwm'] - b['hwm'])} MiB, start-up +{a['ms'] - b['ms']:.1f} ms")
    ref = results.get("libbpf-kernel", {})
    if "single" in ref:
        for name in ("go-btfd-minimize", "go-btfd-patched", "libbpf-btfd"):
            r = results[name]
            if "single" not in r:
                continue
            a, b = r["single"], ref["single"]
            assert isinstance(a, dict) and isinstance(b, dict)
            print(f"- {name} / libbpf-kernel: start-up {a['ms'] / b['ms']:.2f}x, PSS {a['pss'] / b['pss']:.2f}x, "
                  f"peak RSS {a['hwm'] / b['hwm']:.2f}x; {args.agents} at once: PSS "
                  f"{r['n_pss'] / ref['n_pss']:.2f}x")  # type: ignore[operator]


if __name__ == "__main__":
    main()
