"""Client side of btfd: gRPC calls with deadlines and retries, and the zero-copy fd path.

``clients/python`` (package ``btfd_client``) re-exports this module; ``btfctl`` uses it too.

- :class:`Client` (sync) and :class:`AsyncClient` mirror every RPC. Each call has a deadline;
  ``UNAVAILABLE`` (daemon restarting) is retried with exponential backoff within
  ``retry_budget`` seconds; no other status is retried.
- :func:`open_shared` asks the fd socket for a spec's fd (SCM_RIGHTS), maps it read-only and
  returns a :class:`btfd.btf.Spec` over the mapping: in-process lookups, no per-agent copy.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from .btf import BTFError, Spec
from .paths import default_socket
from .v1 import btfd_pb2 as pb
from .v1 import btfd_pb2_grpc as pb_grpc

__all__ = [
    "Client",
    "AsyncClient",
    "SharedSpec",
    "FdError",
    "open_shared",
    "request_fd",
    "default_socket",
    "RETRYABLE",
]

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})




def _delays(budget: float, first: float = 0.05, cap: float = 1.0) -> Iterator[float]:
    """Exponential backoff with jitter until ``budget`` seconds are spent."""
    spent, d = 0.0, first
    while spent < budget:
        step = min(d, budget - spent) * (0.5 + random.random() / 2)
        spent += step
        yield step
        d = min(d * 2, cap)


class _Base:
    def __init__(self, socket_path: str | None = None, *, timeout: float = 10.0,
                 retry_budget: float = 15.0) -> None:
        self.socket_path = socket_path or default_socket()
        self.timeout = timeout
        self.retry_budget = retry_budget
        self.target = f"unix:{self.socket_path}"


class Client(_Base):
    """Synchronous btfd client. Use as a context manager or call :meth:`close`."""

    def __init__(self, socket_path: str | None = None, *, timeout: float = 10.0,
                 retry_budget: float = 15.0) -> None:
        super().__init__(socket_path, timeout=timeout, retry_budget=retry_budget)
        self.channel = grpc.insecure_channel(self.target)
        self.stub: Any = pb_grpc.BtfStub(self.channel)  # type: ignore[no-untyped-call]

    def _call(self, fn: Callable[..., Any], request: Any) -> Any:
        delays = _delays(self.retry_budget)
        while True:
            try:
                return fn(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                d = next(delays, None)
                if d is None:
                    raise
                time.sleep(d)

    def get_info(self) -> pb.GetInfoResponse:
        r: pb.GetInfoResponse = self._call(self.stub.GetInfo, pb.GetInfoRequest())
        return r

    def lookup_type(self, name: str | None = None, *, id: int | None = None, kind: int = 0,
                    spec: str = "", depth: int = 0, all_specs: bool = False) -> pb.LookupTypeResponse:
        """Types by ``name`` (optionally of ``kind``, a ``btfd.btf.Kind``) or by ``id``."""
        req = pb.LookupTypeRequest(spec=spec, kind=int(kind), depth=depth, all_specs=all_specs)  # type: ignore[arg-type,unused-ignore]
        if id is not None:
            req.id = id
        elif name is not None:
            req.name = name
        r: pb.LookupTypeResponse = self._call(self.stub.LookupType, req)
        return r

    def list_types(self, *, kind: int = 0, name: str = "", match: int = 0, spec: str = "",
                   page_size: int = 0, limit: int = 0) -> Iterator[pb.TypeSummary]:
        """Every matching type; resumes after UNAVAILABLE from the last page received."""
        start = 0
        sent = 0
        delays = _delays(self.retry_budget)
        while True:
            req = pb.ListTypesRequest(spec=spec, kind=kind, name=name, match=match,  # type: ignore[arg-type,unused-ignore]
                                      page_size=page_size, start_id=start,
                                      limit=(limit - sent) if limit else 0)
            try:
                for page in self.stub.ListTypes(req, timeout=self.timeout):
                    for t in page.types:
                        sent += 1
                        yield t
                    if not page.next_start_id:
                        return
                    start = page.next_start_id
                return
            except grpc.RpcError as exc:
                d = next(delays, None)
                if exc.code() not in RETRYABLE or d is None:
                    raise
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
    """asyncio btfd client (grpc.aio), same methods as :class:`Client` but awaitable."""

    def __init__(self, socket_path: str | None = None, *, timeout: float = 10.0,
                 retry_budget: float = 15.0) -> None:
        super().__init__(socket_path, timeout=timeout, retry_budget=retry_budget)
        self.channel = grpc.aio.insecure_channel(self.target)
        self.stub: Any = pb_grpc.BtfStub(self.channel)  # type: ignore[no-untyped-call]

    async def _call(self, fn: Callable[..., Any], request: Any) -> Any:
        delays = _delays(self.retry_budget)
        while True:
            try:
                return await fn(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as exc:
                d = next(delays, None)
                if exc.code() not in RETRYABLE or d is None:
                    raise
                await asyncio.sleep(d)

    async def get_info(self) -> pb.GetInfoResponse:
        r: pb.GetInfoResponse = await self._call(self.stub.GetInfo, pb.GetInfoRequest())
        return r

    async def lookup_type(self, name: str | None = None, *, id: int | None = None, kind: int = 0,
                          spec: str = "", depth: int = 0, all_specs: bool = False) -> pb.LookupTypeResponse:
        req = pb.LookupTypeRequest(spec=spec, kind=int(kind), depth=depth, all_specs=all_specs)  # type: ignore[arg-type,unused-ignore]
        if id is not None:
            req.id = id
        elif name is not None:
            req.name = name
        r: pb.LookupTypeResponse = await self._call(self.stub.LookupType, req)
        return r

    async def list_types(self, *, kind: int = 0, name: str = "", match: int = 0, spec: str = "",
                         page_size: int = 0, limit: int = 0) -> AsyncIterator[pb.TypeSummary]:
        req = pb.ListTypesRequest(spec=spec, kind=kind, name=name, match=match,  # type: ignore[arg-type,unused-ignore]
                                  page_size=page_size, limit=limit)
        async for page in self.stub.ListTypes(req, timeout=self.timeout):
            for t in page.types:
                yield t

    async def read_raw(self, offset: int, length: int, *, spec: str = "", chunk_size: int = 0) -> bytes:
        req = pb.ReadRawRequest(spec=spec, offset=offset, length=length, chunk_size=chunk_size)
        return b"".join([c.data async for c in self.stub.ReadRaw(req, timeout=self.timeout)])

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

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ---------------------------------------------------------------------------- fd path


class FdError(BTFError):
    """The fd socket answered with an error (``code`` is the status name)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.status = code


