"""The one place that opens files, maps them and makes sealed memfds.

Every BTF btfd serves is held as a read-only mapping that can also be handed to clients as
a file descriptor; the fd always holds raw BTF (never an ELF wrapper or an archive):

- ``kernel-mmap``: the kernel file itself (``/sys/kernel/btf/vmlinux`` on Linux >= 6.16) mapped
  ``PROT_READ``/``MAP_PRIVATE``; the fd handed out is the file opened ``O_RDONLY``.
- ``sealed-memfd``: the bytes copied once into a memfd sealed against writes, growth and
  shrinking (and further sealing), then mapped. Used when the kernel refuses mmap (older
  kernels: :attr:`Source.mmap_refused` then says why; module BTF, which the kernel never maps)
  and for regular files, whose contents others could change under a private mapping. From an
  ELF file only its ``.BTF`` section is copied; from a btfhub ``.btf.tar.xz`` the ``.btf``
  member is streamed in.
- ``bytes``: bytes already in memory (tests, uploaded blobs); no fd to hand out.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .btf import BTFError, Spec, load_spec
from .btf.elf import find_section, is_elf

__all__ = [
    "Source",
    "SourceError",
    "Mapper",
    "open_source",
    "open_btf",
    "open_kernel_btf",
    "bytes_source",
    "file_identity",
    "sealed_memfd",
    "sealed_bytes_source",
    "reopen_read_only",
    "check_file",
    "MAX_FILE_BYTES",
    "map_fd",
    "SEALS",
    "MODE_KERNEL_MMAP",
    "MODE_SEALED_MEMFD",
    "MODE_BYTES",
]

MODE_KERNEL_MMAP = "kernel-mmap"
MODE_SEALED_MEMFD = "sealed-memfd"
MODE_BYTES = "bytes"

#: Largest file opened to serve (btfd --max-file-bytes): the biggest vmlinux BTF seen is ~10
#: MiB, a module's a few hundred KiB; a file past this is refused before a byte is read.
MAX_FILE_BYTES = 64 << 20

SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL
_CHUNK = 1 << 20

#: How a kernel file is mapped: ``(fd, size) -> mmap``. Injectable so that the fallback taken
#: when the kernel refuses (``OSError``) can be exercised on kernels that allow it.
Mapper = Callable[[int, int], mmap.mmap]


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
    mmap_refused: str = ""  # why the kernel refused to map the file ("ENODEV: ..."), else ""
    closed: bool = field(default=False, init=False)

    def spec(self, *, base: Spec | None = None, name: str = "", index: Any = None) -> Spec:
        """Parse the blob (raw BTF) without copying it (``index``: see :class:`Spec`)."""
        if index is not None:
            return Spec(self.data, base=base, name=name, index=index)
        return load_spec(self.data, base=base, name=name)

    def close(self) -> None:
        """Close the fd and unmap. Idempotent. A mapping still referenced elsewhere (a spec
        in use) is left to be unmapped when the last reference goes."""
        if self.closed:
            return
        self.closed = True
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if isinstance(self.data, mmap.mmap):
            try:
                self.data.close()
            except BufferError:  # views of it are still alive: the GC unmaps it later
                pass
        self.data = b""


_BTF_MAGICS = (b"\x9f\xeb", b"\xeb\x9f")
_ELF_MAGIC = b"\x7fELF"


def check_file(fd: int, path: str, max_bytes: int | None = None, *, archive: bool = False) -> int:
    """The size of the open file ``fd``, once it is known to be worth reading: a regular
    file (or a kernel sysfs file), at most ``max_bytes`` (default :data:`MAX_FILE_BYTES`),
    starting with a BTF magic, an ELF header or (``archive``) an xz header. Raises
    :class:`SourceError` otherwise, before anything more than the first bytes is read."""
    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{path} is not a regular file")
    if st.st_size > limit:
        raise SourceError(f"{path} is {st.st_size} bytes, over the limit of {limit} "
                          f"(btfd --max-file-bytes raises it)")
    head = os.pread(fd, 8, 0)
    if st.st_size and not head:
        return st.st_size  # sysfs files report a size but are read by the kernel in order
    ok = head[:2] in _BTF_MAGICS or head[:4] == _ELF_MAGIC or (archive and head[:6] == b"\xfd7zXZ\x00")
    if head and not ok:
        raise SourceError(f"{path} is neither BTF nor ELF (starts with {head[:4].hex()})")
    return st.st_size


def _open_file(path: str, verb: str = "read") -> int:
    """``path`` opened read-only without blocking: a FIFO (or a device) must not hang the
    daemon on open before :func:`check_file` refuses it. Reads block as usual afterwards.
    A failure says "cannot ``verb`` PATH: why"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise SourceError(f"cannot {verb} {path}: {e.strerror}") from e
    try:
        os.set_blocking(fd, True)
    except OSError:
        os.close(fd)
        raise
    return fd


