"""Array-index accesses whose element is itself an array (``*(int *)p->m[1]`` of ``int m[2][3]``).

libbpf 1.6 (commit 06096d19ee38, "fix ... mem_sz") sizes the load/store of such an access by the
innermost element, as it already did for a named array field: the row access above reads an
int and keeps its 4-byte load. The object and the target are built by clang at test time from
``tests/data/core/extra/``; the expected offsets come from ``offsetof`` in a host program
compiled from the same target header, so nothing here is taken from btfd's own output.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from btfd.btf import Spec
from btfd.core import CoreRecord, parse_object, resolve_object
from tests.conftest import CORE_DATA, require_tool

CLANG = shutil.which("clang")


@pytest.fixture(autouse=True)
def _clang_installed() -> None:
    require_tool("clang")  # fails, never skips: make test installs it
EXTRA = CORE_DATA / "extra"

HOST = r"""
#include <stddef.h>
#include <stdio.h>
#include "arr_rows.target.h"
int main(void)
{
    struct rows r;
    printf("%zu %zu %zu %zu %zu %zu %zu %zu\n",
           offsetof(struct rows, m[1]), sizeof(r.m[1][0]),
           offsetof(struct rows, u[1]), sizeof(r.u[1][0]),
           offsetof(struct rows, v[1]), sizeof(r.v[1]),
           offsetof(struct rows, n[1]), offsetof(struct rows, w));
    return 0;
}
"""


def _clang(*args: str) -> None:
    assert CLANG is not None
    subprocess.run([CLANG, *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Spec, dict[str, int]]:
    d = tmp_path_factory.mktemp("rows")
    _clang("-g", "-O2", "-target", "bpf", "-c", str(EXTRA / "arr_rows.bpf.c"), "-o", str(d / "o.o"))
    _clang("-g", "-O2", "-target", "bpf", "-c", str(EXTRA / "arr_rows.target.c"), "-o", str(d / "t.o"))
    (d / "host.c").write_text(HOST)
    _clang("-O0", "-I", str(EXTRA), str(d / "host.c"), "-o", str(d / "host"))
    out = subprocess.run([str(d / "host")], check=True, capture_output=True, text=True).stdout.split()
    keys = ("m1", "m_elem", "u1", "u_elem", "v1", "v_elem", "n1", "w")
    layout = dict(zip(keys, map(int, out), strict=True))
    target = parse_object((d / "t.o").read_bytes()).btf
    return (d / "o.o").read_bytes(), target, layout


def by_access(recs: list[CoreRecord], access: str) -> CoreRecord:
    hits = [r for r in recs if r.access == access and r.insn_class == "LDX"]
    assert len(hits) == 1, (access, hits)
    return hits[0]


def test_row_of_a_2d_array_keeps_its_element_sized_load(built: tuple[bytes, Spec, dict[str, int]]) -> None:
    obj, target, lay = built
    res = resolve_object(obj, target, want_patched=True)
    recs = res.records
    assert res.errors == 0
    row = by_access(recs, "0:2:1")
    # libbpf 1.1 compared the sizes of int[3] and int[4] and poisoned this load.
    assert (row.status, row.new_val, row.mem_size) == ("ok", lay["m1"], None)
    insns = res.programs[("kprobe/rows", "rows")]
    code, _regs, off, _imm = struct.unpack_from("<BBhi", insns, 8 * row.insn)
    assert lay["m_elem"] == 4 and (code, off) == (0x61, lay["m1"])  # LDX|MEM|W kept
    # The plane of a 3-D array: the load still reads one int.
    plane = by_access(recs, "0:5:1")
    assert (plane.status, plane.new_val, plane.mem_size) == ("ok", lay["n1"], None)
    # A named array field read through its first element.
    w = by_access(recs, "0:1")
    assert (w.status, w.new_val, w.mem_size) == ("ok", lay["w"], None)


def test_element_size_change_follows_libbpfs_type_rule(built: tuple[bytes, Spec, dict[str, int]]) -> None:
    obj, target, lay = built
    recs = resolve_object(obj, target).records
    # v[1]: unsigned int -> unsigned long, both unsigned integers: the load grows to 8 bytes.
    v = by_access(recs, "0:4:1")
    assert lay["v_elem"] == 8
    assert (v.status, v.new_val, v.mem_size) == ("ok", lay["v1"], {"from": 4, "to": 8})
    # u[1]: the row's innermost element grows too, but the type libbpf checks for a safe size
    # change is the accessor's (unsigned int[3], an array, not an integer): poisoned.
    u = by_access(recs, "0:3:1")
    assert lay["u_elem"] == 8
    assert u.status == "poison"
    assert u.target_access == "0:3:1"  # it matched; the load size is what is refused


def test_committed_object_is_the_source(built: tuple[bytes, Spec, dict[str, int]]) -> None:
    # tests/data/core/extra/arr_rows.bpf.o (for `btfctl core` by hand) resolves like a fresh build.
    obj, target, _ = built
    fresh = [(r.access, r.status, r.new_val) for r in resolve_object(obj, target).records]
    kept = Path(EXTRA / "arr_rows.bpf.o").read_bytes()
    assert [(r.access, r.status, r.new_val) for r in resolve_object(kept, target).records] == fresh
