"""The gRPC servicer: thin. Each method turns a request into library calls; errors become
status codes in :mod:`btfd.server.errors` only."""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc

from .. import __version__
from ..btf import BTFNotFoundError, BTFRangeError, Kind, Spec
from ..v1 import btfd_pb2 as pb
from ..v1 import btfd_pb2_grpc as pb_grpc
from .convert import referenced_ids, type_to_pb
from .errors import RequestError, describe, quote
from .metrics import Metrics
from .registry import Registry, SpecEntry
from .results import Results, answer_key

__all__ = ["BtfService", "add_to_server", "MAX_CHUNK", "MAX_PAGE", "MAX_REFERENCED"]

log = logging.getLogger("btfd.service")

MAX_CHUNK = 256 * 1024
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
MAX_REFERENCED = 10_000  # types a LookupType with depth may return besides the matches
_SIZED = frozenset({Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC, Kind.FLOAT})

R = TypeVar("R")


def _c_formatter() -> Callable[[Spec, int], str] | None:
    try:
        from ..btf.format_c import format_type_c  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # pragma: no cover - the formatter ships with the library
        return None
    f: Callable[[Spec, int], str] = format_type_c
    return f


def _kind(value: int) -> Kind | None:
    if value == 0:
        return None
    try:
        return Kind(value)
    except ValueError:
        raise RequestError(f"unknown kind {value}") from None


class _Accounted:
    """Counts one call in btfd_requests_total/btfd_request_duration_seconds exactly once,
    whatever ends it: success, an error (aborted with the code :func:`describe` maps it to),
    a cancellation or an expired deadline (CancelledError, or GeneratorExit when a stream is
    dropped)."""

    __slots__ = ("svc", "method", "context", "t0")

    def __init__(self, svc: BtfService, method: str, context: Any) -> None:
        self.svc, self.method, self.context = svc, method, context
        self.t0 = time.perf_counter()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
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
        async def wrapper(self: BtfService, request: Any, context: grpc.aio.ServicerContext) -> R:
            async with _Accounted(self, method, context):
                return await fn(self, request, context)
            raise AssertionError("unreachable")  # pragma: no cover - __aexit__ never swallows

        return wrapper

    return deco


def stream(method: str) -> Callable[[Callable[..., AsyncIterator[R]]], Callable[..., AsyncIterator[R]]]:
    def deco(fn: Callable[..., AsyncIterator[R]]) -> Callable[..., AsyncIterator[R]]:
        @functools.wraps(fn)
        async def wrapper(self: BtfService, request: Any,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[R]:
            async with _Accounted(self, method, context):
                async for item in fn(self, request, context):
                    yield item

        return wrapper

    return deco


def cache_entry_bytes(key: tuple[Any, ...], answer: bytes) -> int:
    """What one LookupType cache entry holds: the answer, its key (a tuple, the strings in
    it), and the (answer, size) pair with the ordered dict's slot and link: 220 bytes on
    CPython 3.11, measured with tracemalloc (tests/server/test_lookup_cache.py). Answers
    average ~350 bytes, so leaving the overhead out would undercount by 40 %."""
    return sys.getsizeof(answer) + sys.getsizeof(key) + sum(sys.getsizeof(k) for k in key
                                                            if isinstance(k, str)) + 220


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


def add_to_server(service: BtfService, server: Any) -> None:
    """The generated registration, except that LookupType may answer serialized bytes (its
    cache's entries) that go out as they are."""
    got = _Handlers()
    pb_grpc.add_BtfServicer_to_server(service, got)  # type: ignore[no-untyped-call]
    for m in ("LookupType", "ResolveCore", "MinimizeBtf"):  # (the last two: btfd/server/results.py)
        h = got.handlers[m]
        got.handlers[m] = h._replace(response_serializer=_passing_bytes(h.response_serializer))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(got.service, got.handlers),))
    server.add_registered_method_handlers(got.service, got.handlers)


