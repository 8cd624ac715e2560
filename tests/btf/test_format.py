"""C and raw formatting compared with bpftool 7.1, run live, for every corpus blob."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from btfd.btf import Kind, Spec
from btfd.btf.format_c import HEADER, dump_c, format_type_c
from btfd.btf.format_raw import dump_raw, type_to_dict
from tests.conftest import ALL_BLOBS, SPLIT_BASES, SYNTHETIC_BLOBS, blob, reference_c

BTFCTL = str(Path(sys.executable).with_name("btfctl"))


def _spec(name: str) -> Spec:
    base = Spec(blob(SPLIT_BASES[name]), name=SPLIT_BASES[name]) if name in SPLIT_BASES else None
    return Spec(blob(name), base=base, name=name)


def _bpftool(bpftool: str, blob_dir: Path, name: str, *fmt: str) -> str:
    cmd = [bpftool, "btf", "dump"]
    if name in SPLIT_BASES:
        cmd += ["-B", str(blob_dir / f"{SPLIT_BASES[name]}.btf")]
    cmd += ["file", str(blob_dir / f"{name}.btf"), *fmt]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("name", ALL_BLOBS)
def test_c_dump_is_bpftools(name: str, bpftool: str, blob_dir: Path) -> None:
    assert "".join(dump_c(_spec(name))) == _bpftool(bpftool, blob_dir, name, "format", "c")


@pytest.mark.parametrize("name", ALL_BLOBS)
def test_raw_dump_is_bpftools(name: str, bpftool: str, blob_dir: Path) -> None:
    assert "".join(dump_raw(_spec(name))) == _bpftool(bpftool, blob_dir, name)


@pytest.mark.parametrize("name", [n for n in ALL_BLOBS if reference_c(n) is not None])
def test_c_dump_matches_saved_reference(name: str) -> None:
    """The corpus' saved bpftool dumps (kept even where no bpftool runs)."""
    assert "".join(dump_c(_spec(name))) == reference_c(name)


def test_running_kernel(bpftool: str, kernel_vmlinux: Path) -> None:
    spec = Spec(kernel_vmlinux.read_bytes())
    c = subprocess.run([bpftool, "btf", "dump", "file", str(kernel_vmlinux), "format", "c"],
                       check=True, capture_output=True, text=True).stdout
    assert "".join(dump_c(spec)) == c
    raw = subprocess.run([bpftool, "btf", "dump", "file", str(kernel_vmlinux)],
                         check=True, capture_output=True, text=True).stdout
    assert "".join(dump_raw(spec)) == raw


def _blocks(text: str) -> dict[str, str]:
    """Top-level definitions of a C dump by their first line."""
    out = {}
    assert text.startswith(HEADER)
    for block in text[len(HEADER):].split(";\n\n"):
        block = block.lstrip("\n")
        first = block.split("\n", 1)[0]
        out[first.split("{", 1)[0] + "{"] = block + ";\n\n"
    return out


def test_format_type_c_is_the_dumps_block(bpftool: str, blob_dir: Path) -> None:
    """One type's declaration equals that type's block in bpftool's whole dump: the 20
    largest structs of a vmlinux (nested anonymous members included) and every named
    struct/union/enum of the synthetic blobs."""
    cases = []
    spec = _spec("vmlinux-6.18-amd64")
    largest = sorted(spec.types(Kind.STRUCT), key=lambda t: -t.size)
    seen = set()
    for t in largest:
        if t.name and t.name not in seen and len(spec.find_ids(t.name, Kind.STRUCT)) == 1:
            seen.add(t.name)
            cases.append(("vmlinux-6.18-amd64", spec, t.id, f"struct {t.name} {{"))
        if len(cases) == 20:
            break
    for name in SYNTHETIC_BLOBS:
        s = _spec(name)
        for t in s.types():
            if t.name and t.kind in (Kind.STRUCT, Kind.UNION, Kind.ENUM) and len(s.find_ids(t.name)) == 1:
                kw = {Kind.STRUCT: "struct", Kind.UNION: "union", Kind.ENUM: "enum"}[t.kind]
                cases.append((name, s, t.id, f"{kw} {t.name} {{"))
    dumps: dict[str, dict[str, str]] = {}
    assert len(cases) > 40
    for name, s, tid, first in cases:
        if name not in dumps:
            dumps[name] = _blocks(_bpftool(bpftool, blob_dir, name, "format", "c"))
        assert format_type_c(s, tid) == dumps[name][first], (name, first)


def test_type_to_dict_follows_the_raw_fields() -> None:
    spec = _spec("synthetic-layout")
    for t in spec.types():
        d = type_to_dict(spec, t)
        assert d["id"] == t.id and d["kind"] == t.kind.name
        if t.kind in (Kind.STRUCT, Kind.UNION):
            assert len(d["members"]) == d["vlen"]


def test_btfctl_dump_file(bpftool: str, blob_dir: Path) -> None:
    for name, fmt in (("vmlinux-6.1.0-56-arm64", "c"), ("veth-6.12.95+deb12-s390x", "raw")):
        cmd = [BTFCTL, "dump", "--file", str(blob_dir / f"{name}.btf"), "--format", fmt]
        if name in SPLIT_BASES:
            cmd += ["--base", str(blob_dir / f"{SPLIT_BASES[name]}.btf")]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        assert out == _bpftool(bpftool, blob_dir, name, *(("format", "c") if fmt == "c" else ()))


def test_btfctl_dump_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.btf"
    bad.write_bytes(b"\x9f\xeb\x01\x00" + b"\xff" * 40)
    r = subprocess.run([BTFCTL, "dump", "--file", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "BTF" in r.stderr
