"""The specs a daemon serves, by name: ``vmlinux``, ``module/<name>`` and extra ``--btf`` specs.

Each entry owns its :class:`~btfd.source.Source` (the mapping and the fd handed to clients) and
its :class:`~btfd.btf.Spec`. Module specs are split over ``vmlinux`` and opened on first use;
a rescan adds modules that appeared, drops those that went away and reopens those whose file
changed (a module unloaded and loaded again). A dropped entry's resources (mapping, memfd,
read-only fd) are released once no request uses it any more: requests hold entries with
:meth:`Registry.acquire`/:meth:`Registry.release`. Clients holding an fd of a dropped module
keep valid memory: the fd (and the memfd behind it) is theirs.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..btf import BTFNotFoundError, Spec
from ..source import (
    Mapper,
    Source,
    file_identity,
    open_btf,
    open_kernel_btf,
    reopen_read_only,
    sealed_bytes_source,
)
from .errors import quote

__all__ = ["SpecEntry", "Registry", "MODULE_PREFIX"]

log = logging.getLogger("btfd.registry")
MODULE_PREFIX = "module/"


@dataclass(eq=False)
class SpecEntry:
    """One served spec. ``spec``/``source`` are None until a lazy module is opened."""

    name: str
    path: str
    generation: int  # unique per entry: a reloaded module is a new entry
    base: str = ""
    identity: tuple[int, int, int] | None = None  # (st_ino, st_size, st_mtime_ns) of a module file
    source: Source | None = None
    spec: Spec | None = None
    index: Source | None = None  # the spec's index in a sealed memfd, read by spec and clients
    core_target: Any = None  # btfd.core.CoreTarget, made on first ResolveCore
    ro_fd: int = -1  # read-only fd handed to clients (the fd socket sends a dup of it)
    users: int = 0  # requests holding this entry (Registry.acquire)
    retired: bool = False  # no longer served; freed when the last user releases it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def loaded(self) -> bool:
        return self.spec is not None


class Registry:
    """Name -> :class:`SpecEntry`. Opening happens here; everything else reads specs."""

    def __init__(self, *, vmlinux_path: str, sysfs_dir: str | None, extra: dict[str, str],
                 mapper: Mapper | None = None, share_index: bool = True) -> None:
        self.sysfs_dir = sysfs_dir
        self.share_index = share_index
        self.mapper = mapper
        self.generation = 0  # bumped whenever the set of served specs changes
        self._ids = itertools.count(1)
        self._entries: dict[str, SpecEntry] = {}
        self._lock = threading.RLock()
        vm = self._new_entry("vmlinux", vmlinux_path)
        self._open(vm, None)
        self._entries["vmlinux"] = vm
        for name, path in extra.items():
            e = self._new_entry(name, path)
            self._open(e, None)
            self._entries[name] = e
        self.rescan_modules()

    def _new_entry(self, name: str, path: str, **kw: Any) -> SpecEntry:
        return SpecEntry(name, path, next(self._ids), **kw)

    # ---------------------------------------------------------------- opening

    def _open(self, e: SpecEntry, base: Spec | None) -> None:
        if base is not None and os.path.realpath(e.path).startswith("/sys/"):
            src = open_kernel_btf(e.path, allow_mmap=False)  # the kernel never maps module BTF
        else:
            src = open_btf(e.path, mapper=self.mapper)
        idx: Source | None = None
        try:
            spec = src.spec(base=base, name=e.name)
            if self.share_index:
                # Built once, here; the daemon reads it from the memfd it hands to clients, so
                # its memory is shared with every agent instead of private to anyone.
                idx = sealed_bytes_source(spec.export_index(), f"{e.name}.index")
                spec.close()
                spec = src.spec(base=base, name=e.name, index=idx.data)
        except BaseException:
            if idx is not None:
                idx.close()
            src.close()
            raise
        e.source, e.spec, e.index = src, spec, idx
        e.ro_fd = _read_only_fd(src)
        log.info("opened %s from %s: %d types, %d bytes, %s, %s-endian%s", e.name, e.path,
                 spec.count, src.size, src.mode, spec.byte_order,
                 f", split over {e.base}" if e.base else "")
        if src.mmap_refused:
            log.warning("the kernel refused to map %s (%s): serving it from one sealed memfd "
                        "(mode %s, mmap_refused)", e.path, src.mmap_refused, src.mode)

    def ensure(self, name: str) -> SpecEntry:
        """The entry for ``name``, opened if it was lazy. NOT_FOUND for unknown names."""
        e = self._lookup(name)
        self._load(e)
        return e

    def _lookup(self, name: str) -> SpecEntry:
        e = self._entries.get(name or "vmlinux")
        if e is None:
            raise BTFNotFoundError(f"no spec named {quote(name)}; served: {', '.join(self.names())}")
        return e

    def _load(self, e: SpecEntry) -> None:
        if e.spec is None:
            with e.lock:
                if e.spec is None:
                    if e.retired:
                        raise BTFNotFoundError(f"spec {e.name} was dropped (module unloaded)")
                    self._open(e, self.vmlinux.spec)

    def acquire(self, name: str) -> SpecEntry:
        """:meth:`ensure`, and hold the entry: its resources stay until :meth:`release`, even
        if a rescan drops it meanwhile. A lazy entry is opened outside the registry lock, so
        a rescan never waits for a module being parsed."""
        with self._lock:
            e = self._lookup(name)
            e.users += 1
        try:
            self._load(e)
        except BaseException:
            self.release(e)
            raise
        return e

    def release(self, e: SpecEntry) -> None:
        with self._lock:
            e.users -= 1
            if e.retired and e.users == 0:
                self._free(e)

    @contextlib.contextmanager
    def hold(self, names: list[str]) -> Iterator[list[SpecEntry]]:
        """Acquire every named entry for the duration of a ``with`` block."""
        held: list[SpecEntry] = []
        try:
            for n in names:
                held.append(self.acquire(n))
            yield held
        finally:
            for e in held:
                self.release(e)

    def entry_or_none(self, name: str) -> SpecEntry | None:
        """The entry if it is served (loaded or not), else None. Never opens anything."""
        return self._entries.get(name)

    @property
    def vmlinux(self) -> SpecEntry:
        return self._entries["vmlinux"]

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> Iterator[SpecEntry]:
        return iter(list(self._entries.values()))

    def module_entries(self) -> list[SpecEntry]:
        return [e for e in self._entries.values() if e.name.startswith(MODULE_PREFIX)]

    # ---------------------------------------------------------------- modules

    def rescan_modules(self) -> tuple[list[str], list[str]]:
        """Follow modules loaded, unloaded and reloaded (a file whose inode, size or mtime
        changed is read again). Returns (added, removed) spec names; a reloaded module is
        in both."""
        if self.sysfs_dir is None or not os.path.isdir(self.sysfs_dir):
            return [], []
        try:
            files = [f for f in os.listdir(self.sysfs_dir) if f != "vmlinux"]
        except OSError as exc:
            log.warning("cannot list %s: %s", self.sysfs_dir, exc)
            return [], []
        present: dict[str, tuple[int, int, int]] = {}
        for f in files:
            path = os.path.join(self.sysfs_dir, f)
            ident = file_identity(path) if os.path.isfile(path) else None
            if ident is not None:
                present[f] = ident
        added, removed = [], []
        with self._lock:
            known = {e.name[len(MODULE_PREFIX):]: e for e in self.module_entries()}
            for m, e in sorted(known.items()):
                if present.get(m) != e.identity:
                    del self._entries[e.name]
                    removed.append(e.name)
                    self._retire(e)
                    known.pop(m)
            for m in sorted(set(present) - set(known)):
                name = MODULE_PREFIX + m
                self._entries[name] = self._new_entry(name, os.path.join(self.sysfs_dir, m),
                                                      base="vmlinux", identity=present[m])
                added.append(name)
            if added or removed:
                self.generation += 1
        if added or removed:
            log.info("modules: %d added, %d removed (%d served)", len(added), len(removed),
                     len(self.module_entries()))
        return added, removed

    def _retire(self, e: SpecEntry) -> None:
        e.retired = True
        if e.users == 0:
            self._free(e)

    def _free(self, e: SpecEntry) -> None:
        """Release everything an entry holds (no request uses it any more)."""
        with e.lock:
            e.core_target = None
            if e.spec is not None:
                e.spec.close()
            if e.ro_fd >= 0 and (e.source is None or e.ro_fd != e.source.fd):
                os.close(e.ro_fd)
            e.ro_fd = -1
            if e.source is not None:
                e.source.close()
            if e.index is not None:
                e.index.close()
                e.index = None
            log.debug("freed %s (generation %d)", e.name, e.generation)

    def close(self) -> None:
        with self._lock:
            for e in self._entries.values():
                self._free(e)
            self._entries.clear()


def _read_only_fd(src: Source) -> int:
    """The fd clients receive: the kernel file (already O_RDONLY), or a read-only reopening of
    the sealed memfd (memfd_create gives O_RDWR; the seals forbid writes anyway)."""
    if src.fd < 0:
        return -1
    if src.mode == "kernel-mmap":
        return src.fd
    return reopen_read_only(src.fd)
