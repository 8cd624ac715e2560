"""Whole-spec results computed once per node, and answers computed once per input.

- **C headers** (``vmlinux.h``): a spec's C dump (:func:`btfd.btf.format_c.dump_c`, bpftool's
  ``format c``) is rendered on first request (or at start, ``--prerender-c NAME``; in the daemon
  by a short-lived child process, :func:`child_renderer`), kept in a sealed memfd (shared
  memory, not the daemon's heap) and handed out as a fresh read-only fd
  (:meth:`Results.c_header_fd`, for the fd socket) or streamed (``DumpC``). Byte-budgeted
  (``--c-cache-bytes``): least recently used headers are dropped first; an fd already handed out
  keeps its header alive for whoever holds it.
- **Answers** (``ResolveCore``, ``MinimizeBtf``): the serialized response, keyed by a hash of
  the request's input bytes, the identity of every spec it was computed against (entry
  generations: a reloaded module is a new entry, so a stale answer is never served) and the
  options that change it. Byte-budgeted (``--result-cache-bytes``), least recently used out.

A render or computation for a key runs once: concurrent requests for the same key wait for
it instead of repeating it. Counted in ``btfd_result_cache_*`` metrics by ``cache``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..btf import BTFError, BTFFormatError, BTFNotFoundError, BTFUnsupportedError
from ..source import sealed_memfd
from .malloc import trimmer

if TYPE_CHECKING:
    from .metrics import Metrics
    from .registry import SpecEntry

__all__ = ["Results", "CHeader", "answer_key", "DEFAULT_C_CACHE_BYTES", "DEFAULT_RESULT_CACHE_BYTES"]

log = logging.getLogger("btfd.results")
R = TypeVar("R")

DEFAULT_C_CACHE_BYTES = 64 << 20  # a 6.18 vmlinux.h is 2.8 MB; module headers are smaller
DEFAULT_RESULT_CACHE_BYTES = 8 << 20
_ENTRY_OVERHEAD = 200  # key tuple, digest, OrderedDict slot: a rough, fixed charge per answer


@dataclass(frozen=True, slots=True)
class CHeader:
    """One rendered header: the sealed memfd (owned by the cache) and its size."""

    spec: str
    generation: int
    fd: int
    size: int


def answer_key(method: str, inputs: list[bytes], generations: tuple[int, ...],
               options: tuple[Hashable, ...]) -> tuple[Hashable, ...]:
    """The cache key of one answer: the method, a SHA-256 over the input bytes (each one
    length-prefixed, so two inputs never hash like their concatenation), the generations of the
    specs it is computed against, and the request's options."""
    h = hashlib.sha256()
    for b in inputs:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return (method, h.digest(), generations, options)


