"""What one client may cost the daemon, and the machinery that holds every request to it.

:class:`Limits` is every limit, each a ``btfd`` flag (``--help`` and docs/OPERATIONS.md list
them); :class:`Workers` runs request work in the worker threads with a time budget, a queue
time measured for health, and lanes so expensive work can never take every worker;
:class:`RateLimited` keeps an attack from flooding the log.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..btf.query import MAX_DEPTH, Budget, BudgetError

__all__ = ["Limits", "Workers", "RateLimited", "LimitError", "limit_error", "address_space_headroom",
           "AS_RESERVE"]

R = TypeVar("R")


@dataclass(frozen=True)
class Limits:
    """Every per-client limit, with the flag that sets it (docs/OPERATIONS.md, "Limits")."""

    # gRPC connections (gRPC core: the resource quota's connection cap, idle and age timeouts)
    max_connections: int = 256  # --max-connections
    connection_idle: float = 60.0  # --connection-idle-timeout (seconds)
    max_streams: int = 128  # --max-streams-per-connection (HTTP/2 suggests at least 100)
    # request shapes
    max_pattern: int = 1024  # --max-pattern-length (characters of a name or glob)
    max_specs: int = 64  # --max-specs-per-request (ResolveCore specs, after de-duplication)
    max_objects: int = 16  # --max-objects-per-request (MinimizeBtf objects: one agent's programs)
    max_depth: int = MAX_DEPTH  # LookupType depth (libbpf's own bound on type chains is 32)
    # time
    request_seconds: float = 10.0  # --request-time-limit: worker time one request may use
    queue_threshold: float = 1.0  # --saturation-threshold: queue wait that makes health NOT_SERVING
    # fd socket
    fd_request_seconds: float = 10.0  # --fd-request-timeout: a whole request line
    fd_answer_seconds: float = 10.0  # --fd-answer-timeout: for the peer to read an answer
    fd_per_uid: int = 64  # --fd-clients-per-uid


#: Address space kept free under an RLIMIT_AS (prlimit --as, ulimit -v): protobuf's C core
#: (upb) does not check its allocations, so a message built at the limit crashes the
#: process (SIGSEGV in a worker building a ListTypes page, found under prlimit --as=200M);
#: work is refused with RESOURCE_EXHAUSTED before it gets that close.
AS_RESERVE = 16 << 20


def address_space_headroom() -> int | None:
    """Bytes of address space left under RLIMIT_AS, None when it is unlimited."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None
    return limit - size


def _near_as_limit() -> str:
    room = address_space_headroom()
    if room is None or room >= AS_RESERVE:
        return ""
    return (f"the daemon is within {max(room, 0) >> 20} MiB of its address-space limit "
            f"(RLIMIT_AS {resource.getrlimit(resource.RLIMIT_AS)[0]}); try again later")


class LimitError(BudgetError):
    """A request over a limit: RESOURCE_EXHAUSTED (or the given status), with the flag."""


def limit_error(what: str, limit: int | float, flag: str, status: str = "RESOURCE_EXHAUSTED") -> LimitError:
    return LimitError(f"{what} is over the limit {limit} (btfd {flag} raises it)", status)


class RateLimited:
    """Log a line of a kind at most once per ``interval`` seconds, saying how many were left
    out meanwhile (an attacker's connections must not flood the log)."""

    def __init__(self, log: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.interval, self.clock = log, interval, clock
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, msg: str, *args: Any) -> None:
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return
            dropped = self._dropped.pop(key, 0)
            self._last[key] = now
            if len(self._last) > 1024:  # keys are few; never let them grow without bound
                self._last = {key: now}
        if dropped:
            msg += f" ({dropped} more like this in the last {self.interval:g} s not logged)"
        self.log.log(level, msg, *args)


