"""The gRPC client of btfd: calls with deadlines and retries. (The zero-copy fd path is
:mod:`btfd.shared`; ``clients/python``'s ``btfd_client`` exports both.)

- :class:`Client` (sync) and :class:`AsyncClient` mirror every RPC. Each call has a deadline;
  ``UNAVAILABLE`` (daemon restarting) is retried with exponential backoff, and
  ``retry_budget`` bounds the wall time spent retrying (attempts included, not only sleeps);
  no other status is retried. The channel reconnects quickly after a restart (reconnect
  backoff 0.1 s up to 1 s instead of gRPC's 1 s up to 120 s).

This module does not import the BTF library, and :mod:`btfd.shared` does not need it: the
two paths import each other only where the fd path asks the daemon where its fd socket is.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc

from .paths import default_socket
from .retry import Backoff
from .v1 import btfd_pb2 as pb
from .v1 import btfd_pb2_grpc as pb_grpc

__all__ = [
    "Client",
    "AsyncClient",
    "default_socket",
    "RETRYABLE",
    "CHANNEL_OPTIONS",
]

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})

#: Reconnect quickly after a daemon restart: gRPC's default backoff grows to 120 s, during
#: which calls on a channel in TRANSIENT_FAILURE fail at once without reconnecting.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)

async def _asleep(seconds: float) -> None:
    import asyncio  # only asyncio users pay for importing it

    await asyncio.sleep(seconds)


class Retry(Backoff):
    """Backoff for one logical gRPC call (:class:`btfd.retry.Backoff`): only RETRYABLE
    statuses are retried."""

    def delay(self, exc: grpc.RpcError) -> float | None:
        """Seconds to sleep before retrying after ``exc``; None: give up and raise it."""
        if exc.code() not in RETRYABLE:
            return None
        return self.pause()


class _Base:
    def __init__(self, socket_path: str | None = None, *, timeout: float = 10.0,
                 retry_budget: float = 15.0) -> None:
        self.socket_path = socket_path or default_socket()
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.target = f"unix:{self.socket_path}"
        #: How many times a call was retried after UNAVAILABLE (for agents' own metrics).
        self.retries = 0

    def _retry(self) -> Retry:
        return Retry(self.retry_budget)

    def _list_request(self, kind: int, name: str, match: int, spec: str, page_size: int,
                      start: int, limit: int) -> Any:
        return pb.ListTypesRequest(spec=spec, kind=kind, name=name, match=match,  # type: ignore[arg-type,unused-ignore]
                                   page_size=page_size, start_id=start, limit=limit)


class _Listing:
    """Where a paged ListTypes stands, so that a retry after UNAVAILABLE resumes after the
    last page received (no type twice, none missing) and an exhausted ``limit`` stays one."""

    def __init__(self, limit: int) -> None:
        self.start, self.sent, self.limit = 0, 0, limit

    def remaining(self) -> int:
        return (self.limit - self.sent) if self.limit else 0

    def done_after(self, page: Any) -> bool:
        """Account for a page whose types were handed out; True when the listing is over."""
        self.sent += len(page.types)
        if not page.next_start_id or (self.limit and self.sent >= self.limit):
            return True
        self.start = page.next_start_id
        return False


def _lookup_request(name: str | None, id: int | None, kind: int, spec: str, depth: int,
                    all_specs: bool) -> Any:
    req = pb.LookupTypeRequest(spec=spec, kind=int(kind), depth=depth, all_specs=all_specs)  # type: ignore[arg-type,unused-ignore]
    if id is not None:
        req.id = id
    elif name is not None:
        req.name = name
    return req


class Client(_Base):
    """Synchronous btfd client. Use as a context manager or call :meth:`close`."""

    def __init__(self, socket_path: str | None = None, *, timeout: float = 10.0,
                 retry_budget: float = 15.0) -> None:
        super().__init__(socket_path, timeout=timeout, retry_budget=retry_budget)
        self.channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self.stub: Any = pb_grpc.BtfStub(self.channel)  # type: ignore[no-untyped-call]

    def _call(self, fn: Callable[..., Any], request: Any) -> Any:
        retry = self._retry()
        while True:
            try:
                return fn(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                d = retry.delay(exc)
                if d is None:
                    raise
                self.retries += 1
                time.sleep(d)

    def get_info(self) -> pb.GetInfoResponse:
        r: pb.GetInfoResponse = self._call(self.stub.GetInfo, pb.GetInfoRequest())
        return r

    def lookup_type(self, name: str | None = None, *, id: int | None = None, kind: int = 0,
                    spec: str = "", depth: int = 0, all_specs: bool = False) -> pb.LookupTypeResponse:
        """Types by ``name`` (optionally of ``kind``, a ``btfd.btf.Kind``) or by ``id``."""
        req = _lookup_request(name, id, kind, spec, depth, all_specs)
        r: pb.LookupTypeResponse = self._call(self.stub.LookupType, req)
        return r

    def list_types(self, *, kind: int = 0, name: str = "", match: int = 0, spec: str = "",
                   page_size: int = 0, limit: int = 0) -> Iterator[pb.TypeSummary]:
        """Every matching type, as the pages arrive; after UNAVAILABLE (a restart) the
        listing resumes after the last page received: no type twice, none missing."""
        at = _Listing(limit)
        retry = self._retry()
        while True:
            req = self._list_request(kind, name, match, spec, page_size, at.start, at.remaining())
            try:
                for page in self.stub.ListTypes(req, timeout=self.timeout):
                    retry.progress()
                    yield from page.types
                    if at.done_after(page):
                        return
                return
            except grpc.RpcError as exc:
                d = retry.delay(exc)
                if d is None:
                    raise
                self.retries += 1
                time.sleep(d)

    def read_raw(self, offset: int, length: int, *, spec: str = "", chunk_size: int = 0) -> bytes:
        req = pb.ReadRawRequest(spec=spec, offset=offset, length=length, chunk_size=chunk_size)

        def read(r: Any, timeout: float) -> bytes:
            return b"".join(c.data for c in self.stub.ReadRaw(r, timeout=timeout))

        data: bytes = self._call(read, req)
        return data

    def resolve_core(self, obj: bytes, *, spec: str = "", specs: list[str] | None = None,
                     want_patched: bool = False, include_modules: bool = False) -> pb.ResolveCoreResponse:
        req = pb.ResolveCoreRequest(object=obj, spec=spec, specs=specs or [], want_patched=want_patched,
                                    include_modules=include_modules)
        r: pb.ResolveCoreResponse = self._call(self.stub.ResolveCore, req)
        return r

    def minimize_btf(self, objects: list[bytes], *, spec: str = "") -> pb.MinimizeBtfResponse:
        req = pb.MinimizeBtfRequest(spec=spec, objects=objects)
        r: pb.MinimizeBtfResponse = self._call(self.stub.MinimizeBtf, req)
        return r

    def health(self) -> bool:
        """True when the daemon reports SERVING."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        r = self._call(stub.Check, health_pb2.HealthCheckRequest())
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """asyncio btfd client (grpc.aio): the same methods as :class:`Client`, awaitable, with
    the same deadlines, retries and list resumption."""

    def __init__(self, socket_path: str | None = None, *, timeout: float = 10.0,
                 retry_budget: float = 15.0) -> None:
        super().__init__(socket_path, timeout=timeout, retry_budget=retry_budget)
        self.channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        self.stub: Any = pb_grpc.BtfStub(self.channel)  # type: ignore[no-untyped-call]

    async def _call(self, fn: Callable[..., Any], request: Any) -> Any:
        retry = self._retry()
        while True:
            try:
                return await fn(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                d = retry.delay(exc)
                if d is None:
                    raise
                self.retries += 1
                await _asleep(d)

    async def get_info(self) -> pb.GetInfoResponse:
        r: pb.GetInfoResponse = await self._call(self.stub.GetInfo, pb.GetInfoRequest())
        return r

    async def lookup_type(self, name: str | None = None, *, id: int | None = None, kind: int = 0,
                          spec: str = "", depth: int = 0, all_specs: bool = False) -> pb.LookupTypeResponse:
        req = _lookup_request(name, id, kind, spec, depth, all_specs)
        r: pb.LookupTypeResponse = await self._call(self.stub.LookupType, req)
        return r

    async def list_types(self, *, kind: int = 0, name: str = "", match: int = 0, spec: str = "",
                         page_size: int = 0, limit: int = 0) -> AsyncIterator[pb.TypeSummary]:
        """Like :meth:`Client.list_types`: pages as they arrive, resumed after a restart."""
        at = _Listing(limit)
        retry = self._retry()
        while True:
            req = self._list_request(kind, name, match, spec, page_size, at.start, at.remaining())
            try:
                async for page in self.stub.ListTypes(req, timeout=self.timeout):
                    retry.progress()
                    for t in page.types:
                        yield t
                    if at.done_after(page):
                        return
                return
            except grpc.aio.AioRpcError as exc:
                d = retry.delay(exc)
                if d is None:
                    raise
                self.retries += 1
                await _asleep(d)

    async def read_raw(self, offset: int, length: int, *, spec: str = "", chunk_size: int = 0) -> bytes:
        req = pb.ReadRawRequest(spec=spec, offset=offset, length=length, chunk_size=chunk_size)

        async def read(r: Any, timeout: float) -> bytes:
            return b"".join([c.data async for c in self.stub.ReadRaw(r, timeout=timeout)])

        data: bytes = await self._call(read, req)
        return data

    async def resolve_core(
        self, obj: bytes, *, spec: str = "", specs: list[str] | None = None,
        want_patched: bool = False, include_modules: bool = False,
    ) -> pb.ResolveCoreResponse:
        req = pb.ResolveCoreRequest(object=obj, spec=spec, specs=specs or [], want_patched=want_patched,
                                    include_modules=include_modules)
        r: pb.ResolveCoreResponse = await self._call(self.stub.ResolveCore, req)
        return r

    async def minimize_btf(self, objects: list[bytes], *, spec: str = "") -> pb.MinimizeBtfResponse:
        r: pb.MinimizeBtfResponse = await self._call(
            self.stub.MinimizeBtf, pb.MinimizeBtfRequest(spec=spec, objects=objects))
        return r

    async def health(self) -> bool:
        """True when the daemon reports SERVING."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.channel)
        r = await self._call(stub.Check, health_pb2.HealthCheckRequest())
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
