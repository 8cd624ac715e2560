"""Prometheus metrics, resident memory first. The registry is passed in: no globals.

``btfd_memory_bytes{kind}`` comes from /proc/self/smaps_rollup: ``rss`` alone does not see
kernel-mapped BTF pages as shared and double-counts shared ones, so ``pss`` (proportional),
``uss`` (Private_Clean + Private_Dirty: what this process alone costs) and ``anonymous`` are
exported beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["Metrics", "read_smaps_rollup", "memory_bytes"]


def read_smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """Fields of /proc/PID/smaps_rollup in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def memory_bytes(pid: int | str = "self") -> dict[str, int]:
    """``{rss, pss, uss, anonymous}`` of a process."""
    s = read_smaps_rollup(pid)
    return {
        "rss": s.get("Rss", 0),
        "pss": s.get("Pss", 0),
        "uss": s.get("Private_Clean", 0) + s.get("Private_Dirty", 0),
        "anonymous": s.get("Anonymous", 0),
    }


class _StateCollector(Collector):
    def __init__(self, specs: Registry) -> None:
        self.specs = specs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        mem = GaugeMetricFamily("btfd_memory_bytes", "Memory of the daemon process, from "
                                "/proc/self/smaps_rollup (uss = Private_Clean + Private_Dirty)",
                                labels=["kind"])
        for k, v in memory_bytes().items():
            mem.add_metric([k], v)
        yield mem
        size = GaugeMetricFamily("btfd_spec_bytes", "Bytes of each served BTF blob",
                                 labels=["spec", "mode"])
        types = GaugeMetricFamily("btfd_spec_types", "Types of each served spec (own types)",
                                  labels=["spec"])
        idx = GaugeMetricFamily("btfd_spec_index_bytes", "Bytes each spec's indexes cost",
                                labels=["spec", "index"])
        loaded = GaugeMetricFamily("btfd_spec_loaded", "1 when the spec is open, 0 while lazy",
                                   labels=["spec"])
        refused = GaugeMetricFamily("btfd_spec_mmap_refused",
                                    "1 when the kernel refused to map the spec's file and it is "
                                    "served from a sealed memfd copy instead (the fallback)",
                                    labels=["spec"])
        for e in self.specs.entries():
            loaded.add_metric([e.name], 1 if e.spec is not None else 0)
            if e.spec is None or e.source is None:
                continue
            size.add_metric([e.name, e.source.mode], e.source.size)
            refused.add_metric([e.name], 1 if e.source.mmap_refused else 0)
            types.add_metric([e.name], e.spec.count)
            for k, v in e.spec.index_bytes().items():
                idx.add_metric([e.name, k], v)
        yield from (size, types, idx, loaded, refused)


class Metrics:
    """Every btfd metric, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, specs: Registry) -> None:
        self.registry = registry
        registry.register(_StateCollector(specs))
        self.requests = Counter("btfd_requests", "gRPC requests by method and status code",
                                ["method", "code"], registry=registry)
        self.duration = Histogram(
            "btfd_request_duration_seconds", "gRPC request duration by method", ["method"],
            registry=registry,
            buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.fds_passed = Counter("btfd_fds_passed", "File descriptors handed out over SCM_RIGHTS",
                                  ["spec", "mode"], registry=registry)
        self.fd_refused = Counter("btfd_fd_clients_refused",
                                  "fd-socket clients refused by --allow-uid/--allow-gid",
                                  registry=registry)
        self.cache = Counter("btfd_lookup_cache", "LookupType answers served from the cache or not",
                             ["result"], registry=registry)
        self.cache_bytes = Gauge("btfd_lookup_cache_bytes", "Bytes the LookupType answer cache "
                                 "holds (serialized answers and their keys; at most "
                                 "--lookup-cache-bytes)", registry=registry)
        self.cache_entries = Gauge("btfd_lookup_cache_entries", "Answers in the LookupType cache",
                                   registry=registry)
        self.fd_requests = Counter("btfd_fd_requests", "fd-socket requests by result code",
                                   ["code"], registry=registry)
        # btfd/server/results.py: C headers rendered once per spec, CO-RE/minimal-BTF answers
        # computed once per input (cache="c_header" | "answer").
        self.result_cache = Counter("btfd_result_cache", "Results served from the cache (hit), "
                                    "computed (miss) or dropped for the byte budget (evicted)",
                                    ["cache", "result"], registry=registry)
        self.result_cache_bytes = Gauge("btfd_result_cache_bytes", "Bytes the result caches hold "
                                        "(c_header: sealed memfds, at most --c-cache-bytes; answer: "
                                        "serialized answers, at most --result-cache-bytes)",
                                        ["cache"], registry=registry)
        self.result_cache_entries = Gauge("btfd_result_cache_entries", "Entries in the result caches",
                                          ["cache"], registry=registry)
