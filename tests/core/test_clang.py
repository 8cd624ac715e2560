"""Fresh objects built by clang (both byte orders) against targets whose layout is defined
here, so every expected value is derived by hand from the C below, not from btfd."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from btfd.btf import Spec
from btfd.core import CoreRecord, RecordInput, parse_object, resolve_object, resolve_records
from tests.conftest import require_tool
from tests.core.btfgen import BtfBuilder

CLANG = shutil.which("clang")


@pytest.fixture(autouse=True)
def _clang_installed() -> None:
    require_tool("clang")  # fails, never skips: make test installs it

SRC = r"""
#define SEC(n) __attribute__((section(n), used))
struct s { int a; char b; long long c; unsigned int f1:3, f2:5; int arr[4]; unsigned int u; }
	__attribute__((preserve_access_index));
enum e { E_ONE = 1, E_BIG = 100 };
SEC("kprobe/t") int prog(struct s *p)
{
	long r = 0;
	r += __builtin_preserve_field_info(p->c, 0);              /* FIELD_BYTE_OFFSET */
	r += __builtin_preserve_field_info(p->f2, 1);             /* FIELD_BYTE_SIZE */
	r += __builtin_preserve_field_info(p->b, 2);              /* FIELD_EXISTS */
	r += __builtin_preserve_field_info(p->a, 3);              /* FIELD_SIGNED */
	r += __builtin_preserve_field_info(p->f2, 4);             /* FIELD_LSHIFT_U64 */
	r += __builtin_preserve_field_info(p->f2, 5);             /* FIELD_RSHIFT_U64 */
	r += __builtin_preserve_type_info(*p, 0);                 /* TYPE_EXISTS */
	r += __builtin_preserve_type_info(*p, 1);                 /* TYPE_SIZE */
	r += __builtin_preserve_enum_value(*(enum e *)E_BIG, 1);  /* ENUMVAL_VALUE */
	r += __builtin_preserve_enum_value(*(enum e *)E_ONE, 0);  /* ENUMVAL_EXISTS */
	r += __builtin_btf_type_id(*p, 1);                        /* TYPE_ID_TARGET */
	r += __builtin_btf_type_id(*p, 0);                        /* TYPE_ID_LOCAL */
	r += p->arr[2];                                           /* LDX, 0:5:2 */
	r += p->u;                                                /* LDX, 0:6 */
	r += __builtin_preserve_field_info(p->b, 0);              /* offset of a missing field */
	return r;
}
char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module", params=["bpf", "bpfeb"])
def obj(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    d = tmp_path_factory.mktemp("clang")
    (d / "t.c").write_text(SRC)
    out = d / f"t-{request.param}.o"
    assert CLANG is not None
    subprocess.run([CLANG, "-g", "-O2", "-target", request.param, "-c", str(d / "t.c"), "-o", str(out)],
                   check=True, capture_output=True)
    return request.param, out.read_bytes()


def target_btf(byte_order: str) -> tuple[Spec, int]:
    """struct s laid out differently: x@0, a@8, c@16, f2:6 at bit 200, arr int[8]@32,
    u (unsigned long long)@56, size 64; no 'b'. enum e { E_BIG = 7, E_ONE = 1 }."""
    b = BtfBuilder()
    i32 = b.int("int", 4, signed=True)
    i64 = b.int("long long", 8, signed=True)
    u32 = b.int("unsigned int", 4)
    u64 = b.int("unsigned long long", 8)
    idx = b.int("__ARRAY_SIZE_TYPE__", 4)
    arr = b.array(i32, 8, idx)
    sid = b.struct("s", 64, [
        ("x", i64, 0, 0), ("a", i32, 64, 0), ("c", i64, 128, 0), ("f2", u32, 200, 6),
        ("arr", arr, 256, 0), ("u", u64, 448, 0),
    ])
    b.enum("e", 4, [("E_BIG", 7), ("E_ONE", 1)])
    return Spec(b.encode(byte_order)), sid


def by_kind(records: list[CoreRecord], kind: str, access: str | None = None) -> CoreRecord:
    hits = [r for r in records if r.kind == kind and (access is None or r.access == access)]
    assert len(hits) == 1, (kind, access, hits)
    return hits[0]


def test_object_against_its_own_btf_is_the_identity(obj: tuple[str, bytes]) -> None:
    # Relocating against the object's own BTF must reproduce what clang put in the
    # instructions (every record validates), except where libbpf and clang legitimately
    # choose differently (bitfield load sizes, which are not validated).
    _, data = obj
    o = parse_object(data)
    res = resolve_object(data, o.btf)
    assert res.errors == 0
    assert len(res.records) == 15
    for r in res.records:
        assert r.status == "ok", r
        if r.kind not in ("FIELD_BYTE_SIZE", "FIELD_LSHIFT_U64"):
            assert r.new_val == r.orig_val, r


def test_hand_derived_values(obj: tuple[str, bytes]) -> None:
    arch, data = obj
    order = "big" if arch == "bpfeb" else "little"
    tgt, sid = target_btf(order)
    recs = resolve_object(data, tgt).records
    assert [r.status for r in recs].count("error") == 0

    def val(kind: str, access: str | None = None) -> int | None:
        r = by_kind(recs, kind, access)
        assert r.status == "ok", r
        return r.new_val

    assert val("FIELD_BYTE_OFFSET", "0:2") == 16
    assert val("FIELD_BYTE_SIZE") == 4  # bits 200..205 fit the 4-byte unit at byte 24
    assert val("FIELD_EXISTS") == 0
    assert val("FIELD_SIGNED") == 1
    # LE: 64 - (200 + 6 - 24*8); BE: (8 - 4)*8 + (200 - 24*8)
    assert val("FIELD_LSHIFT_U64") == (50 if order == "little" else 40)
    assert val("FIELD_RSHIFT_U64") == 58
    assert val("TYPE_EXISTS") == 1
    assert val("TYPE_SIZE") == 64
    assert val("ENUMVAL_VALUE") == 7
    assert val("ENUMVAL_EXISTS") == 1
    assert val("TYPE_ID_TARGET") == sid
    arr = by_kind(recs, "FIELD_BYTE_OFFSET", "0:5:2")
    assert (arr.new_val, arr.mem_size, arr.insn_class) == (40, None, "LDX")
    u = by_kind(recs, "FIELD_BYTE_OFFSET", "0:6")
    assert (u.new_val, u.mem_size) == (56, {"from": 4, "to": 8})
    assert by_kind(recs, "FIELD_BYTE_OFFSET", "0:1").status == "poison"


def test_patched_instructions(obj: tuple[str, bytes]) -> None:
    arch, data = obj
    order = "big" if arch == "bpfeb" else "little"
    tgt, _ = target_btf(order)
    res = resolve_object(data, tgt, want_patched=True)
    insns = res.programs[("kprobe/t", "prog")]
    pfx = ">" if order == "big" else "<"
    recs = res.records
    u = by_kind(recs, "FIELD_BYTE_OFFSET", "0:6")
    code, _regs, off, _imm = struct.unpack_from(pfx + "BBhi", insns, 8 * u.insn)
    assert (code, off) == (0x79, 56)  # LDX | MEM | DW: the 4-byte load became 8 bytes
    arr = by_kind(recs, "FIELD_BYTE_OFFSET", "0:5:2")
    code, _regs, off, _imm = struct.unpack_from(pfx + "BBhi", insns, 8 * arr.insn)
    assert (code, off) == (0x61, 40)
    poisoned = by_kind(recs, "FIELD_BYTE_OFFSET", "0:1")
    code, _regs, off, imm = struct.unpack_from(pfx + "BBhi", insns, 8 * poisoned.insn)
    assert (code, imm) == (0x85, 0xBAD2310)
    ev = by_kind(recs, "ENUMVAL_VALUE")
    lo = struct.unpack_from(pfx + "i", insns, 8 * ev.insn + 4)[0]
    assert lo == 7
    # Untouched instructions stay as they were.
    o = parse_object(data)
    orig = o.section_bytes("kprobe/t")
    touched = {r.insn for r in recs} | {r.insn + 1 for r in recs if r.insn_class == "LDIMM64"}
    for i in range(len(orig) // 8):
        if i not in touched:
            assert insns[8 * i : 8 * i + 8] == orig[8 * i : 8 * i + 8]


def test_records_entry_point_agrees(obj: tuple[str, bytes]) -> None:
    arch, data = obj
    tgt, _ = target_btf("big" if arch == "bpfeb" else "little")
    o = parse_object(data)
    assert o.ext is not None
    bare = [RecordInput(r.sec, r.insn_off, r.type_id, r.access, r.kind) for r in o.ext.core_relos]
    start, length = o.btf.header.start, o.btf.size
    local = bytes(o.data[start : start + length])
    a = resolve_records(local, bare, tgt).records
    b = resolve_object(data, tgt).records
    for x, y in zip(a, b, strict=True):
        assert (x.kind, x.access, x.status, x.new_val) == (y.kind, y.access, y.status, y.new_val)
    # Without instructions, the value clang should have emitted is reported as orig_val.
    assert by_kind(a, "FIELD_BYTE_OFFSET", "0:2").orig_val == 8


def test_split_target(obj: tuple[str, bytes], tmp_path: Path) -> None:
    # A module's split BTF over a base: candidates in the split part are found when the base
    # has none (libbpf looks at module BTF only then).
    arch, data = obj
    order = "big" if arch == "bpfeb" else "little"
    bb = BtfBuilder()
    bb.int("int", 4, signed=True)
    bb.int("long long", 8, signed=True)
    base = Spec(bb.encode(order))
    sb = BtfBuilder(base=base)
    sid = sb.struct("s", 24, [("c", 2, 64, 0), ("a", 1, 128, 0)])
    split = Spec(sb.encode(order), base=base)
    recs = resolve_object(data, split).records
    assert by_kind(recs, "FIELD_BYTE_OFFSET", "0:2").new_val == 8
    assert by_kind(recs, "TYPE_ID_TARGET").new_val == sid
    assert by_kind(recs, "TYPE_SIZE").new_val == 24


def test_module_targets_searched_only_without_vmlinux_candidates(obj: tuple[str, bytes]) -> None:
    from btfd.core import CoreTarget

    arch, data = obj
    order = "big" if arch == "bpfeb" else "little"
    bb = BtfBuilder()
    bb.int("int", 4, signed=True)
    bb.int("long long", 8, signed=True)
    base = Spec(bb.encode(order), name="vmlinux")
    m1 = BtfBuilder(base=base)
    m1.struct("unrelated", 4, [])
    mod1 = Spec(m1.encode(order), base=base, name="mod1")
    m2 = BtfBuilder(base=base)
    sid = m2.struct("s", 16, [("c", 2, 0, 0)])
    mod2 = Spec(m2.encode(order), base=base, name="mod2")
    recs = resolve_object(data, CoreTarget(base, modules=[mod1, mod2])).records
    off = by_kind(recs, "FIELD_BYTE_OFFSET", "0:2")
    assert (off.new_val, off.target_btf, off.target_type_id) == (0, "mod2", sid)
    assert by_kind(recs, "TYPE_ID_TARGET").new_val == sid
    # With an 's' in vmlinux, modules are not looked at.
    bb2 = BtfBuilder()
    bb2.int("int", 4, signed=True)
    i64 = bb2.int("long long", 8, signed=True)
    bb2.struct("s", 24, [("c", i64, 128, 0)])
    base2 = Spec(bb2.encode(order), name="vmlinux")
    recs = resolve_object(data, CoreTarget(base2, modules=[mod2])).records
    assert by_kind(recs, "FIELD_BYTE_OFFSET", "0:2").new_val == 16
    assert by_kind(recs, "FIELD_BYTE_OFFSET", "0:2").target_btf == "vmlinux"