class _Pending:
    """A computation in flight: others asking for the same key wait for it."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class _Lru:
    """Key -> (value, bytes) with a byte budget; the least recently used go first."""

    def __init__(self, limit: int, on_evict: Callable[[object], None] | None = None,
                 on_budget: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.size = 0
        self.items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self.evictions = 0
        self._on_evict = on_evict
        self._on_budget = on_budget

    def get(self, key: Hashable) -> object | None:
        hit = self.items.get(key)
        if hit is None:
            return None
        self.items.move_to_end(key)
        return hit[0]

    def put(self, key: Hashable, value: object, size: int) -> bool:
        """Keep ``value`` unless it alone exceeds the budget; evict until the rest fits."""
        if size > self.limit:
            return False
        old = self.items.pop(key, None)
        if old is not None:
            self.size -= old[1]
            self._evicted(old[0])
        self.items[key] = (value, size)
        self.size += size
        while self.size > self.limit:
            _, (v, n) = self.items.popitem(last=False)
            self.size -= n
            self.evictions += 1
            if self._on_budget is not None:
                self._on_budget()
            self._evicted(v)
        return True

    def release(self, v: object) -> None:
        """Let go of a value that was not kept."""
        self._evicted(v)

    def drop(self, pred: Callable[[Hashable], bool]) -> None:
        for k in [k for k in self.items if pred(k)]:
            v, n = self.items.pop(k)
            self.size -= n
            self._evicted(v)

    def _evicted(self, v: object) -> None:
        if self._on_evict is not None:
            self._on_evict(v)


class Results:
    """The C-header cache and the answer cache of one daemon. Thread-safe: called from the
    worker threads that compute."""

    def __init__(self, metrics: Metrics | None = None, *, c_cache_bytes: int = DEFAULT_C_CACHE_BYTES,
                 result_cache_bytes: int = DEFAULT_RESULT_CACHE_BYTES,
                 render: Callable[[SpecEntry], bytes] | None = None) -> None:
        self._lock = threading.Lock()
        self._headers = _Lru(c_cache_bytes, self._close_header, lambda: self._count("c_header", "evicted"))
        self._answers = _Lru(result_cache_bytes, None, lambda: self._count("answer", "evicted"))
        self._pending: dict[Hashable, _Pending] = {}
        self._render = render or render_c
        self._trim = trimmer()
        self._counts: dict[tuple[str, str], int] = {}
        self._metrics = metrics
        if metrics is not None:
            metrics.result_cache_bytes.labels("c_header").set_function(lambda: self._headers.size)
            metrics.result_cache_bytes.labels("answer").set_function(lambda: self._answers.size)
            metrics.result_cache_entries.labels("c_header").set_function(lambda: len(self._headers.items))
            metrics.result_cache_entries.labels("answer").set_function(lambda: len(self._answers.items))

    # ---------------------------------------------------------------- accounting

    def _count(self, cache: str, result: str) -> None:
        k = (cache, result)
        self._counts[k] = self._counts.get(k, 0) + 1
        if self._metrics is not None:
            self._metrics.result_cache.labels(cache, result).inc()

    def counts(self) -> dict[tuple[str, str], int]:
        """(cache, hit|miss|evicted) -> count, for tests and logs."""
        with self._lock:
            return dict(self._counts)

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {"c_header": self._headers.size, "answer": self._answers.size}

    # ---------------------------------------------------------------- once per key

    def _once(self, cache: str, lru: _Lru, key: Hashable, compute: Callable[[], tuple[object, int]],
              take: Callable[[object], R], keep: bool = True) -> R:
        """``take(value)`` of the cached value for ``key``, or of ``compute()``'s (value, bytes),
        kept when ``keep`` and it fits. ``take`` runs under the cache's lock (an eviction cannot
        release the value meanwhile). One computation per key at a time: the others wait for
        it, then read the cache (or compute themselves when it was not kept)."""
        while True:
            with self._lock:
                v = lru.get(key)
                if v is not None:
                    self._count(cache, "hit")
                    return take(v)
                p = self._pending.get(key)
                if p is None:
                    p = self._pending[key] = _Pending()
                    self._count(cache, "miss")
                    break
            p.done.wait()
            if p.error is not None:
                raise p.error
        try:
            value, size = compute()
            with self._lock:
                kept = keep and lru.put(key, value, size)
                out = take(value)
            if not kept:
                lru.release(value)
            return out
        except BaseException as exc:
            p.error = exc
            raise
        finally:
            with self._lock:
                del self._pending[key]
            p.done.set()

    # ---------------------------------------------------------------- C headers

    def c_header_fd(self, entry: SpecEntry) -> tuple[int, int]:
        """(fd, size) of a held (acquired) entry's C header, rendered now if it is not cached
        (a fraction of a second for vmlinux; concurrent callers wait for one render). The fd is
        a fresh read-only one: the caller owns and closes it, and it stays valid after the
        cache drops the header."""
        key = ("c", entry.name, entry.generation)

        def render() -> tuple[object, int]:
            t0 = time.perf_counter()
            text = self._render(entry)
            fd = sealed_memfd(text, f"btfd-{entry.name}.h")
            size = len(text)
            del text
            # The render's transient objects (~10 MiB for vmlinux) are freed by now; give their
            # pages back at once rather than at the next periodic trim.
            if self._trim is not None:
                self._trim()
            log.info("rendered %s as C: %d bytes in %.2f s", entry.name, size, time.perf_counter() - t0)
            with self._lock:  # a reloaded module's older header is never asked for again
                self._headers.drop(lambda k: isinstance(k, tuple) and k[1] == entry.name
                                   and k[2] != entry.generation)
            return CHeader(entry.name, entry.generation, fd, size), size

        def take(v: object) -> tuple[int, int]:
            assert isinstance(v, CHeader)
            return _reopen_read_only(v.fd), v.size

        return self._once("c_header", self._headers, key, render, take)

    def cached_c_header_fd(self, name: str, generation: int) -> tuple[int, int] | None:
        """:meth:`c_header_fd` when the header is already kept (never renders, never blocks:
        for the event loop), else None."""
        with self._lock:
            v = self._headers.get(("c", name, generation))
            if not isinstance(v, CHeader):
                return None
            self._count("c_header", "hit")
            return _reopen_read_only(v.fd), v.size

    @staticmethod
    def _close_header(v: object) -> None:
        if isinstance(v, CHeader):
            os.close(v.fd)

    def close(self) -> None:
        with self._lock:
            self._headers.drop(lambda k: True)
            self._answers.drop(lambda k: True)

    # ---------------------------------------------------------------- answers

    def cached_answer(self, key: Hashable) -> bytes | None:
        """The kept answer for ``key``, or None (never computes, never blocks: for the event
        loop, so a repeated request needs no worker thread)."""
        with self._lock:
            v = self._answers.get(key)
            if not isinstance(v, bytes):
                return None
            self._count("answer", "hit")
            return v

    def answer(self, key: Hashable, compute: Callable[[], bytes], keep: bool = True) -> bytes:
        """A serialized answer: cached under ``key`` (see :func:`answer_key`), or ``compute()``'s.
        ``keep=False`` computes without storing (the specs changed while computing)."""

        def run() -> tuple[object, int]:
            out = compute()
            return out, len(out) + _ENTRY_OVERHEAD

        def take(v: object) -> bytes:
            assert isinstance(v, bytes)
            return v

        return self._once("answer", self._answers, key, run, take, keep)


def render_c(entry: SpecEntry) -> bytes:
    """A held entry's spec as bpftool's ``format c`` text, UTF-8 (in this process)."""
    from ..btf.format_c import dump_c

    assert entry.spec is not None
    return "".join(dump_c(entry.spec)).encode()


RENDER_TIMEOUT = 300.0  # seconds; vmlinux takes ~1 s


def child_renderer(base_of: Callable[[SpecEntry], SpecEntry | None]) -> Callable[[SpecEntry], bytes]:
    """A render function that formats in a short-lived child process (this module run with
    ``python -m``) over the very bytes the daemon serves: the entry's read-only fd (and its
    base's, from ``base_of``) are passed down and mapped there. A render in the daemon leaves
    4-6 MiB of its transient objects resident for good (allocator retention under the daemon's
    threads; docs/PERFORMANCE.md); a child gives everything back when it exits."""

    def render(entry: SpecEntry) -> bytes:
        import subprocess
        import sys

        chain = [entry]
        while chain[-1].base:
            b = base_of(chain[-1])
            if b is None:
                raise BTFNotFoundError(f"the base of {entry.name} ({chain[-1].base}) is not served")
            chain.append(b)
        args, fds = [], []
        for e in reversed(chain):  # base first
            if e.ro_fd < 0 or e.source is None:
                return render_c(entry)  # nothing to hand down (a spec without an fd)
            args.append(f"{e.ro_fd}:{e.source.size}")
            fds.append(e.ro_fd)
        try:
            r = subprocess.run([sys.executable, "-m", __name__, *args], pass_fds=fds, capture_output=True,
                               timeout=RENDER_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise BTFError(f"rendering {entry.name} as C took over {RENDER_TIMEOUT:g} s") from None
        if r.returncode != 0:
            kind, _, msg = r.stderr.decode(errors="replace").strip().rpartition("\n")[2].partition(": ")
            cls = {c.__name__: c for c in (BTFError, BTFFormatError, BTFUnsupportedError,
                                           BTFNotFoundError)}.get(kind, BTFError)
            raise cls(f"rendering {entry.name} as C: {msg or kind or f'exit {r.returncode}'}")
        return r.stdout

    return render


def _child_main(argv: list[str]) -> int:
    """``python -m btfd.server.results FD:SIZE [FD:SIZE ...]`` (base first): the last spec as C
    on stdout. The fds are the daemon's read-only ones; errors go to stderr as ``Class: text``."""
    import sys

    from ..btf import Spec
    from ..btf.format_c import dump_c
    from ..source import map_fd

    try:
        spec: Spec | None = None
        for a in argv:
            fd, _, size = a.partition(":")
            spec = Spec(map_fd(int(fd), int(size)), base=spec)
        if spec is None:
            raise BTFError("no spec given")
        out = sys.stdout.buffer
        for piece in dump_c(spec):
            out.write(piece.encode())
        out.flush()
    except BTFError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_child_main(sys.argv[1:]))


def _reopen_read_only(fd: int) -> int:
    """A new open file description of the memfd, read-only (memfd_create gives O_RDWR; the
    seals forbid writes anyway, but a client should not even hold a writable fd)."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
