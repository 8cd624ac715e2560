"""The one place that opens files, maps them and makes sealed memfds.

Every BTF btfd serves is held as a read-only mapping that can also be handed to clients as
a file descriptor:

- ``kernel-mmap``: the kernel file itself (``/sys/kernel/btf/vmlinux`` on Linux >= 6.16) mapped
  ``PROT_READ``/``MAP_PRIVATE``; the fd handed out is the file opened ``O_RDONLY``.
- ``sealed-memfd``: the bytes read once into a memfd sealed against writes, growth and
  shrinking (and further sealing), then mapped. Used when the kernel refuses mmap (older
  kernels, module BTF) and for regular files, whose contents others could change under a
  private mapping.
- ``bytes``: bytes already in memory (tests, uploaded blobs); no fd to hand out.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from dataclasses import dataclass, field
from typing import Any

from .btf import BTFError, Spec, load_spec

__all__ = [
    "Source",
    "SourceError",
    "open_source",
    "open_kernel_btf",
    "sealed_memfd",
    "map_fd",
    "SEALS",
    "MODE_KERNEL_MMAP",
    "MODE_SEALED_MEMFD",
    "MODE_BYTES",
]

MODE_KERNEL_MMAP = "kernel-mmap"
MODE_SEALED_MEMFD = "sealed-memfd"
MODE_BYTES = "bytes"

SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


class SourceError(BTFError):
    """A BTF source could not be opened or read (missing, unreadable, empty)."""

    status = "FAILED_PRECONDITION"


@dataclass
class Source:
    """A mapped, read-only BTF blob and the fd that can be shared for it."""

    path: str
    mode: str
    size: int
    data: Any  # mmap.mmap or bytes
    fd: int = -1  # -1 for MODE_BYTES
    closed: bool = field(default=False, init=False)

    def spec(self, *, base: Spec | None = None, name: str = "") -> Spec:
        """Parse the blob (raw BTF or ELF with .BTF) without copying it."""
        return load_spec(self.data, base=base, name=name)

    def close(self) -> None:
        """Unmap and close. Specs made from this source must be closed first."""
        if self.closed:
            return
        self.closed = True
        if isinstance(self.data, mmap.mmap):
            self.data.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def map_fd(fd: int, size: int | None = None) -> mmap.mmap:
    """Map ``fd`` read-only and private at offset 0 (what the kernel allows for BTF files)."""
    if size is None:
        size = os.fstat(fd).st_size
    return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)


def sealed_memfd(data: bytes | memoryview, name: str = "btf") -> int:
    """A memfd holding ``data``, sealed with F_SEAL_WRITE|GROW|SHRINK|SEAL. Returns the fd."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _from_memfd(path: str, blob: bytes) -> Source:
    if not blob:
        raise SourceError(f"{path} is empty")
    mfd = sealed_memfd(blob, os.path.basename(path) or "btf")
    try:
        m = map_fd(mfd, len(blob))
    except BaseException:
        os.close(mfd)
        raise
    return Source(path, MODE_SEALED_MEMFD, len(blob), m, mfd)


def open_kernel_btf(path: str = "/sys/kernel/btf/vmlinux", *, allow_mmap: bool = True) -> Source:
    """Open a kernel BTF file: mapped directly when the kernel allows it, else copied once
    into a sealed memfd (module BTF, kernels before 6.16)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SourceError(f"cannot open {path}: {e.strerror}") from e
    try:
        size = os.fstat(fd).st_size
        if allow_mmap and size > 0:
            try:
                m = map_fd(fd, size)
            except OSError:
                pass
            else:
                return Source(path, MODE_KERNEL_MMAP, size, m, fd)
        blob = _read_all(fd)
    except OSError as e:
        os.close(fd)
        raise SourceError(f"cannot read {path}: {e.strerror}") from e
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return _from_memfd(path, blob)


def open_source(path: str) -> Source:
    """Open any BTF file: kernel files under /sys are mapped when possible; regular files
    (raw BTF or ELF) are copied once into a sealed memfd, since a private mapping of a file
    that someone else modifies is not safe to share."""
    if path.startswith("/sys/"):
        return open_kernel_btf(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from e
    return _from_memfd(path, blob)


def bytes_source(blob: bytes, name: str = "<bytes>") -> Source:
    """A source over bytes already in memory (no fd to share)."""
    return Source(name, MODE_BYTES, len(blob), blob)


__all__.append("bytes_source")
