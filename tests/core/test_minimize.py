"""MinimizeBtf: relocating against the minimal BTF gives the same records as against the full
target, and the blob matches what `bpftool gen min_core_btf` (Debian's bpftool 7.1) writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from btfd.btf import Spec
from btfd.core import CoreRecord, resolve_object
from btfd.core.minimize import minimize
from tests.conftest import CORE_DATA
from tests.core.test_corpus import OBJECTS, TARGETS, target

OBJ_BYTES = {o: (CORE_DATA / "objs" / o).read_bytes() for o in OBJECTS}


def _same(full: list[CoreRecord], small: list[CoreRecord], id_map: dict[int, int]) -> None:
    back = {v: k for k, v in id_map.items()}
    assert len(full) == len(small)
    for a, b in zip(full, small, strict=True):
        where = f"{a.prog}+{a.insn} {a.kind} {a.type_name} {a.access}"
        assert (a.status, a.mem_size, a.local_spec, a.target_bit_offset, a.orig_val) == (
            b.status, b.mem_size, b.local_spec, b.target_bit_offset, b.orig_val), where
        if a.kind == "TYPE_ID_TARGET" and b.new_val:
            assert back[b.new_val] == a.new_val, where
        else:
            assert a.new_val == b.new_val, where
        if a.target_type_id is not None:
            assert back[b.target_type_id or 0] == a.target_type_id, where
        if a.status == "error":
            assert b.error is not None and (a.error == b.error or "ambiguity" in a.error), where


@pytest.mark.parametrize("tname", list(TARGETS))
def test_each_object_relocates_the_same_against_its_min_btf(tname: str) -> None:
    full = target(tname)
    for obj, data in OBJ_BYTES.items():
        m = minimize([data], full)
        small = Spec(m.btf)
        assert small.count == len(m.types) <= 400, obj
        _same(resolve_object(data, full).records, resolve_object(data, small).records, m.id_map)


@pytest.mark.parametrize("tname", list(TARGETS))
def test_all_objects_share_one_min_btf(tname: str) -> None:
    full = target(tname)
    m = minimize(OBJ_BYTES.values(), full)
    small = Spec(m.btf)
    for data in OBJ_BYTES.values():
        _same(resolve_object(data, full).records, resolve_object(data, small).records, m.id_map)


def _bpftool_min(bpftool: str, target_btf: Path, objs: list[Path], out: Path) -> bytes:
    subprocess.run([bpftool, "gen", "min_core_btf", str(target_btf), str(out), *map(str, objs)],
                   check=True, capture_output=True)
    return out.read_bytes()


def test_byte_identical_to_bpftool_on_vmlinux(bpftool: str, tmp_path: Path) -> None:
    # bpftool refuses k_types.bpf.o (it carries deliberate ambiguities); take the rest.
    objs = [CORE_DATA / "objs" / o for o in OBJECTS if o != "k_types.bpf.o"]
    for tname in ("vmlinux-6.18", "vmlinux-6.1.0-56"):
        full = target(tname)
        tb = tmp_path / f"{tname}.btf"
        tb.write_bytes(bytes(full.data))
        theirs = _bpftool_min(bpftool, tb, objs, tmp_path / "bpftool.btf")
        ours = minimize([p.read_bytes() for p in objs], full).btf
        assert ours == theirs, tname


# Where btfd keeps more than bpftool, on purpose: every matching candidate (bpftool keeps the
# first only, which loses later narrowing in general), and the last member of a struct whose
# zero-length array is not its last member (else it turns into a flexible array).
SUPERSET = {("custom-a", "c_flavors.bpf.o"), ("custom-c", "c_flavors.bpf.o"),
            ("custom-b", "c_arrays.bpf.o")}


@pytest.mark.parametrize("tname", ["custom-a", "custom-b", "custom-c"])
def test_custom_targets_against_bpftool(bpftool: str, tmp_path: Path, tname: str) -> None:
    tb = CORE_DATA / "targets" / f"{tname}.btf"
    for o in OBJECTS:
        theirs = _bpftool_min(bpftool, tb, [CORE_DATA / "objs" / o], tmp_path / "b.btf")
        ours = minimize([OBJ_BYTES[o]], target(tname))
        if (tname, o) in SUPERSET:
            t_names = {Spec(theirs).type_name(i) for i in Spec(theirs).ids()}
            assert t_names <= {t.name for t in ours.types} and len(ours.btf) > len(theirs)
        else:
            assert ours.btf == theirs, (tname, o)


def test_bpftool_min_btf_loses_a_verdict_ours_keeps(bpftool: str, tmp_path: Path) -> None:
    # custom-b's oracle_arr.flex is a zero-length array followed by 'tail': not flexible, so
    # p->flex[10] is poisoned. bpftool drops 'tail' and the access becomes valid.
    tb = CORE_DATA / "targets" / "custom-b.btf"
    data = OBJ_BYTES["c_arrays.bpf.o"]
    theirs = Spec(_bpftool_min(bpftool, tb, [CORE_DATA / "objs" / "c_arrays.bpf.o"], tmp_path / "b.btf"))
    full = resolve_object(data, target("custom-b")).records
    ours = resolve_object(data, Spec(minimize([data], target("custom-b")).btf)).records
    bt = resolve_object(data, theirs).records
    i = next(i for i, r in enumerate(full) if r.access == "0:6:10" and r.kind == "FIELD_BYTE_OFFSET")
    assert (full[i].status, ours[i].status, bt[i].status) == ("poison", "poison", "ok")


def test_cli_min_btf(tmp_path: Path) -> None:
    out = tmp_path / "min.btf"
    obj = str(CORE_DATA / "objs" / "c_types.bpf.o")
    p = subprocess.run([sys.executable, "-m", "btfd.cli", "min-btf", obj,
                        "--target", str(CORE_DATA / "targets" / "custom-a.btf"), "-o", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    s = Spec(out.read_bytes())
    assert f"{s.count} types, {out.stat().st_size} bytes" in p.stderr
    p = subprocess.run([sys.executable, "-m", "btfd.cli", "min-btf", str(tmp_path / "nope.o"),
                        "--target", str(CORE_DATA / "targets" / "custom-a.btf"), "-o", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
