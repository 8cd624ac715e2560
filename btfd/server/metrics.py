"""Prometheus metrics, resident memory first. The registry is passed in: no globals.

Memory comes from /proc/self/smaps_rollup, one metric per quantity (they overlap: uss is part
of pss, which is part of rss, so they must not be one metric's series, where ``sum()`` would
add them up): ``btfd_memory_uss_bytes`` (Private_Clean + Private_Dirty: what this process
alone costs; watch this one), ``btfd_memory_pss_bytes`` (shared pages divided among their
users), ``btfd_memory_rss_bytes`` (does not see kernel-mapped BTF pages as shared and counts
shared pages in full) and ``btfd_memory_anonymous_bytes``. Each can be summed across nodes.
Beside them: the usual ``process_*`` series (open fds and their limit, CPU, start time) and
``btfd_build_info``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["Metrics", "read_smaps_rollup", "memory_bytes", "MEMORY_METRICS", "unix_connections"]

#: Each memory quantity's metric, in the order they are exported (uss first).
MEMORY_METRICS = {
    "uss": ("btfd_memory_uss_bytes", "Unique set size: memory only this process holds "
            "(smaps_rollup Private_Clean + Private_Dirty)"),
    "pss": ("btfd_memory_pss_bytes", "Proportional set size: private memory plus each shared "
            "page divided by the processes that map it (smaps_rollup Pss)"),
    "rss": ("btfd_memory_rss_bytes", "Resident set size, shared pages counted in full "
            "(smaps_rollup Rss)"),
    "anonymous": ("btfd_memory_anonymous_bytes", "Anonymous (heap and stack) resident memory "
                  "(smaps_rollup Anonymous)"),
}


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
        mem = memory_bytes()
        for k, (name, doc) in MEMORY_METRICS.items():
            yield GaugeMetricFamily(name, doc, value=mem[k])
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


class _ProcessCollector(Collector):
    """The standard ``process_*`` series (as prometheus_client's ProcessCollector names them),
    read from what the systemd unit leaves visible: with ``ProcSubset=pid`` there is no
    /proc/stat, which prometheus_client's collector needs (it then exports nothing), so the
    start time is taken when btfd starts and the rest from /proc/self and getrlimit/getrusage."""

    def __init__(self) -> None:
        import time

        self.start = time.time() - time.monotonic() + _monotonic_start()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        import os
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        yield CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in "
                                  "seconds", value=ru.ru_utime + ru.ru_stime)
        try:
            n = len(os.listdir("/proc/self/fd"))
            yield GaugeMetricFamily("process_open_fds", "Number of open file descriptors", value=n)
        except OSError:
            pass
        yield GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors (soft "
                                "limit)", value=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        try:
            with open("/proc/self/statm") as f:
                pages = [int(x) for x in f.read().split()[:2]]
            size = os.sysconf("SC_PAGE_SIZE")
            yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes",
                                    value=pages[0] * size)
            yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes",
                                    value=pages[1] * size)
        except (OSError, ValueError, IndexError):
            pass
        yield GaugeMetricFamily("process_start_time_seconds", "Start time of the process since unix "
                                "epoch in seconds", value=self.start)


def _monotonic_start() -> float:
    """CLOCK_MONOTONIC at this process's start, from /proc/self/stat's starttime (ticks since
    boot; CLOCK_BOOTTIME in fact, which equals MONOTONIC unless the machine suspended), else
    now."""
    import os
    import time

    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19]) / os.sysconf("SC_CLK_TCK") - (time.clock_gettime(time.CLOCK_BOOTTIME)
                                                              - time.monotonic())
    except (OSError, ValueError, IndexError):
        return time.monotonic()


class Metrics:
    """Every btfd metric, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, specs: Registry) -> None:
        self.registry = registry
        registry.register(_StateCollector(specs))
        registry.register(_ProcessCollector())
        self.build = Info("btfd_build", "btfd's version and the versions it runs on", registry=registry)
        self.build.info(_build_labels())
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
        # Limits (btfd/server/limits.py): saturation, connections, refusals.
        self.worker_queue = Histogram(
            "btfd_worker_queue_seconds", "Time a request waited for a worker thread",
            registry=registry, buckets=(1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.saturated = Gauge("btfd_saturated", "1 while requests wait longer than "
                               "--saturation-threshold for a worker (health: NOT_SERVING)",
                               registry=registry)
        self.grpc_connections = Gauge("btfd_grpc_connections", "Open connections on the gRPC "
                                      "socket (at most --max-connections)", registry=registry)
        self.fd_connections = Gauge("btfd_fd_connections", "Open connections on the fd socket",
                                    registry=registry)
        self.limited = Counter("btfd_limited", "Requests and connections refused or stopped by a "
                               "limit", ["limit"], registry=registry)


def _build_labels() -> dict[str, str]:
    import platform
    from importlib import metadata

    from .. import __version__

    out = {"version": __version__, "python": platform.python_version()}
    for dist in ("grpcio", "protobuf"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = ""
    return out


def unix_connections(path: str) -> int:
    """Connected sockets accepted on the Unix socket bound at ``path`` (/proc/net/unix lists
    an accepted socket with its listener's path, state 03: connected)."""
    n = 0
    try:
        with open("/proc/net/unix") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) >= 8 and parts[5] == "03" and parts[7] == path:
                    n += 1
    except OSError:
        return 0
    return n