def request_fd(fd_socket: str, spec: str = "vmlinux", *, timeout: float = 10.0) -> tuple[dict[str, Any], int]:
    """One request on the fd socket: ``(answer, fd)``. Raises :class:`FdError` on an error
    answer, OSError when the socket cannot be reached."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(fd_socket)
        s.sendall(spec.encode() + b"\n")
        buf = b""
        fds: list[int] = []
        while not buf.endswith(b"\n"):
            msg, got, _flags, _addr = socket.recv_fds(s, 4096, 1)
            fds.extend(got)
            if not msg:
                break
            buf += msg
    try:
        answer = json.loads(buf)
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise FdError(f"malformed answer from {fd_socket}: {buf[:200]!r}", "INTERNAL") from None
    if "error" in answer:
        for fd in fds:
            os.close(fd)
        raise FdError(answer["error"], answer.get("code", "UNKNOWN"))
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise FdError(f"expected exactly one fd with the answer, got {len(fds)}", "INTERNAL")
    return answer, fds[0]


@dataclass
class SharedSpec:
    """A spec over a mapping of an fd received from btfd. ``spec`` is the usable spec;
    :meth:`close` releases spec, mappings and fds (base included)."""

    spec: Spec
    answer: dict[str, Any]
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        self.spec.close()
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Spec:
        return self.spec

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_shared(spec: str = "vmlinux", *, fd_socket: str | None = None,
                socket_path: str | None = None, timeout: float = 10.0) -> SharedSpec:
    """Receive ``spec``'s fd from btfd, map it ``PROT_READ``/``MAP_PRIVATE`` and parse it in
    place. Split specs (``module/...``) fetch and map their base too."""
    from .source import map_fd

    path = fd_socket or (socket_path or default_socket()) + ".fd"
    closers: list[Callable[[], None]] = []
    try:
        base_spec: Spec | None = None
        answer, fd = request_fd(path, spec, timeout=timeout)
        closers.append(lambda: os.close(fd))
        if answer.get("base"):
            base = open_shared(answer["base"], fd_socket=path, timeout=timeout)
            base_spec = base.spec
            closers.append(base.close)
        m = map_fd(fd, answer["size"])
        closers.append(m.close)
        s = Spec(m, base=base_spec, name=answer["spec"])
    except BaseException:
        for c in reversed(closers):
            c()
        raise
    return SharedSpec(s, answer, closers)
