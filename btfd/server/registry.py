"""The specs a daemon serves, by name: ``vmlinux``, ``module/<name>`` and extra ``--btf`` specs.

Each entry owns its :class:`~btfd.source.Source` (the mapping and the fd handed to clients) and
its :class:`~btfd.btf.Spec`. Module specs are split over ``vmlinux`` and opened on first use;
a rescan adds modules that appeared and drops those that went away (clients holding an fd of a
dropped module keep valid memory: the fd is theirs).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..btf import BTFNotFoundError, Spec
from ..source import Source, open_kernel_btf, open_source

__all__ = ["SpecEntry", "Registry", "MODULE_PREFIX"]

log = logging.getLogger("btfd.registry")
_GENERATIONS = itertools.count(1)
MODULE_PREFIX = "module/"


@dataclass
class SpecEntry:
    """One served spec. ``spec``/``source`` are None until a lazy module is opened."""

    name: str
    path: str
    base: str = ""
    source: Source | None = None
    spec: Spec | None = None
    core_target: Any = None  # btfd.core.CoreTarget, made on first ResolveCore
    ro_fd: int = -1  # read-only fd handed to clients
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    generation: int = field(default_factory=lambda: next(_GENERATIONS))  # unique per entry

    @property
    def loaded(self) -> bool:
        return self.spec is not None


class Registry:
    """Name -> :class:`SpecEntry`. Opening happens here; everything else reads specs."""

    def __init__(self, *, vmlinux_path: str, sysfs_dir: str | None, extra: dict[str, str]) -> None:
        self.sysfs_dir = sysfs_dir
        self._entries: dict[str, SpecEntry] = {}
        self._lock = threading.Lock()
        vm = SpecEntry("vmlinux", vmlinux_path)
        self._open(vm, None)
        self._entries["vmlinux"] = vm
        for name, path in extra.items():
            e = SpecEntry(name, path)
            self._open(e, None)
            self._entries[name] = e
        self.rescan_modules()

    # ---------------------------------------------------------------- opening

    def _open(self, e: SpecEntry, base: Spec | None) -> None:
        if os.path.realpath(e.path).startswith("/sys/"):
            # Kernel files: mapped when the kernel allows it (never for module BTF).
            src = open_kernel_btf(e.path, allow_mmap=base is None)
        else:
            # Regular files could change under a private mapping: sealed memfd.
            src = open_source(e.path)
        try:
            spec = src.spec(base=base, name=e.name)
        except BaseException:
            src.close()
            raise
        e.source, e.spec = src, spec
        e.ro_fd = _read_only_fd(src)
        log.info("opened %s from %s: %d types, %d bytes, %s, %s-endian%s", e.name, e.path,
                 spec.count, src.size, src.mode, spec.byte_order,
                 f", split over {e.base}" if e.base else "")

    def ensure(self, name: str) -> SpecEntry:
        """The entry for ``name``, opened if it was lazy. NOT_FOUND for unknown names."""
        e = self._entries.get(name or "vmlinux")
        if e is None:
            raise BTFNotFoundError(f"no spec named {name!r}; served: {', '.join(self.names())}")
        if e.spec is None:
            with e.lock:
                if e.spec is None:
                    self._open(e, self.vmlinux.spec)
        return e

    def entry_or_none(self, name: str) -> SpecEntry | None:
        """The entry if it is served (loaded or not), else None. Never opens anything."""
        return self._entries.get(name)

    def spec(self, name: str) -> Spec:
        s = self.ensure(name).spec
        assert s is not None
        return s

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
        """Follow modules loaded and unloaded. Returns (added, removed) spec names."""
        if self.sysfs_dir is None or not os.path.isdir(self.sysfs_dir):
            return [], []
        try:
            present = {
                f for f in os.listdir(self.sysfs_dir)
                if f != "vmlinux" and os.path.isfile(os.path.join(self.sysfs_dir, f))
            }
        except OSError as exc:
            log.warning("cannot list %s: %s", self.sysfs_dir, exc)
            return [], []
        added, removed = [], []
        with self._lock:
            known = {e.name[len(MODULE_PREFIX):] for e in self.module_entries()}
            for m in sorted(present - known):
                name = MODULE_PREFIX + m
                self._entries[name] = SpecEntry(name, os.path.join(self.sysfs_dir, m), base="vmlinux")
                added.append(name)
            for m in sorted(known - present):
                e = self._entries.pop(MODULE_PREFIX + m)
                removed.append(e.name)
                # Do not unmap: requests in flight may still read it; the GC does it later.
                if e.ro_fd >= 0 and e.source is not None and e.ro_fd != e.source.fd:
                    os.close(e.ro_fd)
                    e.ro_fd = -1
        if added or removed:
            log.info("modules: %d added, %d removed (%d served)", len(added), len(removed),
                     len(self.module_entries()))
        return added, removed

    def close(self) -> None:
        for e in self._entries.values():
            if e.spec is not None:
                e.spec.close()
            if e.ro_fd >= 0 and e.source is not None and e.ro_fd != e.source.fd:
                os.close(e.ro_fd)
            if e.source is not None:
                e.source.close()
        self._entries.clear()


def _read_only_fd(src: Source) -> int:
    """The fd clients receive: the kernel file (already O_RDONLY), or a read-only reopening of
    the sealed memfd (memfd_create gives O_RDWR; the seals forbid writes anyway)."""
    if src.fd < 0:
        return -1
    if src.mode == "kernel-mmap":
        return src.fd
    return os.open(f"/proc/self/fd/{src.fd}", os.O_RDONLY | os.O_CLOEXEC)
