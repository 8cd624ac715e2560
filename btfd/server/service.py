"""The gRPC servicer: thin. Each method turns a request into library calls; errors become
status codes in :mod:`btfd.server.errors` only."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from .. import __version__
from ..btf import BTFNotFoundError, BTFRangeError, Kind, Spec
from ..btf import query as Q
from ..convert import core_record_to_pb, type_to_pb
from ..v1 import btfd_pb2 as pb
from ..v1 import btfd_pb2_grpc as pb_grpc
from .errors import RequestError, quote
from .limits import Limits, Workers, limit_error
from .metrics import Metrics
from .registry import Registry, SpecEntry
from .results import Results, answer_key
from .rpc import AnswerCache, add_to_server, stream, unary

__all__ = ["BtfService", "add_to_server", "MAX_CHUNK", "MAX_PAGE", "MAX_REFERENCED"]

log = logging.getLogger("btfd.service")

MAX_CHUNK = 256 * 1024
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
MAX_REFERENCED = Q.MAX_REFERENCED  # types a LookupType with depth may return besides the matches

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


class BtfService(pb_grpc.BtfServicer):
    """btfd.v1.Btf over a :class:`Registry`: requests become :mod:`btfd.btf.query` and
    :mod:`btfd.core` calls run by :class:`Workers` (budgets, lanes), entries are held with
    :meth:`Registry.hold`."""

    def __init__(self, specs: Registry, metrics: Metrics, *, fd_socket: str,
                 cache_bytes: int = 512 << 10, results: Results | None = None,
                 limits: Limits | None = None, workers: Workers | None = None) -> None:
        self.specs = specs
        self.results = results if results is not None else Results(metrics)
        self.metrics = metrics
        self.fd_socket = fd_socket
        self.limits = limits or Limits()
        self.workers = workers or Workers(2, self.limits)
        self.c_decl = _c_formatter()
        # Specs never change while served: a LookupType answer is reused as long as the spec
        # is there (its generation is in the key).
        self._cache = AnswerCache(cache_bytes)
        self._render_slot = asyncio.Semaphore(1)
        self.inflight = 0
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        metrics.cache_bytes.set_function(lambda: self._cache.size)
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

    def _budget(self, context: Any) -> Q.Budget:
        try:
            left = context.time_remaining() if context is not None else None
        except Exception:  # noqa: BLE001 - a context without deadlines
            left = None
        return self.workers.budget(left)

    @contextlib.asynccontextmanager
    async def _hold(self, names: list[str], budget: Q.Budget, optional: list[str] = ()) -> Any:  # type: ignore[assignment]
        """Hold the named entries (and those of ``optional`` still served) for a block, with
        :meth:`Registry.hold`; entered in a worker (opening a lazy module parses it)."""
        stack = contextlib.ExitStack()

        def enter() -> list[SpecEntry]:
            held = list(stack.enter_context(self.specs.hold(names)))  # a copy: hold() releases its list
            for n in optional:
                with contextlib.suppress(BTFNotFoundError):  # unloaded since
                    held += stack.enter_context(self.specs.hold([n]))
            return held

        try:
            held = await self.workers.run(enter, budget)
        except BaseException:
            stack.close()
            raise
        with stack:
            yield held

    def _check_glob(self, pattern: str) -> None:
        # Matching costs (name length) x (pattern length) / 64 (btfd.btf.query.Glob).
        if len(pattern) > self.limits.max_pattern:
            raise limit_error(f"a glob of {len(pattern)} characters", self.limits.max_pattern,
                              "--max-pattern-length", "INVALID_ARGUMENT")

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
            self._hit.inc()
            return hit
        self._miss.inc()
        key = request.WhichOneof("key")
        if key is None:
            raise RequestError("LookupType needs a name or an id")
        kind = _kind(request.kind)
        by_name = request.all_specs and key == "name"
        names = ["vmlinux"] if by_name else [request.spec]
        modules = [m.name for m in self.specs.module_entries()] if by_name else []
        budget = self._budget(context)
        # Uncached lookups can be long (a name index to build, depth 64 over task_struct):
        # in a worker, so the event loop keeps serving other calls and health checks.
        async with self._hold(names, budget, modules) as held:
            out = await self.workers.run(lambda: self._lookup(request, kind, held, budget)
                                         .SerializeToString(), budget, heavy=request.depth > 0)
        self._cache.put(ck, out)
        return out

    def _generation(self, name: str) -> int:
        e = self.specs.entry_or_none(name)
        return e.generation if e is not None else 0

    def _lookup(self, request: pb.LookupTypeRequest, kind: Kind | None, entries: list[SpecEntry],
                budget: Q.Budget) -> pb.LookupTypeResponse:
        found: list[tuple[SpecEntry, int]] = []
        if request.WhichOneof("key") == "id":
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
        by_spec = {id(e.spec): e for e, _ in found}
        out = pb.LookupTypeResponse()
        for e, t in found:
            assert e.spec is not None
            out.types.append(type_to_pb(e.spec, e.spec.type(t), e.name, self.c_decl))
        starts = [(e.spec, t) for e, t in found if e.spec is not None]
        depth = min(request.depth, self.limits.max_depth)
        for spec, r in Q.walk_refs(starts, depth, most=MAX_REFERENCED, budget=budget):
            out.referenced.append(type_to_pb(spec, spec.type(r), by_spec[id(spec)].name, self.c_decl))
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
        if match == pb.NAME_MATCH_GLOB:
            self._check_glob(pat)
        budget = self._budget(context)
        async with self._hold([request.spec], budget) as [e]:
            assert e.spec is not None
            it = Q.matching(e.spec, pat, match, kind=kind, start_id=request.start_id, budget=budget)
            look: list[Q.Summary] = []

            def next_page(n: int) -> tuple[list[pb.TypeSummary], bool]:
                # Up to n matches, and whether another follows (peeked, kept for next time).
                out = look[:]
                look.clear()
                for ts in it:
                    if len(out) >= n:
                        look.append(ts)
                        break
                    out.append(ts)
                return [pb.TypeSummary(id=s.id, kind=s.kind, name=s.name, size=s.size)  # type: ignore[arg-type]
                        for s in out], bool(look)

            # next_start_id is 0 exactly when nothing follows (the last page, full or not, or
            # the limit reached the end).
            sent = 0
            while True:
                n = min(page, limit - sent) if limit else page
                types, more = await self.workers.run(functools.partial(next_page, n), budget, heavy=True)
                sent += len(types)
                batch = pb.ListTypesResponse(types=types)
                if more:
                    batch.next_start_id = types[-1].id + 1
                yield batch
                if not more or (limit and sent >= limit):
                    return

    @stream("ReadRaw")
    async def ReadRaw(self, request: pb.ReadRawRequest, context: Any) -> AsyncIterator[pb.ReadRawResponse]:
        with self.specs.hold([request.spec]) as [e]:
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

    def _spec_names(self, request: pb.ResolveCoreRequest) -> list[str]:
        """The specs a ResolveCore names, each once, in order, at most --max-specs-per-request,
        each served (NOT_FOUND before any work otherwise)."""
        names = list(dict.fromkeys(request.specs)) or [request.spec or "vmlinux"]
        if len(names) > self.limits.max_specs:
            raise limit_error(f"{len(names)} distinct specs", self.limits.max_specs,
                              "--max-specs-per-request")
        for n in names:
            if self.specs.entry_or_none(n or "vmlinux") is None:
                raise BTFNotFoundError(f"no spec named {quote(n)}; served: {', '.join(self.specs.names())}")
        return names

    @unary("ResolveCore")
    async def ResolveCore(self, request: pb.ResolveCoreRequest, context: Any) -> bytes:
        """Answers a serialized ResolveCoreResponse, computed once per input (results.py)."""
        from ..core import ByteOrderError, RecordInput, parse_object, resolve_object, resolve_records

        which = request.WhichOneof("input")
        if which is None:
            raise RequestError("ResolveCore needs an object or records")
        names = self._spec_names(request)
        with_mods = request.include_modules and "vmlinux" in [n or "vmlinux" for n in names]
        modules = [m.name for m in self.specs.module_entries()] if with_mods else []
        budget = self._budget(context)

        def work(held: list[SpecEntry]) -> pb.ResolveCoreResponse:
            mods = held[len(names):]
            targets = [self._core_target(e, mods if e.name == "vmlinux" else []) for e in held[: len(names)]]
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
                budget.check()
                try:
                    res = one(t)
                except ByteOrderError as exc:
                    if len(names) == 1:
                        raise
                    # A fleet's view: this kernel cannot take the object, the others can.
                    out.results.append(pb.CoreResult(spec=n, refused=str(exc)))
                    continue
                cr = pb.CoreResult(spec=n, errors=res.errors)
                cr.relocations.extend(core_record_to_pb(r) for r in res.records)
                for (sec, prog), insns in res.programs.items():
                    cr.programs.append(pb.PatchedProgram(sec=sec, prog=prog, insns=insns))
                out.results.append(cr)
            return out

        key = answer_key("ResolveCore", [request.object if which == "object" else
                                         request.records.SerializeToString(deterministic=True)],
                         self._generations(names, bool(with_mods)),
                         (tuple(names), which, request.want_patched))
        hit = self.results.cached_answer(key)
        if hit is not None:
            return hit
        async with self._hold(names, budget, modules) as held:
            return await self.workers.run(
                lambda: self.results.answer(key, lambda: work(held).SerializeToString()), budget, heavy=True)

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
        if len(request.objects) > self.limits.max_objects:
            raise limit_error(f"{len(request.objects)} objects", self.limits.max_objects,
                              "--max-objects-per-request")
        key = answer_key("MinimizeBtf", list(request.objects), self._generations([request.spec], False), ())
        hit = self.results.cached_answer(key)
        if hit is not None:
            return hit
        budget = self._budget(context)
        async with self._hold([request.spec or "vmlinux"], budget) as [e]:

            def work() -> bytes:
                m = minimize(list(request.objects), self._core_target(e, []))
                return pb.MinimizeBtfResponse(btf=m.btf, type_count=len(m.types)).SerializeToString()

            return await self.workers.run(lambda: self.results.answer(key, work), budget, heavy=True)

    async def c_header(self, name: str, budget: Q.Budget | None = None) -> tuple[int, int]:
        """A fresh read-only fd of spec ``name``'s rendered C header, and its size: kept ones
        at once, else rendered (once per spec: btfd/server/results.py). Also what the fd
        socket's ``+c`` hands out."""
        e = self.specs.entry_or_none(name or "vmlinux")
        got = self.results.cached_c_header_fd(e.name, e.generation) if e is not None else None
        if got is None:
            budget = budget or self.workers.budget(None)
            async with self._render_slot, self._hold([name or "vmlinux"], budget) as [held]:
                # renders take a worker for ~1 s: one at a time, in the heavy lane
                got = await self.workers.run(lambda: self.results.c_header_fd(held), budget, heavy=True)
        return got

    @stream("DumpC")
    async def DumpC(self, request: pb.DumpCRequest, context: Any) -> AsyncIterator[pb.DumpCResponse]:
        """The spec's C header, rendered once and kept (btfd/server/results.py)."""
        # At least 64 KiB a message: a 1-byte chunk size would make vmlinux.h 2.8M messages.
        chunk = max(min(request.chunk_size or MAX_CHUNK, MAX_CHUNK), 64 << 10)
        fd, size = await self.c_header(request.spec, self._budget(context))
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