class BtfService(pb_grpc.BtfServicer):
    """btfd.v1.Btf over a :class:`Registry`."""

    def __init__(self, specs: Registry, metrics: Metrics, *, fd_socket: str,
                 cache_bytes: int = 512 << 10, results: Results | None = None) -> None:
        self.specs = specs
        self.results = results if results is not None else Results(metrics)
        self._render_slot = asyncio.Semaphore(1)
        self.metrics = metrics
        self.fd_socket = fd_socket
        self.c_decl = _c_formatter()
        # Specs never change while served, so a LookupType answer can be reused as long as
        # the spec is there. Bounded by bytes (an LRU), so memory cannot grow with traffic.
        # The answers are kept serialized: a bytes object costs what it is counted at (a
        # message object costs ~6x its ByteSize, and a churning cache of them fragmented the
        # heap by 3 MiB over a 10-minute soak), and a hit is sent without serializing again.
        self._cache: OrderedDict[tuple[Any, ...], tuple[bytes, int]] = OrderedDict()
        self._cache_limit = cache_bytes
        self._cache_size = 0
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        metrics.cache_bytes.set_function(lambda: self._cache_size)
        metrics.cache_entries.set_function(lambda: len(self._cache))
        self._hit = metrics.cache.labels("hit")
        self._miss = metrics.cache.labels("miss")

    # ---------------------------------------------------------------- plumbing

    def _done(self, method: str, code: str, t0: float) -> None:
        # Label children are looked up once (labels() costs more than the lookup it times).
        k = (method, code)
        child = self._children.get(k)
        if child is None:
            child = self._children[k] = (self.metrics.requests.labels(method, code),
                                         self.metrics.duration.labels(method))
        child[0].inc()
        child[1].observe(time.perf_counter() - t0)

    # ---------------------------------------------------------------- RPCs

    @unary("GetInfo")
    async def GetInfo(self, request: pb.GetInfoRequest, context: Any) -> pb.GetInfoResponse:
        out = pb.GetInfoResponse(version=__version__, kernel_release=os.uname().release,
                                 fd_socket=self.fd_socket)
        for e in self.specs.entries():
            out.specs.append(self.spec_info(e))
        return out

    def spec_info(self, e: SpecEntry) -> pb.SpecInfo:
        info = pb.SpecInfo(name=e.name, path=e.path, base=e.base, loaded=e.loaded)
        if e.spec is not None and e.source is not None:
            info.size = e.source.size
            info.type_count = e.spec.count
            info.start_id = e.spec.start_id
            info.byte_order = e.spec.byte_order
            info.mode = e.source.mode
            info.fd_socket = self.fd_socket if e.ro_fd >= 0 else ""
            info.index_bytes.update(e.spec.index_bytes())
            if e.source.mmap_refused:
                info.mmap_refused = True
                info.note = (f"the kernel refused to map {e.path} ({e.source.mmap_refused}): "
                             f"served from a sealed memfd copy")
        return info

    @unary("LookupType")
    async def LookupType(self, request: pb.LookupTypeRequest, context: Any) -> bytes:
        """Answers a serialized LookupTypeResponse (see :func:`add_to_server`)."""
        # An answer depends on the spec asked (a reloaded module is a new entry, with a new
        # generation) or, with all_specs, on the whole set of served specs.
        gen = self.specs.generation if request.all_specs else self._generation(request.spec or "vmlinux")
        ck = (request.spec or "vmlinux", request.WhichOneof("key"), request.name, request.id, request.kind,
              request.depth, request.all_specs, gen)
        hit = self._cache.get(ck)
        if hit is not None:
            self._cache.move_to_end(ck)
            self._hit.inc()
            return hit[0]
        self._miss.inc()
        # Uncached lookups can be long (a name index to build, depth 64 over task_struct):
        # in a thread, so the event loop keeps serving other calls and health checks.
        modules = [m.name for m in self.specs.module_entries()] if request.all_specs else []
        out = await asyncio.to_thread(self._lookup_serialized, request, modules)
        size = cache_entry_bytes(ck, out)
        if size <= self._cache_limit // 8:
            self._cache[ck] = (out, size)
            self._cache_size += size
            while self._cache_size > self._cache_limit:
                _, (_, n) = self._cache.popitem(last=False)
                self._cache_size -= n
        return out

    def _lookup_serialized(self, request: pb.LookupTypeRequest, modules: list[str]) -> bytes:
        return self._lookup_held(request, modules).SerializeToString()

    def _generation(self, name: str) -> int:
        e = self.specs.entry_or_none(name)
        return e.generation if e is not None else 0

    def _lookup_held(self, request: pb.LookupTypeRequest, modules: list[str]) -> pb.LookupTypeResponse:
        """:meth:`_lookup` holding the specs it reads (released when it is done, even if the
        call was cancelled meanwhile)."""
        held: list[SpecEntry] = []
        try:
            if request.all_specs and request.WhichOneof("key") == "name":
                held.append(self.specs.acquire("vmlinux"))
                for m in modules:
                    try:
                        held.append(self.specs.acquire(m))
                    except BTFNotFoundError:  # unloaded since the request came in
                        pass
            else:
                held.append(self.specs.acquire(request.spec))
            return self._lookup(request, held)
        finally:
            for e in held:
                self.specs.release(e)

    def _lookup(self, request: pb.LookupTypeRequest, entries: list[SpecEntry]) -> pb.LookupTypeResponse:
        key = request.WhichOneof("key")
        if key is None:
            raise RequestError("LookupType needs a name or an id")
        kind = _kind(request.kind)
        found: list[tuple[SpecEntry, int]] = []
        if key == "id":
            e = entries[0]
            assert e.spec is not None
            if request.id >= e.spec.next_id:
                raise BTFNotFoundError(f"spec {e.name} has no type id {request.id} "
                                       f"(last is {e.spec.next_id - 1})")
            found.append((e, request.id))
        else:
            if not request.name:
                raise RequestError("empty type name")
            for e in entries:
                assert e.spec is not None
                own_from = e.spec.start_id if request.all_specs and e.base else 0
                found.extend((e, t) for t in e.spec.find_ids(request.name, kind) if t >= own_from)
            if not found:
                what = f"{kind.name.lower()} " if kind is not None else ""
                raise BTFNotFoundError(f"no {what}type named {quote(request.name)} in "
                                       f"{'any spec' if request.all_specs else entries[0].name}")
        out = pb.LookupTypeResponse()
        seen: set[tuple[str, int]] = set()
        frontier: list[tuple[SpecEntry, int]] = []
        for e, t in found:
            assert e.spec is not None
            ty = e.spec.type(t)
            out.types.append(type_to_pb(e.spec, ty, e.name, self.c_decl))
            seen.add((e.name, t))
            frontier.append((e, t))
        for _ in range(min(request.depth, 64)):
            nxt: list[tuple[SpecEntry, int]] = []
            for e, t in frontier:
                assert e.spec is not None
                for r in referenced_ids(e.spec.type(t)):
                    if r and (e.name, r) not in seen and len(out.referenced) < MAX_REFERENCED:
                        seen.add((e.name, r))
                        out.referenced.append(type_to_pb(e.spec, e.spec.type(r), e.name, self.c_decl))
                        nxt.append((e, r))
            frontier = nxt
        return out

    @stream("ListTypes")
    async def ListTypes(
        self, request: pb.ListTypesRequest, context: Any
    ) -> AsyncIterator[pb.ListTypesResponse]:
        kind = _kind(request.kind)
        page = request.page_size or DEFAULT_PAGE
        if page > MAX_PAGE:
            raise RequestError(f"page_size {page} is over the maximum {MAX_PAGE}")
        limit = request.limit or 0
        pat = request.name
        match = request.match
        if match == pb.NAME_MATCH_ANY and pat:
            match = pb.NAME_MATCH_EXACT  # a name without a match mode is an exact name
        if match != pb.NAME_MATCH_ANY and not pat:
            raise RequestError("a name match needs a name pattern")
        if match not in (pb.NAME_MATCH_ANY, pb.NAME_MATCH_EXACT, pb.NAME_MATCH_PREFIX, pb.NAME_MATCH_GLOB):
            raise RequestError(f"unknown name match {match}")
        e = self.specs.acquire(request.spec)
        # Pages are computed in a thread (a filtered walk over every type is too long for the
        # event loop); the entry is released once the stream is over AND no page is running.
        hold = _PageHold(self.specs, e)
        try:
            assert e.spec is not None
            it = _matching(e.spec, kind, match, pat, request.start_id)
            look: list[pb.TypeSummary] = []

            def next_page(n: int) -> tuple[list[pb.TypeSummary], bool]:
                # Up to n matches, and whether another follows (peeked, kept for next time).
                out = look[:]
                look.clear()
                for ts in it:
                    if len(out) >= n:
                        look.append(ts)
                        break
                    out.append(ts)
                return out, bool(look)

            # next_start_id is 0 exactly when nothing follows (the last page, full or not, or
            # the limit reached the end).
            sent = 0
            while True:
                n = min(page, limit - sent) if limit else page
                types, more = await hold.run(next_page, n)
                sent += len(types)
                batch = pb.ListTypesResponse(types=types)
                if more:
                    batch.next_start_id = types[-1].id + 1
                yield batch
                if not more or (limit and sent >= limit):
                    return
        finally:
            hold.stream_done()

    @stream("ReadRaw")
    async def ReadRaw(self, request: pb.ReadRawRequest, context: Any) -> AsyncIterator[pb.ReadRawResponse]:
        e = self.specs.acquire(request.spec)
        try:
            src = e.source
            assert src is not None
            end = request.offset + request.length
            if request.offset > src.size or end > src.size:
                raise BTFRangeError(f"range [{request.offset}, {end}) is outside {e.name}'s "
                                    f"{src.size} bytes")
            chunk = min(request.chunk_size or MAX_CHUNK, MAX_CHUNK)
            off = request.offset
            while off < end:
                n = min(chunk, end - off)
                yield pb.ReadRawResponse(offset=off, data=bytes(src.data[off : off + n]))
                off += n
                await asyncio.sleep(0)
        finally:
            self.specs.release(e)

    def _core_target(self, e: SpecEntry, modules: list[SpecEntry]) -> Any:
        """The CO-RE target of a held entry (with module BTF: ``modules``, also held)."""
        from ..core import CoreTarget

        assert e.spec is not None
        if modules:
            return CoreTarget(e.spec, modules=[m.spec for m in modules if m.spec is not None])
        with e.lock:
            if e.core_target is None:
                e.core_target = CoreTarget(e.spec)
            return e.core_target

    def _hold_targets(self, names: list[str], include_modules: bool) -> tuple[list[SpecEntry], list[Any]]:
        """Acquire the named specs (and, with include_modules, every module) and build their
        targets. The caller releases the returned entries."""
        held: list[SpecEntry] = []
        try:
            mods: list[SpecEntry] = []
            if include_modules and "vmlinux" in [n or "vmlinux" for n in names]:
                for m in [x.name for x in self.specs.module_entries()]:
                    try:
                        mods.append(self.specs.acquire(m))
                    except BTFNotFoundError:
                        pass
                    else:
                        held.append(mods[-1])
            targets = []
            for n in names:
                e = self.specs.acquire(n)
                held.append(e)
                targets.append(self._core_target(e, mods if e.name == "vmlinux" else []))
            return held, targets
        except BaseException:
            for e in held:
                self.specs.release(e)
            raise

    @unary("ResolveCore")
    async def ResolveCore(self, request: pb.ResolveCoreRequest, context: Any) -> bytes:
        """Answers a serialized ResolveCoreResponse, computed once per input (results.py)."""
        from ..core import ByteOrderError, RecordInput, parse_object, resolve_object, resolve_records

        names = list(request.specs) or [request.spec or "vmlinux"]
        which = request.WhichOneof("input")
        if which is None:
            raise RequestError("ResolveCore needs an object or records")

        def work() -> pb.ResolveCoreResponse:
            held, targets = self._hold_targets(names, request.include_modules)
            try:
                out = pb.ResolveCoreResponse()
                if which == "object":
                    obj = parse_object(request.object)

                    def one(t: Any) -> Any:
                        return resolve_object(obj, t, want_patched=request.want_patched)
                else:
                    recs = [RecordInput(r.sec, r.insn_off, r.type_id, r.access, r.kind)
                            for r in request.records.records]

                    def one(t: Any) -> Any:
                        return resolve_records(request.records.local_btf, recs, t)
                for n, t in zip(names, targets, strict=True):
                    try:
                        res = one(t)
                    except ByteOrderError as exc:
                        if len(names) == 1:
                            raise
                        # A fleet's view: this kernel cannot take the object, the others can.
                        out.results.append(pb.CoreResult(spec=n, refused=str(exc)))
                        continue
                    cr = pb.CoreResult(spec=n, errors=res.errors)
                    for r in res.records:
                        cr.relocations.append(core_record_to_pb(r))
                    for (sec, prog), insns in res.programs.items():
                        cr.programs.append(pb.PatchedProgram(sec=sec, prog=prog, insns=insns))
                    out.results.append(cr)
                return out
            finally:
                for e in held:
                    self.specs.release(e)

        key = answer_key("ResolveCore", [request.object if which == "object" else
                                         request.records.SerializeToString(deterministic=True)],
                         self._generations(names, request.include_modules),
                         (tuple(names), which, request.want_patched))
        hit = self.results.cached_answer(key)
        if hit is not None:
            return hit
        return await asyncio.to_thread(self.results.answer, key, lambda: work().SerializeToString())

    def _generations(self, names: list[str], all_modules: bool) -> tuple[int, ...]:
        """Identity of the specs an answer is computed against (with every module: also the set
        of modules served). Read before the specs are held: a spec replaced meanwhile only files
        the new answer under the old identity, which is never asked for again."""
        return tuple(self._generation(n or "vmlinux") for n in names) + (
            (self.specs.generation,) if all_modules else ())

    @unary("MinimizeBtf")
    async def MinimizeBtf(self, request: pb.MinimizeBtfRequest, context: Any) -> bytes:
        """Answers a serialized MinimizeBtfResponse, computed once per input (results.py)."""
        from ..core import minimize

        if not request.objects:
            raise RequestError("MinimizeBtf needs at least one object")

        def work() -> pb.MinimizeBtfResponse:
            held, [target] = self._hold_targets([request.spec or "vmlinux"], False)
            try:
                m = minimize(list(request.objects), target)
                return pb.MinimizeBtfResponse(btf=m.btf, type_count=len(m.types))
            finally:
                for e in held:
                    self.specs.release(e)

        key = answer_key("MinimizeBtf", list(request.objects), self._generations([request.spec], False), ())
        hit = self.results.cached_answer(key)
        if hit is not None:
            return hit
        return await asyncio.to_thread(self.results.answer, key, lambda: work().SerializeToString())

    @stream("DumpC")
    async def DumpC(self, request: pb.DumpCRequest, context: Any) -> AsyncIterator[pb.DumpCResponse]:
        """The spec's C header, rendered once and kept (btfd/server/results.py)."""
        # At least 64 KiB a message: a 1-byte chunk size would make vmlinux.h 2.8M messages.
        chunk = max(min(request.chunk_size or MAX_CHUNK, MAX_CHUNK), 64 << 10)
        e = self.specs.entry_or_none(request.spec or "vmlinux")
        got = self.results.cached_c_header_fd(e.name, e.generation) if e is not None else None
        if got is None:
            async with self._render_slot:  # renders take a worker for ~1 s: one at a time
                got = await asyncio.to_thread(self._c_header_fd, request.spec)
        fd, size = got
        try:
            off = 0
            while True:
                data = os.pread(fd, min(chunk, size - off), off)
                yield pb.DumpCResponse(offset=off, data=data, total_size=size)
                off += len(data)
                if off >= size or not data:
                    return
                await asyncio.sleep(0)
        finally:
            os.close(fd)

    def _c_header_fd(self, name: str) -> tuple[int, int]:
        e = self.specs.acquire(name)
        try:
            return self.results.c_header_fd(e)
        finally:
            self.specs.release(e)