class Workers:
    """Runs request work in the default executor's threads (``threads`` of them).

    - Every call gets a :class:`Budget` of ``limits.request_seconds`` that the work checks
      (btfd.btf.query does as it walks); a cancelled call cancels its budget, and waits for
      its thread to stop, so nothing it holds is released under it.
    - Heavy work (listings, CO-RE, minimizing) runs in a lane of ``threads - 1`` slots, so
      one worker is always left for lookups, whoever floods the heavy lane.
    - The time each call waited for a thread is observed (``queue``, a histogram); while calls
      wait longer than ``limits.queue_threshold``, :attr:`saturated` is true (health says
      NOT_SERVING) until a call starts within it again.
    """

    def __init__(self, threads: int, limits: Limits, queue: Any = None,
                 on_saturation: Callable[[bool], None] | None = None) -> None:
        self.threads = threads
        self.limits = limits
        self.queue = queue
        self.on_saturation = on_saturation
        self.saturated = False
        self._heavy: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting: dict[int, float] = {}  # call id -> when it was queued
        self._ids = 0
        self.running = 0  # calls in worker threads now (read from the event loop)

    def budget(self, time_remaining: float | None = None) -> Budget:
        """A call's budget: --request-time-limit, or the call's own deadline when sooner."""
        limit = self.limits.request_seconds
        as_limited = resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
        probe = _near_as_limit if as_limited else None
        if time_remaining is not None and time_remaining < limit:
            return Budget(max(0.0, time_remaining), why="the call's deadline passed",
                          status="DEADLINE_EXCEEDED", probe=probe)
        return Budget(limit, restart=True, probe=probe,
                      why=f"the request used more than {limit:g} s of worker time at once "
                          f"(btfd --request-time-limit raises it)")

    async def run(self, fn: Callable[[], R], budget: Budget, *, heavy: bool = False) -> R:
        why = _near_as_limit()
        if why:
            raise LimitError(why)
        if heavy:
            loop = asyncio.get_running_loop()
            if self._heavy is None or self._loop is not loop:
                self._heavy, self._loop = asyncio.Semaphore(max(1, self.threads - 1)), loop
            async with self._heavy:
                return await self._run(fn, budget)
        return await self._run(fn, budget)

    async def _run(self, fn: Callable[[], R], budget: Budget) -> R:
        loop = asyncio.get_running_loop()
        self._ids += 1
        key = self._ids
        queued = time.monotonic()
        self._waiting[key] = queued

        def work() -> R:
            loop.call_soon_threadsafe(self._started, key, queued)
            budget.start()
            budget.check()  # cancelled or expired while it waited
            return fn()

        self.running += 1

        fut = loop.run_in_executor(None, work)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            budget.cancel()
            while not fut.done():  # the thread may still read what the caller holds
                try:
                    await asyncio.wait([fut])
                except asyncio.CancelledError:
                    pass
            if not fut.cancelled():
                fut.exception()  # retrieved: asyncio would log it as never retrieved
            raise
        finally:
            self.running -= 1
            self._waiting.pop(key, None)

    def _started(self, key: int, queued: float) -> None:
        waited = time.monotonic() - queued
        self._waiting.pop(key, None)
        if self.queue is not None:
            self.queue.observe(waited)
        self._set(waited > self.limits.queue_threshold or self._oldest_wait() > self.limits.queue_threshold)

    def _oldest_wait(self) -> float:
        if not self._waiting:
            return 0.0
        return time.monotonic() - min(self._waiting.values())

    def check_saturation(self) -> bool:
        """Re-evaluate (called periodically: a queue stuck behind long work starts nothing)."""
        self._set(self._oldest_wait() > self.limits.queue_threshold)
        return self.saturated

    def _set(self, value: bool) -> None:
        if value != self.saturated:
            self.saturated = value
            if self.on_saturation is not None:
                self.on_saturation(value)


_FLAGS: list[tuple[str, str, type, str]] = [
    ("--max-connections", "max_connections", int,
     "gRPC connections open at once; more are refused by gRPC core (each is an fd and ~100 KiB)"),
    ("--connection-idle-timeout", "connection_idle", float,
     "seconds a gRPC connection may stay without calls before it is closed"),
    ("--max-streams-per-connection", "max_streams", int, "concurrent calls on one gRPC connection"),
    ("--max-pattern-length", "max_pattern", int, "characters of a ListTypes glob"),
    ("--max-specs-per-request", "max_specs", int, "distinct specs one ResolveCore may name"),
    ("--max-objects-per-request", "max_objects", int, "objects one MinimizeBtf may send"),
    ("--request-time-limit", "request_seconds", float,
     "seconds of worker time one request may use; past it: RESOURCE_EXHAUSTED"),
    ("--saturation-threshold", "queue_threshold", float,
     "seconds a request may wait for a worker before health says NOT_SERVING"),
    ("--fd-request-timeout", "fd_request_seconds", float,
     "seconds an fd-socket client has to send a whole request line"),
    ("--fd-answer-timeout", "fd_answer_seconds", float,
     "seconds an fd-socket client has to read an answer (and its fd)"),
    ("--fd-clients-per-uid", "fd_per_uid", int, "fd-socket connections one uid may hold at once"),
]


def add_arguments(p: Any) -> None:
    """The limit flags, on an argparse parser (defaults from :class:`Limits`)."""
    g = p.add_argument_group("limits (what one client may cost; docs/OPERATIONS.md)")
    d = Limits()
    for flag, attr, typ, text in _FLAGS:
        g.add_argument(flag, dest=attr, type=_positive(typ), default=getattr(d, attr),
                       metavar="SECONDS" if typ is float else "N",
                       help=f"{text} (default %(default)s)")


def from_args(args: Any) -> Limits:
    return Limits(**{attr: getattr(args, attr, getattr(Limits(), attr)) for _, attr, _, _ in _FLAGS})


def _positive(typ: type) -> Callable[[str], Any]:
    def parse(s: str) -> Any:
        v = typ(s)
        if v <= 0:
            raise ValueError(s)
        return v

    parse.__name__ = typ.__name__
    return parse
