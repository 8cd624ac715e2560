"""btfd against the real libbpf on objects nobody hand-picked: clang builds kprobe programs
doing random CO-RE accesses into vmlinux-6.1 structs, and both engines relocate them against
vmlinux-6.18 and vmlinux-6.1. Every relocation libbpf logs must get the same verdict."""

from __future__ import annotations

import lzma
import shutil
import subprocess
from pathlib import Path

import pytest

from btfd.btf import Spec
from btfd.core import resolve_object
from tests.conftest import BTF_DATA, blob, require_tool
from tests.core.libbpf_oracle import generate_program_source, libbpf_verdicts

CLANG = shutil.which("clang")


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    require_tool("clang")
    d = tmp_path_factory.mktemp("diff")
    (d / "vmlinux.h").write_bytes(lzma.decompress((BTF_DATA / "vmlinux-6.1.0-56-amd64.h.xz").read_bytes()))
    local = Spec(blob("vmlinux-6.1.0-56-amd64"))
    out = []
    for seed in (1, 2):
        src = d / f"g{seed}.c"
        src.write_text(generate_program_source(local, seed, 40))
        obj = d / f"g{seed}.o"
        subprocess.run([CLANG, "-g", "-O2", "-target", "bpf", "-c", str(src), "-o", str(obj)],
                       check=True, capture_output=True, cwd=d)
        out.append(obj)
    return out


@pytest.mark.parametrize("target", ["vmlinux-6.18-amd64", "vmlinux-6.1.0-56-amd64"])
def test_same_verdicts_as_libbpf(objects: list[Path], target: str, tmp_path: Path) -> None:
    tb = tmp_path / f"{target}.btf"
    tb.write_bytes(blob(target))
    spec = Spec(blob(target))
    compared = 0
    for obj in objects:
        theirs = libbpf_verdicts(str(obj), str(tb))
        if theirs is None:
            pytest.fail("libbpf could not reach CO-RE here (libbpf.so.1 missing, or no privilege "
                        "to load BPF: `make test` installs libbpf and CI runs as root)")
        recs = resolve_object(obj.read_bytes(), spec).records
        for r in recs:
            key = (r.prog, r.relo_idx)
            if key not in theirs:
                continue  # after libbpf's first failure it logs nothing more
            st, val, size = theirs[key]
            where = f"{obj.name} {r.prog} relo #{r.relo_idx} {r.kind} {r.type_name} {r.access}"
            assert r.status == st, f"{where}: {r.status} ({r.error}) != libbpf's {st}"
            if st == "ok":
                mine = r.new_val or 0
                if r.insn_class in ("ALU", "ALU64"):
                    mine &= 0xFFFFFFFF  # libbpf logs the 32-bit immediate
                assert (mine, (r.mem_size or {}).get("to")) == (val, size), where
            compared += 1
    assert compared > 400
