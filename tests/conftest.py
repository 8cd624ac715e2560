"""Shared fixtures: the BTF and CO-RE corpora shipped (xz-compressed) under tests/data/."""

from __future__ import annotations

import functools
import lzma
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
BTF_DATA = DATA / "btf"
CORE_DATA = DATA / "core"

#: Split (module) blobs and the base each was built against.
SPLIT_BASES = {
    "nf_conntrack-6.1.0-56-amd64": "vmlinux-6.1.0-56-amd64",
    "btrfs-6.1.0-56-amd64": "vmlinux-6.1.0-56-amd64",
    "veth-6.1.0-56-amd64": "vmlinux-6.1.0-56-amd64",
    "zstd_compress-6.1.0-56-amd64": "vmlinux-6.1.0-56-amd64",
    "veth-6.12.95+deb12-s390x": "vmlinux-6.12.95+deb12-s390x",
}
BASE_BLOBS = [
    "vmlinux-6.1.0-56-amd64",
    "vmlinux-6.1.0-56-arm64",
    "vmlinux-6.12.95+deb12-s390x",
    "vmlinux-6.18-amd64",
]
SYNTHETIC_BLOBS = ["synthetic-" + n for n in ("basic_types", "layout", "enums", "funcs", "tags", "bpf_prog")]
ALL_BLOBS = BASE_BLOBS + SYNTHETIC_BLOBS + list(SPLIT_BASES)


def require_tool(name: str) -> str:
    """Path of a tool `make test` installs (clang, bpftool, ...): its absence fails the test,
    it never skips it."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed (`make test` installs it: make sysdeps)")
    return path


@functools.cache
def blob(name: str) -> bytes:
    """Decompressed bytes of tests/data/btf/<name>.btf.xz (cached for the session)."""
    return lzma.decompress((BTF_DATA / f"{name}.btf.xz").read_bytes())


@functools.cache
def reference_c(name: str) -> str | None:
    """bpftool 7.1's saved `format c` dump of a blob, when the corpus has one."""
    p = BTF_DATA / f"{name}.h.xz"
    return lzma.decompress(p.read_bytes()).decode() if p.exists() else None


@pytest.fixture(scope="session")
def blob_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding every corpus blob decompressed as <name>.btf (for bpftool)."""
    d = tmp_path_factory.mktemp("btf")
    for name in ALL_BLOBS:
        (d / f"{name}.btf").write_bytes(blob(name))
    return d


@pytest.fixture(scope="session")
def bpftool() -> str:
    """Path of Debian's bpftool; `make test` installs it, so its absence is a failure."""
    path = shutil.which("bpftool") or ("/usr/sbin/bpftool" if Path("/usr/sbin/bpftool").exists() else None)
    if path is None:
        pytest.fail("bpftool is not installed (make test installs it: apt-get install bpftool)")
    return path


@pytest.fixture(scope="session")
def kernel_vmlinux() -> Path:
    """The running kernel's BTF; tests that need it skip on machines without it."""
    p = Path("/sys/kernel/btf/vmlinux")
    if not p.exists():
        pytest.skip("this kernel exposes no /sys/kernel/btf/vmlinux")
    return p