def map_fd(fd: int, size: int | None = None) -> mmap.mmap:
    """Map ``fd`` read-only and private at offset 0 (what the kernel allows for BTF files)."""
    if size is None:
        size = os.fstat(fd).st_size
    return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)


def file_identity(path: str) -> tuple[int, int, int] | None:
    """(st_ino, st_size, st_mtime_ns) of ``path``, None when it is gone: a changed identity
    means the file was replaced (a module reloaded) and must be read again."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _new_memfd(name: str) -> int:
    return os.memfd_create(name[:200] or "btf", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)


def _write_all(fd: int, data: bytes | memoryview) -> int:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.write(fd, view[done:])
    return done


def sealed_memfd(data: bytes | memoryview, name: str = "btf") -> int:
    """A memfd holding ``data``, sealed with F_SEAL_WRITE|GROW|SHRINK|SEAL. Returns the fd."""
    fd = _new_memfd(name)
    try:
        _write_all(fd, data)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def sealed_bytes_source(data: bytes, name: str) -> Source:
    """``data`` in a sealed, mapped memfd (for what the daemon computes once and shares, like
    a spec's index): the process keeps the mapping, clients get the fd."""
    return _memfd_source(name, name, lambda mfd: _write_all(mfd, data))


def reopen_read_only(fd: int) -> int:
    """A new open file description, read-only, of what ``fd`` refers to (a memfd): what a
    client receives, so that no client can change another's offset or flags."""
    return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)


def _memfd_source(path: str, name: str, fill: Callable[[int], int]) -> Source:
    """A sealed, mapped memfd filled by ``fill(fd) -> bytes written``."""
    mfd = _new_memfd(name)
    try:
        size = fill(mfd)
        if size == 0:
            raise SourceError(f"{path} holds no BTF (empty)")
        fcntl.fcntl(mfd, fcntl.F_ADD_SEALS, SEALS)
        m = map_fd(mfd, size)
    except BaseException:
        os.close(mfd)
        raise
    return Source(path, MODE_SEALED_MEMFD, size, m, mfd)


def _copy_stream(read: Callable[[int], bytes]) -> Callable[[int], int]:
    def fill(mfd: int) -> int:
        n = 0
        while True:
            b = read(_CHUNK)
            if not b:
                return n
            n += _write_all(mfd, b)
    return fill


def _bounded_read(fd: int, size: int, path: str) -> Callable[[int], bytes]:
    """Reads of ``fd`` that stop with an error past ``size`` bytes (a file that grows while
    it is copied)."""
    done = [0]

    def read(n: int) -> bytes:
        b = os.read(fd, n)
        done[0] += len(b)
        if done[0] > size and size > 0:
            raise SourceError(f"{path} grew past its {size} bytes while it was read")
        return b

    return read


def _errno_text(e: OSError) -> str:
    name = errno.errorcode.get(e.errno or 0, str(e.errno))
    return f"{name}: {e.strerror or e}"


