"""btfd.source, the one place that opens and maps files: each way in (kernel mmap, its memfd
fallback, raw and ELF files, btfhub archives, computed bytes), the seals, the fresh read-only
descriptions clients get, and the checks made before anything is read."""

from __future__ import annotations

import fcntl
import io
import lzma
import mmap
import os
import tarfile
from pathlib import Path

import pytest

from btfd.btf import BTFError, Kind
from btfd.source import (
    MODE_KERNEL_MMAP,
    MODE_SEALED_MEMFD,
    SEALS,
    SourceError,
    open_btf,
    open_kernel_btf,
    reopen_read_only,
    sealed_bytes_source,
)
from tests.conftest import CORE_DATA, blob, require_tool


def test_kernel_file_is_mapped_not_copied(kernel_vmlinux: Path) -> None:
    src = open_kernel_btf(str(kernel_vmlinux))
    try:
        assert src.mode == MODE_KERNEL_MMAP and isinstance(src.data, mmap.mmap)
        assert src.size == kernel_vmlinux.stat().st_size and src.data[:2] == b"\x9f\xeb"
        assert not src.mmap_refused
    finally:
        src.close()


def test_kernel_refusal_falls_back_to_one_sealed_memfd(kernel_vmlinux: Path) -> None:
    def refuse(fd: int, size: int) -> mmap.mmap:
        raise OSError(19, "No such device")

    src = open_kernel_btf(str(kernel_vmlinux), mapper=refuse)
    try:
        assert src.mode == MODE_SEALED_MEMFD and src.mmap_refused.startswith("ENODEV")
        assert fcntl.fcntl(src.fd, fcntl.F_GET_SEALS) & SEALS == SEALS
        assert bytes(src.data[:4096]) == kernel_vmlinux.read_bytes()[:4096]
        with pytest.raises(OSError):
            os.write(src.fd, b"x")  # sealed against writes, even through the read-write fd
    finally:
        src.close()


def test_raw_and_elf_files_hold_raw_btf(tmp_path: Path) -> None:
    raw = tmp_path / "v.btf"
    raw.write_bytes(blob("synthetic-funcs"))
    src = open_btf(str(raw))
    try:
        assert src.mode == MODE_SEALED_MEMFD and bytes(src.data) == blob("synthetic-funcs")
    finally:
        src.close()
    obj = sorted((CORE_DATA / "objs").glob("*.bpf.o"))[0]
    src = open_btf(str(obj))  # an ELF: only its .BTF section is kept
    try:
        assert src.data[:2] == b"\x9f\xeb" and src.size < obj.stat().st_size
        assert src.spec().count > 0
    finally:
        src.close()


def test_btfhub_archive_is_streamed_into_a_memfd(tmp_path: Path) -> None:
    data = blob("synthetic-enums")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("6.1.0-test.btf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    arc = tmp_path / "6.1.0-test.btf.tar.xz"
    arc.write_bytes(lzma.compress(buf.getvalue()))
    src = open_btf(str(arc))
    try:
        assert bytes(src.data) == data and src.spec().find_ids("e1", Kind.ENUM) is not None
    finally:
        src.close()
    # A packed archive is small; what it unpacks to is what the limit is about.
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w") as tar:
        info = tarfile.TarInfo("6.1.0-bomb.btf")
        info.size = 8 << 20
        tar.addfile(info, io.BytesIO(data[:64] + bytes(info.size - 64)))
    (tmp_path / "bomb.btf.tar.xz").write_bytes(lzma.compress(bomb.getvalue()))
    assert (tmp_path / "bomb.btf.tar.xz").stat().st_size < 64 << 10
    with pytest.raises(SourceError, match="over the limit"):
        open_btf(str(tmp_path / "bomb.btf.tar.xz"), max_bytes=1 << 20)
    bad = tmp_path / "bad.btf.tar.xz"
    bad.write_bytes(b"not xz at all")
    with pytest.raises(SourceError):
        open_btf(str(bad))


@pytest.mark.parametrize("content", [b"", b"\x7fELF but short", b"plain text, not BTF\n" * 10])
def test_files_that_are_not_btf_are_refused_before_they_are_read(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "x.btf"
    f.write_bytes(content)
    with pytest.raises(BTFError):  # SourceError, or the ELF reader's BTFFormatError
        open_btf(str(f))


def test_a_file_over_the_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    f = tmp_path / "sparse.btf"
    with open(f, "wb") as out:
        out.write(blob("synthetic-funcs")[:64])
        out.truncate(1 << 30)  # 1 GiB, sparse: reading it would cost 1 GiB
    with pytest.raises(SourceError, match="limit|larger|max"):
        open_btf(str(f), max_bytes=64 << 20)


def test_a_directory_or_fifo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError):
        open_btf(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SourceError):
        open_btf(str(fifo))  # would block on open/read if it were read like a file


def test_computed_bytes_in_a_sealed_memfd_and_fresh_descriptions() -> None:
    src = sealed_bytes_source(b"index bytes" * 100, "vmlinux.index")
    try:
        assert bytes(src.data) == b"index bytes" * 100
        a, b = reopen_read_only(src.fd), reopen_read_only(src.fd)
        try:
            assert fcntl.fcntl(a, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
            os.lseek(a, 0, os.SEEK_END)
            fcntl.fcntl(a, fcntl.F_SETFL, os.O_NONBLOCK)
            assert os.lseek(b, 0, os.SEEK_CUR) == 0  # its own offset...
            assert not fcntl.fcntl(b, fcntl.F_GETFL) & os.O_NONBLOCK  # ...and its own flags
            assert os.read(b, 5) == b"index"
        finally:
            os.close(a)
            os.close(b)
    finally:
        src.close()


def test_bpftool_reads_what_a_memfd_source_holds(tmp_path: Path) -> None:
    """The memfd is real BTF to other tools too: bpftool dumps it through /proc/PID/fd."""
    import subprocess

    bpftool = require_tool("bpftool")
    src = sealed_bytes_source(blob("synthetic-tags"), "tags")
    try:
        out = subprocess.run([bpftool, "btf", "dump", "file", f"/proc/{os.getpid()}/fd/{src.fd}"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        assert out.startswith("[1] ")
    finally:
        src.close()
