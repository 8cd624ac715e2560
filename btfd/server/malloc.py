"""glibc malloc settings for a long-running daemon with worker threads (docs/PERFORMANCE.md,
"Soak"). Everything here is a no-op where the C library is not glibc."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

__all__ = ["trimmer", "tune_malloc"]

# glibc's malloc.h
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def tune_malloc(arenas: int = 2, big_block: int = 128 << 10) -> bool:
    """Keep glibc's malloc from holding on to freed memory under load; call before any
    thread starts. Two causes, both measured by a mixed soak (docs/PERFORMANCE.md, "Soak"):

    - Requests that run in worker threads (lookups, listings, CO-RE) would each get an arena
      of their own that keeps its freed pages: uss grew 33 MiB in 10 minutes. Capped at
      ``arenas``.
    - glibc raises its mmap threshold to the size of every mapped block freed (up to 32 MiB),
      and its trim threshold to twice that. After the first big transient buffers (a listing's
      set of string offsets, a ReadRaw chunk, a CO-RE object) later ones come from the heap,
      and the heap's free pages stay resident: +6 MiB in 5 minutes with the arena cap alone.
      Pinning both thresholds at ``big_block`` (glibc's own starting value) keeps big blocks
      in mappings of their own, unmapped when freed, and the heap trimmed.

    False where the C library is not glibc."""
    try:  # the process's own symbols: libc is loaded already (no ldconfig lookup)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_ARENA_MAX, arenas), (_M_MMAP_THRESHOLD, big_block), (_M_TRIM_THRESHOLD, big_block))
    return all([bool(mallopt(option, value)) for option, value in settings])


def trimmer() -> Callable[[], bool] | None:
    """glibc's malloc_trim(0): gives the free pages of every arena back to the kernel, those
    in the middle of a heap too, which no free() does. Long-lived blocks (cached answers,
    connections) end up above freed ones, so the heap's top cannot shrink and its free pages
    stay resident: +0.7 MiB over a 5-minute soak without it, flat with it. None where there
    is no malloc_trim."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]

    def run() -> bool:
        return bool(trim(0))

    return run