def open_kernel_btf(path: str = "/sys/kernel/btf/vmlinux", *, allow_mmap: bool = True,
                    mapper: Mapper | None = None, max_bytes: int | None = None) -> Source:
    """Open a kernel BTF file: mapped directly when the kernel allows it, else copied once
    into a sealed memfd (module BTF, kernels before 6.16: ``mmap_refused`` then says why)."""
    fd = _open_file(path, "open")  # kernel files: as before, "cannot open"
    refused = ""
    try:
        size = check_file(fd, path, max_bytes)
        if allow_mmap and size > 0:
            try:
                m = (mapper or map_fd)(fd, size)
            except OSError as e:
                refused = _errno_text(e)
            else:
                return Source(path, MODE_KERNEL_MMAP, size, m, fd)
        try:
            src = _memfd_source(path, os.path.basename(path), _copy_stream(_bounded_read(fd, size, path)))
        except OSError as e:
            raise SourceError(f"cannot read {path}: {e.strerror}") from e
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    src.mmap_refused = refused
    return src


def _open_btfhub_archive(path: str, max_bytes: int | None = None) -> Source:
    """A btfhub ``<release>.btf.tar.xz``: its ``.btf`` member streamed into a sealed memfd
    (nothing is unpacked on disk)."""
    import lzma  # only here: btfhub archives are rare, and clients map fds without them
    import tarfile

    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    fd = _open_file(path)
    try:
        check_file(fd, path, limit, archive=True)
        arc = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        with arc, tarfile.open(fileobj=arc, mode="r|xz") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".btf"):
                    if member.size > limit:  # unpacked size: an archive that is small packed
                        raise SourceError(f"{path}: {member.name} is {member.size} bytes, over "
                                          f"the limit of {limit} (btfd --max-file-bytes raises it)")
                    f = tar.extractfile(member)
                    assert f is not None
                    return _memfd_source(path, os.path.basename(member.name), _copy_stream(f.read))
    except (OSError, lzma.LZMAError, tarfile.TarError, EOFError) as e:
        raise SourceError(f"cannot unpack {path}: {e}") from e
    raise SourceError(f"{path} holds no .btf file")


def open_source(path: str) -> Source:
    """Open any file as it is (a BPF object, raw BTF, an ELF with .BTF): kernel files under
    /sys are mapped when possible; regular files are copied once into a sealed memfd, since
    a private mapping of a file that someone else modifies is not safe to share. For a blob
    to serve, use :func:`open_btf`, which keeps only the raw BTF."""
    if os.path.realpath(path).startswith("/sys/"):
        return open_kernel_btf(path)
    return _open_regular(path, btf_only=False)


def open_btf(path: str, *, mapper: Mapper | None = None, kernel: bool | None = None,
             max_bytes: int | None = None) -> Source:
    """Open a BTF file to serve; the blob (and the fd handed to clients) is raw BTF. Kernel
    files (under /sys, or ``kernel=True``) are mapped when the kernel allows it (``mapper``:
    see :func:`open_kernel_btf`). A btfhub ``.btf.tar.xz`` is streamed into a sealed memfd;
    regular files are copied once into one, from an ELF file its ``.BTF`` section only."""
    if kernel is None:
        kernel = os.path.realpath(path).startswith("/sys/")
    if kernel:
        return open_kernel_btf(path, mapper=mapper, max_bytes=max_bytes)
    if path.endswith(".tar.xz"):
        return _open_btfhub_archive(path, max_bytes)
    return _open_regular(path, btf_only=True, max_bytes=max_bytes)


def _open_regular(path: str, *, btf_only: bool, max_bytes: int | None = None) -> Source:
    fd = _open_file(path)
    try:
        with os.fdopen(fd, "rb") as f:
            size = check_file(f.fileno(), path, max_bytes)
            blob = f.read(size + 1)
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from e
    if len(blob) > size:
        raise SourceError(f"{path} grew past its {size} bytes while it was read")
    if not blob:
        raise SourceError(f"{path} is empty")
    view = memoryview(blob)
    if btf_only and is_elf(blob):
        off, size = find_section(blob, ".BTF")
        view = view[off : off + size]
    return _memfd_source(path, os.path.basename(path), lambda mfd: _write_all(mfd, view))


def bytes_source(blob: bytes, name: str = "<bytes>") -> Source:
    """A source over bytes already in memory (no fd to share)."""
    return Source(name, MODE_BYTES, len(blob), blob)