class _PageHold:
    """A held registry entry shared by a stream and the page threads it starts: released by
    whichever finishes last (a cancelled stream must not free a spec a page still reads)."""

    __slots__ = ("specs", "entry", "lock", "busy", "done")

    def __init__(self, specs: Registry, entry: SpecEntry) -> None:
        self.specs, self.entry = specs, entry
        self.lock = threading.Lock()
        self.busy = self.done = False

    async def run(self, fn: Callable[[int], R], arg: int) -> R:
        with self.lock:
            self.busy = True  # before the thread starts: a cancellation meanwhile must wait

        def work() -> R:
            try:
                return fn(arg)
            finally:
                with self.lock:
                    self.busy = False
                    release = self.done
                if release:
                    self.specs.release(self.entry)

        return await asyncio.to_thread(work)

    def stream_done(self) -> None:
        with self.lock:
            self.done = True
            release = not self.busy
        if release:
            self.specs.release(self.entry)


def _string_sections(spec: Spec) -> Iterator[tuple[Any, int, int, int]]:
    """(buffer, start, end, first string offset) of a spec's string section and its bases'."""
    chain = []
    s: Spec | None = spec
    while s is not None:
        chain.append(s)
        s = s.base
    base_off = 0
    for x in reversed(chain):  # the base's strings come first in the offset space
        h = x.header
        yield x.data, h.strs_start, h.strs_end, base_off
        base_off += h.strs_end - h.strs_start


