"""An object whose byte order is not the target's is refused with ByteOrderError (a BTFError).

libbpf relocates for the kernel it runs on and refuses objects of the other byte order;
FIELD_LSHIFT_U64 and the instruction encoding depend on it, so relocating a big-endian object
for a little-endian kernel (or the reverse) cannot give a loadable answer. Objects are built by
clang at test time for both orders; targets are a corpus x86-64 kernel (little-endian), the
corpus s390x kernel (big-endian) and a little-endian BTF clang itself produced.
"""

from __future__ import annotations

import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from btfd.btf import BTFError, Spec
from btfd.core import ByteOrderError, RecordInput, parse_object, resolve_object, resolve_records
from tests.conftest import BTF_DATA, blob, require_tool

CLANG = shutil.which("clang")


@pytest.fixture(autouse=True)
def _clang_installed() -> None:
    require_tool("clang")  # fails, never skips: make test installs it

SRC = r"""
#define SEC(n) __attribute__((section(n), used))
struct task_struct { int pid; unsigned int in_execve:1, in_iowait:1; } __attribute__((preserve_access_index));
SEC("kprobe/t") int prog(struct task_struct *p)
{
	return p->pid + __builtin_preserve_field_info(p->in_iowait, 4 /* FIELD_LSHIFT_U64 */);
}
char _license[] SEC("license") = "GPL";
"""
S390X = "vmlinux-6.12.95+deb12-s390x"
AMD64 = "vmlinux-6.1.0-56-amd64"


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("endian")
    (d / "t.c").write_text(SRC)
    out = {}
    for arch in ("bpfel", "bpfeb"):
        assert CLANG is not None
        o = d / f"t-{arch}.o"
        subprocess.run([CLANG, "-g", "-O2", "-target", arch, "-c", str(d / "t.c"), "-o", str(o)],
                       check=True, capture_output=True)
        out[arch] = o
    return out


@pytest.fixture(scope="module")
def targets() -> dict[str, Spec]:
    return {n: Spec(blob(n), name=n) for n in (S390X, AMD64)}


def test_big_endian_object_against_little_endian_target(objs: dict[str, Path], targets: dict[str, Spec]) -> None:
    with pytest.raises(ByteOrderError, match=r"object is big-endian, target .*amd64 is little-endian"):
        resolve_object(objs["bpfeb"].read_bytes(), targets[AMD64])


def test_little_endian_object_against_s390x(objs: dict[str, Path], targets: dict[str, Spec]) -> None:
    with pytest.raises(ByteOrderError, match=r"object is little-endian, target .*s390x is big-endian"):
        resolve_object(objs["bpfel"].read_bytes(), targets[S390X])
    assert issubclass(ByteOrderError, BTFError)


def test_matching_orders_resolve(objs: dict[str, Path], targets: dict[str, Spec]) -> None:
    # The positive control: each object against a kernel of its own order.
    for arch, tname in (("bpfeb", S390X), ("bpfel", AMD64)):
        recs = resolve_object(objs[arch].read_bytes(), targets[tname]).records
        assert [r.status for r in recs] == ["ok", "ok"], (arch, recs)


def test_bare_records_are_checked_too(objs: dict[str, Path], targets: dict[str, Spec]) -> None:
    o = parse_object(objs["bpfeb"].read_bytes())
    assert o.ext is not None
    start = o.btf.header.start
    local = bytes(o.data[start : start + o.btf.size])
    bare = [RecordInput(r.sec, r.insn_off, r.type_id, r.access, r.kind) for r in o.ext.core_relos]
    with pytest.raises(ByteOrderError):
        resolve_records(local, bare, targets[AMD64])


def test_btfctl_exits_2_with_the_reason(objs: dict[str, Path], tmp_path: Path) -> None:
    tgt = tmp_path / "s390x.btf"
    tgt.write_bytes(lzma.decompress((BTF_DATA / f"{S390X}.btf.xz").read_bytes()))
    p = subprocess.run([sys.executable, "-m", "btfd.cli", "core", str(objs["bpfel"]), "--target", str(tgt),
                        "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "little-endian" in p.stderr and "big-endian" in p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    ok = subprocess.run([sys.executable, "-m", "btfd.cli", "core", str(objs["bpfeb"]), "--target", str(tgt),
                         "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(line)["status"] for line in ok.stdout.splitlines()] == ["ok", "ok"]
