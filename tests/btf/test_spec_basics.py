"""The library against bpftool's own view of every corpus blob: counts, kinds, names."""

from __future__ import annotations

import collections
import re
import subprocess

import pytest

from btfd.btf import Kind, Spec, Struct, load_spec
from tests.conftest import ALL_BLOBS, BASE_BLOBS, SPLIT_BASES, blob


def _spec(name: str) -> Spec:
    base = Spec(blob(SPLIT_BASES[name]), name=SPLIT_BASES[name]) if name in SPLIT_BASES else None
    return Spec(blob(name), base=base, name=name)


def _bpftool_kinds(bpftool: str, blob_dir, name: str) -> collections.Counter[str]:
    cmd = [bpftool, "btf", "dump", "file", str(blob_dir / f"{name}.btf")]
    if name in SPLIT_BASES:
        cmd[3:3] = ["-B", str(blob_dir / f"{SPLIT_BASES[name]}.btf")]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return collections.Counter(re.findall(r"^\[\d+\] (\w+)", out, re.M))


@pytest.mark.parametrize("name", ALL_BLOBS)
def test_kind_histogram_matches_bpftool(name: str, bpftool: str, blob_dir) -> None:
    spec = _spec(name)
    ours = collections.Counter(Kind(spec.kind(t)).name for t in spec.ids())
    assert ours == _bpftool_kinds(bpftool, blob_dir, name)


@pytest.mark.parametrize("name", BASE_BLOBS)
def test_lookup_by_name_agrees_with_linear_scan(name: str) -> None:
    spec = _spec(name)
    by_name: dict[str, list[int]] = collections.defaultdict(list)
    for t in spec.ids():
        n = spec.type_name(t)
        if n:
            by_name[n].append(t)
    # Every 97th name, plus names that cannot exist.
    for n in sorted(by_name)[::97]:
        assert spec.find_ids(n) == by_name[n], n
    assert spec.find_ids("surely_not_a_kernel_type_xyz") == []
    ts = spec.find_one("task_struct", Kind.STRUCT)
    assert isinstance(ts, Struct) and ts.size > 1000


def test_split_spec_continues_base_ids() -> None:
    spec = _spec("veth-6.1.0-56-amd64")
    assert spec.start_id == 100751 and spec.next_id == 100751 + 95
    # A module type that refers to vmlinux types resolves through the base.
    veth = spec.find_one("veth_priv", Kind.STRUCT)
    assert isinstance(veth, Struct)
    assert all(spec.type(m.type) is not None for m in veth.members)


def test_elf_object_btf_is_found_without_copy() -> None:
    from tests.conftest import CORE_DATA

    data = (CORE_DATA / "objs" / "c_types.bpf.o").read_bytes()
    spec = load_spec(data)
    assert spec.data is data
    assert spec.count > 0
