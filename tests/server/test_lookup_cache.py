"""The LookupType answer cache costs what it counts (--lookup-cache-bytes is a real bound), and
a cached answer is byte for byte the answer computed afresh."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from pathlib import Path

from prometheus_client import CollectorRegistry

from btfd.btf import Kind, Spec
from btfd.server.metrics import Metrics
from btfd.server.registry import Registry
from btfd.server.service import BtfService
from btfd.v1 import btfd_pb2 as pb


def _service(vmlinux: Path, cache_bytes: int) -> tuple[Registry, BtfService]:
    specs = Registry(vmlinux_path=str(vmlinux), sysfs_dir=None, extra={})
    return specs, BtfService(specs, Metrics(CollectorRegistry(), specs), fd_socket="", cache_bytes=cache_bytes)


def _lookups(svc: BtfService, names: list[str], depth: int = 0) -> list[bytes]:
    async def run() -> list[bytes]:
        return [await svc.LookupType(pb.LookupTypeRequest(name=n, kind=pb.KIND_STRUCT, depth=depth), None)
                for n in names]

    return asyncio.run(run())


def test_cache_memory_is_what_it_counts(kernel_vmlinux: Path) -> None:
    limit = 1 << 20
    specs, svc = _service(kernel_vmlinux, limit)
    try:
        spec = specs.vmlinux.spec
        assert spec is not None
        names = sorted({t.name for t in spec.types(Kind.STRUCT) if t.name})[:3000]
        _lookups(svc, names[:50])  # first-use costs (imports, worker threads) out of the way
        svc._cache.clear()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        _lookups(svc, names)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        counted = svc._cache.size
        assert limit * 0.9 <= counted <= limit  # the 3,000 answers overflow the cache: it is full
        # What the process holds is what the cache counts (a cache of message objects held
        # about 6x its serialized size).
        assert 0.8 <= held / counted <= 1.25, (held, counted)
    finally:
        specs.close()


def test_a_cached_answer_is_the_fresh_answer(kernel_vmlinux: Path) -> None:
    specs, cached = _service(kernel_vmlinux, 1 << 20)
    specs0, uncached = _service(kernel_vmlinux, 0)
    try:
        names = ["task_struct", "sk_buff", "file", "inode"]
        first = _lookups(cached, names, depth=2)
        again = _lookups(cached, names, depth=2)
        fresh = _lookups(uncached, names, depth=2)
        assert len(cached._cache) == len(names) and not uncached._cache
        assert again == first == fresh
        r = pb.LookupTypeResponse.FromString(again[0])
        assert r.types[0].name == "task_struct" and r.types[0].kind == pb.KIND_STRUCT and r.referenced
    finally:
        specs.close()
        specs0.close()


def test_daemon_reports_its_cache_and_keeps_it_under_the_limit(tmp_path: Path, kernel_vmlinux: Path) -> None:
    from tests.server.conftest import BtfdProcess
    from tests.server.test_hardening import _metric

    spec = Spec(kernel_vmlinux.read_bytes())
    names = sorted({t.name for t in spec.types(Kind.STRUCT) if t.name})[:400]
    limit = 64 << 10
    with BtfdProcess(tmp_path, "--lookup-cache-bytes", "64K") as d:
        stub, url = d.stub(), d.metrics_url
        for n in names:
            stub.LookupType(pb.LookupTypeRequest(name=n, kind=pb.KIND_STRUCT))
        held = _metric(url, "btfd_lookup_cache_bytes")
        entries = _metric(url, "btfd_lookup_cache_entries")
        assert 0.8 * limit <= held <= limit and 0 < entries < len(names)
        # the newest answer is cached, and a hit answers what the miss did
        misses = _metric(url, "btfd_lookup_cache_total", result="miss")
        again = stub.LookupType(pb.LookupTypeRequest(name=names[-1], kind=pb.KIND_STRUCT))
        assert _metric(url, "btfd_lookup_cache_total", result="miss") == misses
        assert again.types[0].name == names[-1] and again.types[0].kind == pb.KIND_STRUCT