def prefix_names(spec: Spec, prefix: bytes, most: int) -> set[bytes] | None:
    """Every string a name can be that starts with ``prefix`` (no NUL in it): from each place
    the prefix occurs in the string sections, found by the buffer's own (C) search, to the
    next NUL. Any place counts, not only starts of strings: a name_off may point into a
    string. None when there are more than ``most`` (too many to look up one by one)."""
    names: set[bytes] = set()
    for data, ss, se, _ in _string_sections(spec):
        p = data.find(prefix, ss, se)
        while p >= 0:
            e = data.find(b"\0", p, se)
            names.add(bytes(data[p : e if e >= 0 else se]))
            if len(names) > most:
                return None
            p = data.find(prefix, p + 1, se)
    return names


def name_starts_with(spec: Spec, prefix: bytes) -> Callable[[int], bool]:
    """A test of a name_off: does the string there start with ``prefix``? Compared in place
    (the buffer's own search bounded to the prefix's length), nothing decoded or collected."""
    sections = list(_string_sections(spec))
    n = len(prefix)

    def test(name_off: int) -> bool:
        for data, ss, se, off0 in reversed(sections):  # own strings last in the offset space
            if name_off >= off0:
                at = ss + name_off - off0
                return at + n <= se and bool(data.find(prefix, at, at + n) == at)
        return False

    return test


