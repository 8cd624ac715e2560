"""Mixed-load driver shared by bench/bench_load.py (full size, soak) and
tests/reliability (bounded): lookups, lists, raw reads, fd requests and CO-RE resolves from
many concurrent clients against a real daemon."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from btfd.v1 import btfd_pb2 as pb
from btfd.v1 import btfd_pb2_grpc

KINDS = ("lookup", "list", "raw", "fd", "core")


@dataclass
class Result:
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    wall: float = 0.0

    def p99_ms(self) -> float:
        return self.percentile_ms(0.99)

    def percentile_ms(self, q: float, kind: str | None = None) -> float:
        """The q-quantile latency (0 < q < 1) in ms, of one request kind or of all."""
        lat = sorted(x for k, v in self.latencies.items() if kind in (None, k) for x in v)
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1e3 if lat else 0.0

    def by_kind(self) -> list[str]:
        """One line per request kind: count, throughput over the run, p50 and p99."""
        return [f"{k:6} {len(v):7} ok, {len(v) / self.wall if self.wall else 0:7.1f} req/s, "
                f"p50 {self.percentile_ms(0.5, k):7.1f} ms, p99 {self.percentile_ms(0.99, k):7.1f} ms"
                for k, v in self.latencies.items() if v]


def _fd_request(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(b"vmlinux\n")
        msg, fds, _, _ = socket.recv_fds(s, 4096, 1)
        if len(fds) != 1 or "error" in json.loads(msg):
            raise RuntimeError(f"fd request failed: {msg!r}")
        import os

        os.close(fds[0])


async def run_mixed(sock: str, clients: int, requests: int, names: list[str], obj: bytes | None,
                    seed: int = 1, deadline: float | None = None) -> Result:
    """``clients`` concurrent clients each sending ``requests`` mixed requests (or until
    ``deadline``, a time.monotonic() value)."""
    res = Result()
    ch = grpc.aio.insecure_channel(f"unix:{sock}")
    stub = btfd_pb2_grpc.BtfStub(ch)
    loop = asyncio.get_running_loop()

    async def client(i: int) -> None:
        rnd = random.Random(seed * 1000 + i)
        n = 0
        while n < requests and (deadline is None or time.monotonic() < deadline):
            n += 1
            kind = rnd.choice(KINDS if obj is not None else KINDS[:4])
            t0 = time.perf_counter()
            try:
                if kind == "lookup":
                    await stub.LookupType(pb.LookupTypeRequest(name=rnd.choice(names)), timeout=30)
                elif kind == "list":
                    async for _ in stub.ListTypes(pb.ListTypesRequest(kind=pb.KIND_STRUCT, name=rnd.choice(names)[:3],
                                                                      match=pb.NAME_MATCH_PREFIX, limit=50), timeout=30):
                        pass
                elif kind == "raw":
                    off = rnd.randrange(0, 1 << 20)
                    async for _ in stub.ReadRaw(pb.ReadRawRequest(offset=off, length=rnd.randrange(1, 65536)), timeout=30):
                        pass
                elif kind == "fd":
                    await loop.run_in_executor(None, _fd_request, sock + ".fd")
                else:
                    await stub.ResolveCore(pb.ResolveCoreRequest(object=obj), timeout=60)
                res.ok += 1
                res.latencies[kind].append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding, collected
                res.errors.append(f"{kind}: {exc!r}"[:300])

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    res.wall = time.perf_counter() - t0
    await ch.close()
    return res


def corpus_object() -> bytes:
    return (Path(__file__).resolve().parent.parent / "tests" / "data" / "core" / "objs" / "k_task_fields.bpf.o").read_bytes()
