#!/usr/bin/env python3
"""Daemon benchmark: LookupType by name at 1, 8 and 32 concurrent clients, side by side in one
run with a bare gRPC echo service on the same kind of socket (Unix, grpc.aio + uvloop), and the
daemon's uss/anonymous before and after 100,000 lookups.

    .venv/bin/python bench/bench_server.py [--seconds 5] [--lookups 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from btfd.btf import Kind, Spec  # noqa: E402
from btfd.server.metrics import memory_bytes  # noqa: E402
from btfd.v1 import btfd_pb2 as pb  # noqa: E402

ECHO = textwrap.dedent("""
    import asyncio, sys, grpc, uvloop
    async def main(path):
        server = grpc.aio.server()
        async def echo(req, ctx):
            return req
        h = grpc.unary_unary_rpc_method_handler(echo)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", {"Echo": h}),))
        server.add_insecure_port("unix:" + path)
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()
    uvloop.run(main(sys.argv[1]))
""")


async def load(target: str, method: str, payloads: list[bytes], concurrency: int, seconds: float,
               decode: bool) -> dict[str, float]:
    ch = grpc.aio.insecure_channel(target)
    call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
    lat: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        k = i
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            resp = await call(payloads[k % len(payloads)])
            if decode:
                pb.LookupTypeResponse.FromString(resp)
            lat.append(time.perf_counter() - t0)
            k += concurrency

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    wall = time.perf_counter() - t0
    await ch.close()
    lat.sort()
    return {"rps": len(lat) / wall, "p50_ms": statistics.median(lat) * 1e3,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1e3, "n": len(lat)}


def wait_ready(proc: subprocess.Popen[bytes], path: str, log: Path | None = None) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if os.path.exists(path) and (log is None or "ready:" in log.read_text()):
            return
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text() if log else ''}")
        time.sleep(0.05)
    raise SystemExit("server not ready")


async def many_lookups(target: str, names: list[str], n: int) -> float:
    ch = grpc.aio.insecure_channel(target)
    from btfd.v1 import btfd_pb2_grpc

    stub = btfd_pb2_grpc.BtfStub(ch)
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            await stub.LookupType(pb.LookupTypeRequest(name=names[i % len(names)], kind=pb.KIND_STRUCT))

    for start in range(0, n, 1000):
        await asyncio.gather(*(one(i) for i in range(start, min(n, start + 1000))))
    await ch.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="per concurrency level and server")
    ap.add_argument("--lookups", type=int, default=100_000)
    args = ap.parse_args()
    btf = "/sys/kernel/btf/vmlinux"
    spec = Spec(Path(btf).read_bytes())
    structs = sorted({t.name for t in spec.types(Kind.STRUCT) if t.name})
    rnd = random.Random(1)
    hot = rnd.sample(structs, 64)
    payloads = [pb.LookupTypeRequest(name=n, kind=pb.KIND_STRUCT).SerializeToString() for n in hot]
    with tempfile.TemporaryDirectory() as d:
        sock, esock, log = f"{d}/btfd.sock", f"{d}/echo.sock", Path(d) / "log"
        daemon = subprocess.Popen([str(ROOT / ".venv/bin/btfd"), "--socket", sock, "--metrics-address", "off",
                                   "--log-level", "warning"], stderr=open(log, "w"))
        echo = subprocess.Popen([sys.executable, "-c", ECHO, esock], stdout=subprocess.PIPE)
        try:
            deadline = time.time() + 30
            while not os.path.exists(sock) and time.time() < deadline:
                time.sleep(0.05)
            assert echo.stdout is not None
            echo.stdout.readline()
            print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, Python "
                  f"{platform.python_version()}, grpcio {grpc.__version__}; {time.strftime('%Y-%m-%d')}")
            print(f"# LookupType(name, kind=struct) over {len(hot)} struct names, {args.seconds:.0f} s per cell")
            print("| clients | btfd req/s | p50 ms | p99 ms | echo req/s | p50 ms | p99 ms | btfd/echo |")
            print("|---|---|---|---|---|---|---|---|")
            for c in (1, 8, 32):
                a = asyncio.run(load(f"unix:{sock}", "/btfd.v1.Btf/LookupType", payloads, c, args.seconds, True))
                b = asyncio.run(load(f"unix:{esock}", "/echo.Echo/Echo", payloads, c, args.seconds, False))
                print(f"| {c} | {a['rps']:.0f} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {b['rps']:.0f} | "
                      f"{b['p50_ms']:.2f} | {b['p99_ms']:.2f} | {a['rps'] / b['rps']:.2f} |")
            asyncio.run(many_lookups(f"unix:{sock}", structs, 20_000))  # warm-up: cache full, arenas grown
            before = memory_bytes(daemon.pid)
            secs = asyncio.run(many_lookups(f"unix:{sock}", structs, args.lookups))
            after = memory_bytes(daemon.pid)
            print()
            print(f"# after a 20,000-lookup warm-up: {args.lookups} lookups over all {len(structs)} struct "
                  f"names (cache churning) in {secs:.1f} s")
            for k in ("uss", "anonymous", "rss"):
                print(f"- {k}: {before[k] / 1048576:.2f} MiB -> {after[k] / 1048576:.2f} MiB "
                      f"({(after[k] - before[k]) / 1048576:+.2f} MiB)")
        finally:
            daemon.terminate()
            echo.terminate()
            daemon.wait(20)
            echo.wait(20)


if __name__ == "__main__":
    main()