def _ids_by_prefix(spec: Spec, prefix: bytes, kind: Kind | None, lo: int) -> list[int] | None:
    """Own ids >= lo of the types whose name starts with ``prefix``, through the name index
    (every string the prefix starts, found at C speed, looked up by name); None when that
    would take longer than walking every record (a short, common prefix)."""
    if b"\0" in prefix:
        return []  # no name has a NUL in it
    names = prefix_names(spec, prefix, most=max(1024, spec.count // 16))
    if names is None:
        return None
    ids: list[int] = []
    for n in names:
        try:
            name = n.decode("utf-8")
        except UnicodeDecodeError:
            return None  # the walk compares names as the listing shows them
        ids.extend(t for t in spec.find_ids(name, kind) if t >= lo)
    ids.sort()
    return ids


def _literal_prefix(glob: str) -> str:
    """The part of a glob before its first wildcard (``[``, ``*``, ``?``)."""
    for i, c in enumerate(glob):
        if c in "*?[":
            return glob[:i]
    return glob


def _matching(spec: Spec, kind: Kind | None, match: int, pat: str,
              start_id: int) -> Iterator[pb.TypeSummary]:
    """Summaries of the spec's own types from ``start_id`` on that match, in id order.
    EXACT uses the name index; PREFIX (and a glob's literal prefix) finds the strings that
    can match in the string sections and looks them up in the name index, or, for a short
    common prefix, walks the records testing each one's name in place (only matches are
    decoded). A glob without a literal prefix walks them all."""
    k: Any
    if match == pb.NAME_MATCH_EXACT:
        lo = max(start_id, spec.start_id)
        for t in spec.find_ids(pat, kind):
            if t >= lo:
                name_off, info, st = spec.raw(t)
                k = (info >> 24) & 0x7F
                yield pb.TypeSummary(id=t, kind=k, name=pat, size=st if k in _SIZED else 0)
        return
    want: Callable[[str], Any] | None = None
    lit = pat if match == pb.NAME_MATCH_PREFIX else ""
    if match == pb.NAME_MATCH_GLOB:
        want = re.compile(fnmatch.translate(pat), re.S).match
        lit = _literal_prefix(pat)
    starts: Callable[[int], bool] | None = None
    if lit:
        ids = _ids_by_prefix(spec, lit.encode(), kind, max(start_id, spec.start_id))
        if ids is not None:
            for t in ids:
                name_off, info, st = spec.raw(t)
                name = spec.string(name_off)
                if want is not None and not want(name):
                    continue
                k = (info >> 24) & 0x7F
                yield pb.TypeSummary(id=t, kind=k, name=name, size=st if k in _SIZED else 0)
            return
        starts = name_starts_with(spec, lit.encode())
    for tid, name_off, info, st in spec.iter_raw(start_id or None):
        k = (info >> 24) & 0x7F
        if kind is not None and k != kind:
            continue
        if starts is not None and not starts(name_off):
            continue
        name = spec.string(name_off) if name_off else ""
        if want is not None and not want(name):
            continue
        yield pb.TypeSummary(id=tid, kind=k, name=name, size=st if k in _SIZED else 0)


def core_record_to_pb(r: Any) -> pb.CoreRelocation:
    """A :class:`btfd.core.CoreRecord` as its protobuf message."""
    ms = r.mem_size or {}
    return pb.CoreRelocation(
        sec=r.sec, prog=r.prog, insn=r.insn, sec_insn=r.sec_insn, kind=r.kind, type_id=r.type_id,
        type_name=r.type_name, access=r.access, status=r.status,
        new_val=(r.new_val or 0) & 0xFFFFFFFFFFFFFFFF,
        orig_val=(r.orig_val or 0) & 0xFFFFFFFFFFFFFFFF,
        mem_size_from=ms.get("from", 0), mem_size_to=ms.get("to", 0),
        target_type_id=r.target_type_id or 0, target_access=r.target_access or "",
        error=r.error or "",
    )

