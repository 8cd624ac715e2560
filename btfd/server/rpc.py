"""gRPC plumbing for the servicer: each call counted once in the request metrics whatever
ends it (its status from :func:`btfd.server.errors.describe`), and the registration that lets
LookupType answer bytes already serialized (its cache's entries)."""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc

from ..v1 import btfd_pb2_grpc as pb_grpc
from .errors import describe

__all__ = ["unary", "stream", "add_to_server", "AnswerCache", "cache_entry_bytes", "DEADLINE_SLACK"]

R = TypeVar("R")


class _Counts(Protocol):
    inflight: int  # calls running now (a stop waits for these, not for idle connections)

    def _done(self, method: str, code: str, t0: float) -> None: ...


class _Accounted:
    """Counts one call in btfd_requests_total/btfd_request_duration_seconds exactly once,
    whatever ends it: success, an error (aborted with the code :func:`describe` maps it to),
    a cancellation or an expired deadline (CancelledError, or GeneratorExit when a stream is
    dropped)."""

    __slots__ = ("svc", "method", "context", "t0")

    def __init__(self, svc: _Counts, method: str, context: Any) -> None:
        self.svc, self.method, self.context = svc, method, context
        self.t0 = time.perf_counter()

    async def __aenter__(self) -> None:
        self.svc.inflight += 1

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        self.svc.inflight -= 1
        if exc is None:
            self.svc._done(self.method, "OK", self.t0)
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            self.svc._done(self.method, _ended_code(self.context), self.t0)
        elif isinstance(exc, Exception):
            code, message = describe(exc, self.method)
            self.svc._done(self.method, code.name, self.t0)
            await self.context.abort(code, message)
        return False


DEADLINE_SLACK = 0.1  # seconds: see _ended_code


def _ended_code(context: Any) -> str:
    """Why a call ended early: its deadline passed, or the client cancelled it. The client's
    copy of the deadline fires first (the server's starts when the request arrives) and
    cancels the call, so a cancellation within DEADLINE_SLACK of the deadline is the
    deadline's doing."""
    try:
        left = context.time_remaining()
    except Exception:  # noqa: BLE001 - a context without deadlines
        left = None
    return "DEADLINE_EXCEEDED" if left is not None and left <= DEADLINE_SLACK else "CANCELLED"


def unary(method: str) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    def deco(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
            async with _Accounted(self, method, context):
                return await fn(self, request, context)
            raise AssertionError("unreachable")  # pragma: no cover - __aexit__ never swallows

        return wrapper

    return deco


def stream(method: str) -> Callable[[Callable[..., AsyncIterator[R]]], Callable[..., AsyncIterator[R]]]:
    def deco(fn: Callable[..., AsyncIterator[R]]) -> Callable[..., AsyncIterator[R]]:
        @functools.wraps(fn)
        async def wrapper(self: Any, request: Any,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[R]:
            async with _Accounted(self, method, context):
                async for item in fn(self, request, context):
                    yield item

        return wrapper

    return deco


def _passing_bytes(serialize: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def serializer(message: Any) -> bytes:
        return message if isinstance(message, bytes) else serialize(message)

    return serializer


class _Handlers:
    """Stands in for a server to collect what the generated add_BtfServicer_to_server
    registers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.service, self.handlers = service, handlers


def add_to_server(service: Any, server: Any) -> None:
    """The generated registration, except that LookupType, ResolveCore and MinimizeBtf may
    answer serialized bytes (their caches' entries) that go out as they are."""
    got = _Handlers()
    pb_grpc.add_BtfServicer_to_server(service, got)  # type: ignore[no-untyped-call]
    for m in ("LookupType", "ResolveCore", "MinimizeBtf"):  # (the last two: btfd/server/results.py)
        h = got.handlers[m]
        got.handlers[m] = h._replace(response_serializer=_passing_bytes(h.response_serializer))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(got.service, got.handlers),))
    server.add_registered_method_handlers(got.service, got.handlers)




def cache_entry_bytes(key: tuple[Any, ...], answer: bytes) -> int:
    """What one LookupType cache entry holds: the answer, its key (a tuple, the strings in
    it), and the (answer, size) pair with the ordered dict's slot and link: 220 bytes on
    CPython 3.11, measured with tracemalloc (tests/server/test_lookup_cache.py). Answers
    average ~350 bytes, so leaving the overhead out would undercount by 40 %."""
    return sys.getsizeof(answer) + sys.getsizeof(key) + sum(sys.getsizeof(k) for k in key
                                                            if isinstance(k, str)) + 220


class AnswerCache:
    """Serialized answers by request key, an LRU bounded by bytes (:func:`cache_entry_bytes`):
    memory cannot grow with traffic. Answers are kept serialized: a bytes object costs what it
    is counted at (a message object costs ~6x its ByteSize, and a churning cache of them
    fragmented the heap by 3 MiB over a 10-minute soak), and a hit is sent as it is."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.entries: OrderedDict[tuple[Any, ...], tuple[bytes, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        hit = self.entries.get(key)
        if hit is None:
            return None
        self.entries.move_to_end(key)
        return hit[0]

    def put(self, key: tuple[Any, ...], answer: bytes) -> None:
        size = cache_entry_bytes(key, answer)
        if size > self.limit // 8:
            return
        self.entries[key] = (answer, size)
        self.size += size
        while self.size > self.limit:
            _, (_, n) = self.entries.popitem(last=False)
            self.size -= n

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0
