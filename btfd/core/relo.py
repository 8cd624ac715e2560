"""The CO-RE relocation engine: a port of libbpf's relo_core.c and of the candidate logic of
libbpf.c (``bpf_core_find_cands``, ``bpf_core_resolve_relo``, ``bpf_object__relocate_core``),
libbpf v1.7 semantics. Pure: bytes and specs in, verdicts (and patched instructions) out.

Entry points:

- :func:`resolve_object` — a BPF ELF object against a target :class:`~btfd.btf.Spec`:
  every ``.BTF.ext`` CO-RE record in file order, each validated against the instruction it
  patches, and optionally every program's relocated instructions.
- :func:`resolve_records` — the same from a local BTF blob and bare records (no
  instructions: nothing to validate or patch, the computed values are returned).

Per-object semantics, as libbpf applies them:

- one candidate list per local root type id, found once through the target's name index
  (``Spec.find_essential``: same essential name, compatible kind; for a split target, the
  base's candidates, else the split BTF's own — libbpf's vmlinux-then-modules order) and
  narrowed to the candidates that matched each relocation, in ``.BTF.ext`` order;
- a program whose relocation fails is refused by libbpf; its record gets status ``error``,
  the records after it in that program ``skipped``, and the other programs are resolved as
  if it had been left out (the candidate narrowing it caused is not kept) — what a loader
  gets by disabling the failing program and loading the rest.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from ..btf import BTFError, Kind, Spec
from ..btf import types as T
from .compat import BtfView, essential_len, fields_are_compat, types_are_compat, types_match
from .errors import ByteOrderError, CoreError, ObjectError
from .obj import CORE_SPEC_MAX_LEN, INSN_SIZE, BpfObject, CoreRelo, parse_object

__all__ = [
    "CoreTarget",
    "CoreRecord",
    "CoreResult",
    "RecordInput",
    "resolve_object",
    "resolve_records",
    "find_candidates",
    "KIND_NAMES",
    "KIND_IDS",
    "ReloKind",
    "RecordStatus",
    "AccessSpec",
    "FIELD_KINDS",
    "TYPE_KINDS",
    "ENUMVAL_KINDS",
    "POISON_IMM",
]

class ReloKind(IntEnum):
    """enum bpf_core_relo_kind: libbpf's numbering and names."""

    FIELD_BYTE_OFFSET = 0
    FIELD_BYTE_SIZE = 1
    FIELD_EXISTS = 2
    FIELD_SIGNED = 3
    FIELD_LSHIFT_U64 = 4
    FIELD_RSHIFT_U64 = 5
    TYPE_ID_LOCAL = 6
    TYPE_ID_TARGET = 7
    TYPE_EXISTS = 8
    TYPE_SIZE = 9
    ENUMVAL_EXISTS = 10
    ENUMVAL_VALUE = 11
    TYPE_MATCHES = 12

    @property
    def log_name(self) -> str:
        """core_relo_kind_str(): the short name libbpf's log uses (``byte_off``, ...)."""
        return _KIND_STR[self]


class RecordStatus(StrEnum):
    """What became of one relocation record (see :class:`CoreRecord`)."""

    OK = "ok"
    POISON = "poison"
    ERROR = "error"
    SKIPPED = "skipped"


KIND_NAMES = tuple(k.name for k in ReloKind)
KIND_IDS = {k.name: k.value for k in ReloKind}
_KIND_STR = (
    "byte_off", "byte_sz", "field_exists", "signed", "lshift_u64", "rshift_u64",
    "local_type_id", "target_type_id", "type_exists", "type_size", "enumval_exists",
    "enumval_value", "type_matches",
)
#: libbpf's core_relo_is_field_based(), _type_based(), _enumval_based().
FIELD_KINDS = frozenset(ReloKind(k) for k in range(0, 6))
TYPE_KINDS = frozenset({ReloKind.TYPE_ID_LOCAL, ReloKind.TYPE_ID_TARGET, ReloKind.TYPE_EXISTS,
                        ReloKind.TYPE_SIZE, ReloKind.TYPE_MATCHES})
ENUMVAL_KINDS = frozenset({ReloKind.ENUMVAL_EXISTS, ReloKind.ENUMVAL_VALUE})
(FIELD_BYTE_OFFSET, FIELD_BYTE_SIZE, FIELD_EXISTS, FIELD_SIGNED, FIELD_LSHIFT_U64,
 FIELD_RSHIFT_U64, TYPE_ID_LOCAL, TYPE_ID_TARGET, TYPE_EXISTS, TYPE_SIZE, ENUMVAL_EXISTS,
 ENUMVAL_VALUE, TYPE_MATCHES) = tuple(ReloKind)

#: bpf_core_poison_insn(): `call 0xbad2310` ("bad relo").
POISON_IMM = 195896080
_U64 = (1 << 64) - 1
_SHRT_MAX = 0x7FFF
_ACCESS_RE = re.compile(r"\s*([+-]?\d+)")
# BPF instruction classes and sizes (linux/bpf_common.h).
_LD, _LDX, _ST, _STX, _ALU, _ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x07
_CLASS_NAMES = {0: "LD", 1: "LDX", 2: "ST", 3: "STX", 4: "ALU", 5: "JMP", 6: "JMP32", 7: "ALU64"}
_SIZE_BYTES = {0x18: 8, 0x00: 4, 0x08: 2, 0x10: 1}
_BYTES_SIZE = {v: k for k, v in _SIZE_BYTES.items()}
_LDIMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
_KIND_LOWER = {k: k.name.lower() for k in Kind}


# ---------------------------------------------------------------------------- results


@dataclass(slots=True)
class CoreRecord:
    """The verdict on one CO-RE relocation record (the fields ``btfctl core --json`` prints).

    ``status`` is ``ok`` (patched with ``new_val``), ``poison`` (instruction replaced by an
    invalid call, as libbpf does when nothing matches), ``error`` (libbpf refuses the
    program; ``error`` says why) or ``skipped`` (after an error in the same program, or an
    instruction no function symbol holds: libbpf never looks at it).
    """

    sec: str
    prog: str
    insn: int
    sec_insn: int
    relo_idx: int
    order: int
    kind: str
    kind_id: int
    type_id: int
    type_kind: str
    type_name: str
    access: str
    status: RecordStatus = RecordStatus.OK
    new_val: int | None = None
    orig_val: int | None = None
    mem_size: dict[str, int] | None = None
    target_type_id: int | None = None
    target_type_name: str | None = None
    target_access: str | None = None
    target_bit_offset: int | None = None
    target_btf: str | None = None
    error: str | None = None
    local_spec: str | None = None
    target_spec: str | None = None
    candidates: int = 0
    insn_class: str | None = None
    orig_insn: str | None = None
    new_insn: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (field order as declared)."""
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class CoreResult:
    """All records of one resolution, in ``.BTF.ext`` order, and (when asked) each program's
    relocated instructions keyed by ``(section, program)``."""

    records: list[CoreRecord]
    programs: dict[tuple[str, str], bytes] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(1 for r in self.records if r.status == RecordStatus.ERROR)


@dataclass(frozen=True, slots=True)
class RecordInput:
    """A bare relocation record for :func:`resolve_records` (``insn_off`` in bytes)."""

    sec: str
    insn_off: int
    type_id: int
    access: str
    kind: int


# ---------------------------------------------------------------------------- specs


class _Fail(Exception):
    """A relocation libbpf refuses (its negative errno paths); message is libbpf-like.
    ``targ`` is the first matching candidate's spec when one was found (ambiguities)."""

    targ: AccessSpec | None = None


@dataclass(slots=True)
class _Acc:
    type_id: int
    idx: int
    name: str | None


@dataclass(slots=True)
class AccessSpec:
    """struct bpf_core_spec: high-level accessors, raw indices, bit offset."""

    view: BtfView
    root_type_id: int
    kind: int
    accs: list[_Acc] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    bit_offset: int = 0


def _is_flex_arr(view: BtfView, acc: _Acc, arr: T.Array) -> bool:
    """is_flex_arr(): a zero-length array that is the last member of its struct."""
    if acc.name is None or arr.nelems > 0:
        return False
    t = view.t(acc.type_id)
    return isinstance(t, (T.Struct, T.Union)) and acc.idx == len(t.members) - 1


def _parse_access(s: str) -> list[int]:
    # bpf_core_parse_spec(): "0:1:2" -> [0, 1, 2] (sscanf "%d%n" after an optional ':').
    if not s or s[0] == ":":
        raise _Fail(f"invalid access string {s!r}")
    out: list[int] = []
    p = 0
    while p < len(s):
        if s[p] == ":":
            p += 1
        m = _ACCESS_RE.match(s, p)
        if m is None:
            raise _Fail(f"invalid access string {s!r}")
        if len(out) == CORE_SPEC_MAX_LEN:
            raise _Fail(f"access string {s!r} is deeper than {CORE_SPEC_MAX_LEN} (-E2BIG)")
        v = int(m.group(1))
        if v < 0:
            raise _Fail(f"negative index in access string {s!r}")
        out.append(v)
        p = m.end()
    if not out:
        raise _Fail(f"invalid access string {s!r}")
    return out


def _parse_spec(view: BtfView, type_id: int, access: str, kind: int) -> AccessSpec:
    """bpf_core_parse_spec()."""
    spec = AccessSpec(view, type_id, kind)
    if not access or access[0] == ":":
        raise _Fail(f"invalid access string {access!r}")
    if kind in TYPE_KINDS:
        if access != "0":
            raise _Fail(f"type-based relocation with access string {access!r} (must be \"0\")")
        return spec
    spec.raw = _parse_access(access)
    tid, t = view.skip(type_id)
    idx = spec.raw[0]
    acc = _Acc(tid, idx, None)
    spec.accs.append(acc)
    if kind in ENUMVAL_KINDS:
        if not isinstance(t, T.Enum) or len(spec.raw) > 1 or idx >= len(t.values):
            raise _Fail(f"enumerator access {access!r} does not fit [{tid}]")
        acc.name = t.values[idx].name
        return spec
    if kind not in FIELD_KINDS:
        raise _Fail(f"unknown relocation kind {kind}")
    spec.bit_offset = idx * view.size(tid) * 8
    for i in range(1, len(spec.raw)):
        tid, t = view.skip(tid)
        idx = spec.raw[i]
        if isinstance(t, (T.Struct, T.Union)):
            if idx >= len(t.members):
                raise _Fail(f"access {access!r}: member #{idx} of [{tid}] does not exist")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.accs.append(_Acc(tid, idx, m.name))
            tid = m.type
        elif isinstance(t, T.Array):
            eid, _ = view.skip(t.type)
            flex = _is_flex_arr(view, spec.accs[-1], t)
            if not flex and idx >= t.nelems:
                raise _Fail(f"access {access!r}: index {idx} out of bounds of [{tid}]")
            spec.accs.append(_Acc(eid, idx, None))
            spec.bit_offset += idx * view.size(eid) * 8
            tid = eid
        else:
            raise _Fail(
                f"relo for [{type_id}] {access} (at idx {i}) captures type [{tid}] of "
                f"unexpected kind {_KIND_LOWER[t.kind]}"
            )
    return spec


def _format_spec(spec: AccessSpec) -> str:
    """bpf_core_format_spec(): e.g. ``<byte_off> [5] struct s.a[2] (0:1:2 @ offset 8)``."""
    v = spec.view
    t = v.t(spec.root_type_id)
    ks = _KIND_STR[spec.kind] if 0 <= spec.kind < len(_KIND_STR) else "unknown"
    s = f"<{ks}> [{spec.root_type_id}] {_KIND_LOWER[t.kind]} {t.name or '<anon>'}"
    if spec.kind in TYPE_KINDS:
        return s
    if spec.kind in ENUMVAL_KINDS:
        if spec.accs:
            et = v.t(spec.accs[0].type_id)
            if isinstance(et, T.Enum):
                ev = et.values[spec.accs[0].idx]
                val = ev.value
                if not et.signed:
                    val &= _U64 if et.is64 else 0xFFFFFFFF
                return f"{s}::{ev.name} = {val}"
        return s
    for i, a in enumerate(spec.accs):
        if a.name:
            s += f".{a.name}"
        elif i > 0 or a.idx > 0:
            s += f"[{a.idx}]"
    raw = ":".join(str(x) for x in spec.raw)
    bo = spec.bit_offset
    off = f"{bo // 8}.{bo % 8}" if bo % 8 else f"{bo // 8}"
    return f"{s} ({raw} @ offset {off})"


# ---------------------------------------------------------------------------- matching


def _match_member(lv: BtfView, lacc: _Acc, tv: BtfView, targ_id: int, spec: AccessSpec) -> tuple[int, int]:
    """bpf_core_match_member(): (1 found | 0 not, next target type id); searches anonymous
    embedded structs/unions recursively (in member order), keeping the target's raw spec and
    bit offset. libbpf pushes every member speculatively and pops it when it is not the one;
    only the outcome is kept here."""
    targ_id, tt = tv.skip(targ_id)
    if not isinstance(tt, (T.Struct, T.Union)):
        return 0, targ_id
    lt = lv.t(lacc.type_id)
    assert isinstance(lt, (T.Struct, T.Union))
    lm = lt.members[lacc.idx]
    lname = lm.name
    if tt.members and len(spec.raw) == CORE_SPEC_MAX_LEN:
        raise _Fail("too deep struct/union/array nesting in target (-E2BIG)")
    for i, m in enumerate(tt.members):
        name = m.name
        if not name:
            spec.bit_offset += m.bit_offset
            spec.raw.append(i)
            found, nxt = _match_member(lv, lacc, tv, m.type, spec)
            if found:
                return found, nxt
            spec.bit_offset -= m.bit_offset
            spec.raw.pop()
        elif name == lname:
            spec.bit_offset += m.bit_offset
            spec.raw.append(i)
            spec.accs.append(_Acc(targ_id, i, name))
            if fields_are_compat(lv, lm.type, tv, m.type):
                return 1, m.type
            spec.accs.pop()
            return 0, m.type
    return 0, targ_id


def _spec_match(local: AccessSpec, tv: BtfView, targ_id: int) -> tuple[int, AccessSpec]:
    """bpf_core_spec_match(): does candidate ``targ_id`` satisfy the local spec?"""
    ts = AccessSpec(tv, targ_id, local.kind)
    lv = local.view
    if local.kind in TYPE_KINDS:
        if local.kind == TYPE_MATCHES:
            r = types_match(lv, local.root_type_id, tv, targ_id)
        else:
            r = types_are_compat(lv, local.root_type_id, tv, targ_id)
        if r < 0:
            raise _Fail(f"type comparison with candidate [{targ_id}] nests too deep")
        return r, ts
    if local.kind in ENUMVAL_KINDS:
        targ_id, tt = tv.skip(targ_id)
        if not isinstance(tt, T.Enum):
            return 0, ts
        lname = local.accs[0].name or ""
        lname = lname[: _ess_len(lname)]
        for i, ev in enumerate(tt.values):
            if ev.name[: _ess_len(ev.name)] == lname and _ess_len(ev.name) == len(lname):
                ts.accs.append(_Acc(targ_id, i, ev.name))
                ts.raw.append(i)
                return 1, ts
        return 0, ts
    if local.kind not in FIELD_KINDS:
        raise _Fail(f"unknown relocation kind {local.kind}")
    for i, lacc in enumerate(local.accs):
        targ_id, tt = tv.skip(targ_id)
        if lacc.name is not None:
            found, targ_id = _match_member(lv, lacc, tv, targ_id, ts)
            if found <= 0:
                return found, ts
        else:
            if i > 0:
                if not isinstance(tt, T.Array):
                    return 0, ts
                flex = _is_flex_arr(tv, ts.accs[-1], tt)
                if not flex and lacc.idx >= tt.nelems:
                    return 0, ts
                targ_id, _ = tv.skip(tt.type)
            if len(ts.raw) == CORE_SPEC_MAX_LEN:
                raise _Fail("too deep struct/union/array nesting in target (-E2BIG)")
            ts.accs.append(_Acc(targ_id, lacc.idx, None))
            ts.raw.append(lacc.idx)
            ts.bit_offset += lacc.idx * tv.size(targ_id) * 8
    return 1, ts


def _ess_len(name: str) -> int:
    return essential_len(name) if "___" in name else len(name)


# ---------------------------------------------------------------------------- values


@dataclass(slots=True)
class _Res:
    """struct bpf_core_relo_res."""

    orig_val: int = 0
    new_val: int = 0
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_sz: int = 0
    new_sz: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0


class _Poison(Exception):
    """-EUCLEAN: poison the instruction."""


def _elem_size(v: BtfView, type_id: int) -> int:
    """Size of ``type_id`` with every array level stripped (modifiers skipped)."""
    tid, t = v.skip(type_id)
    while isinstance(t, T.Array):
        tid, t = v.skip(t.type)
    return v.size(tid)


def _calc_field(kind: int, spec: AccessSpec | None, big_endian: bool) -> tuple[int, int, int, bool]:
    """bpf_core_calc_field_relo(): (value, field size for mem-size rewrites, its type id,
    validate)."""
    if kind == FIELD_EXISTS:
        return (1 if spec is not None else 0), 0, 0, True
    if spec is None:
        raise _Poison
    v = spec.view
    acc = spec.accs[-1]
    if acc.name is None:  # a[n] accessor
        if kind == FIELD_BYTE_OFFSET:
            # The load/store size is the innermost element's (libbpf >= 1.6): for a[i] of
            # int a[2][3], a load reads an int, not the int[3] row.
            return spec.bit_offset // 8, _elem_size(v, acc.type_id), acc.type_id, True
        if kind == FIELD_BYTE_SIZE:
            return v.size(acc.type_id), 0, 0, True
        raise _Fail(f"relocation {KIND_NAMES[kind]} can't be applied to array access")
    t = v.t(acc.type_id)
    assert isinstance(t, (T.Struct, T.Union))
    m = t.members[acc.idx]
    ftid, mt = v.skip(m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = getattr(mt, "size", 0)
        if not isinstance(byte_sz, int) or byte_sz <= 0:
            raise _Fail(f"bitfield of [{ftid}] has no usable size")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        # The smallest power-of-two load that holds the whole bitfield.
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Fail("bitfield can't be read with a 64-bit load (-E2BIG)")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = v.size(ftid)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    # Bitfield offsets/sizes are ambiguous (we may disagree with the compiler): no validation,
    # except for signedness and the right shift.
    validate = not bitfield
    field_sz = ftype = 0
    if kind == FIELD_BYTE_OFFSET:
        val = byte_off
        if not bitfield:
            # For arrays the element size matters for the load/store size, not the array's.
            field_sz, ftype = _elem_size(v, ftid), ftid
    elif kind == FIELD_BYTE_SIZE:
        val = byte_sz
    elif kind == FIELD_SIGNED:
        val = int(
            (isinstance(mt, T.Enum) and mt.signed) or (isinstance(mt, T.Int) and mt.signed)
        )
        validate = True
    elif kind == FIELD_LSHIFT_U64:
        # libbpf computes this for the host's (= target's) byte order; the object's equals
        # it (checked before resolving).
        if big_endian:
            val = (8 - byte_sz) * 8 + (bit_off - byte_off * 8)
        else:
            val = 64 - (bit_off + bit_sz - byte_off * 8)
    elif kind == FIELD_RSHIFT_U64:
        val = 64 - bit_sz
        validate = True
    else:
        raise _Fail(f"unrecognized CO-RE relocation kind {kind}")
    return val & _U64, field_sz, ftype, validate


def _enum_value(t: T.Enum, idx: int) -> int:
    v = t.values[idx].value
    if t.is64:
        return v & _U64
    # struct btf_enum's val is __s32: assigning it to a __u64 sign-extends.
    v &= 0xFFFFFFFF
    return (v - (1 << 32)) & _U64 if v >= 1 << 31 else v


def _calc_one(kind: int, spec: AccessSpec | None, big_endian: bool) -> tuple[int, int, int, bool]:
    """Value for one side (local or target); raises _Poison / _Fail."""
    if kind in FIELD_KINDS:
        return _calc_field(kind, spec, big_endian)
    if kind in TYPE_KINDS:
        # bpf_core_calc_type_relo()
        if spec is None:
            return 0, 0, 0, True
        if kind == TYPE_ID_TARGET:
            return spec.root_type_id, 0, 0, False  # ids change during linking: no validation
        if kind in (TYPE_EXISTS, TYPE_MATCHES):
            return 1, 0, 0, True
        if kind == TYPE_SIZE:
            return spec.view.size(spec.root_type_id), 0, 0, True
        raise _Fail(f"unrecognized CO-RE relocation kind {kind}")
    if kind in ENUMVAL_KINDS:
        # bpf_core_calc_enumval_relo()
        if kind == ENUMVAL_EXISTS:
            return (1 if spec is not None else 0), 0, 0, True
        if spec is None:
            raise _Poison
        t = spec.view.t(spec.accs[0].type_id)
        assert isinstance(t, T.Enum)
        return _enum_value(t, spec.accs[0].idx), 0, 0, True
    raise _Fail(f"unrecognized CO-RE relocation kind {kind}")


def _calc_relo(local: AccessSpec, targ: AccessSpec | None, big_endian: bool) -> _Res:
    """bpf_core_calc_relo()."""
    res = _Res()
    kind = local.kind
    try:
        res.orig_val, res.orig_sz, res.orig_type_id, res.validate = _calc_one(kind, local, big_endian)
        res.new_val, res.new_sz, res.new_type_id, _ = _calc_one(kind, targ, big_endian)
    except _Poison:
        res.poison = True
        return res
    if kind in FIELD_KINDS and res.orig_sz != res.new_sz:
        assert targ is not None
        ot = local.view.t(res.orig_type_id)
        nt = targ.view.t(res.new_type_id)
        # Only two size changes are safe: pointers (32-bit kernel pointers read as u64) and
        # unsigned integers (zero extension keeps the value).
        if isinstance(ot, T.Ptr) and isinstance(nt, T.Ptr):
            return res
        if (
            isinstance(ot, T.Int) and isinstance(nt, T.Int)
            and ot.encoding != T.INT_SIGNED and nt.encoding != T.INT_SIGNED
        ):
            return res
        res.fail_memsz_adjust = True  # poisons only LDX/ST/STX
    return res


# ---------------------------------------------------------------------------- candidates


def _kinds_for(t: T.Type) -> frozenset[Kind]:
    if isinstance(t, T.Enum):
        return frozenset({Kind.ENUM, Kind.ENUM64})
    return frozenset({t.kind})


def _find(target: Spec, name: str, kinds: frozenset[Kind]) -> list[int]:
    ids = target.find_essential(name, kinds)
    if target.base is not None:
        base = [i for i in ids if i < target.start_id]
        if base:
            return base
    return ids


def find_candidates(local: Spec | BtfView, type_id: int, target: Spec) -> list[int]:
    """bpf_core_find_cands(): target ids whose essential name equals the local type's and
    whose kind is CO-RE compatible, through the target's name index. For a split target the
    base's candidates win; the split BTF's own are used only when the base has none
    (libbpf: vmlinux first, then module BTFs)."""
    view = local if isinstance(local, BtfView) else BtfView(local)
    t = view.t(type_id)
    if not t.name:
        raise CoreError(f"type [{type_id}] is anonymous: CO-RE has no candidates for it")
    return _find(target, t.name, _kinds_for(t))


def _calc_relo_insn(
    local: AccessSpec, cands: list[tuple[BtfView, int]] | None, big_endian: bool,
    sink: list[AccessSpec] | None = None,
) -> tuple[_Res, AccessSpec | None, list[tuple[BtfView, int]] | None]:
    """bpf_core_calc_relo_insn(): (result, chosen target spec, narrowed candidate list).
    Every matching candidate's spec is appended to ``sink`` (for MinimizeBtf)."""
    if local.kind == TYPE_ID_LOCAL:
        return _Res(local.root_type_id, local.root_type_id, validate=False), None, cands
    name = local.view.name(local.root_type_id)
    if not name:
        raise _Fail(f"<{_KIND_STR[local.kind]}> relocation doesn't support anonymous types")
    assert cands is not None
    targ_res: _Res | None = None
    targ_spec: AccessSpec | None = None
    kept: list[tuple[BtfView, int]] = []
    for i, (tv, cid) in enumerate(cands):
        matched, cs = _spec_match(local, tv, cid)
        if not matched:
            continue
        if sink is not None:
            sink.append(cs)
        cr = _calc_relo(local, cs, big_endian)
        if targ_res is None:
            targ_res, targ_spec = cr, cs
        elif targ_spec is not None and cs.bit_offset != targ_spec.bit_offset:
            err = _Fail(f"field offset ambiguity: {cs.bit_offset} != {targ_spec.bit_offset}")
            err.targ = targ_spec
            raise err
        elif cr.poison != targ_res.poison or cr.new_val != targ_res.new_val:
            err = _Fail(
                "relocation decision ambiguity: "
                f"{'failure' if cr.poison else 'success'} {cr.new_val} != "
                f"{'failure' if targ_res.poison else 'success'} {targ_res.new_val}"
            )
            err.targ = targ_spec
            raise err
        kept.append((tv, cid))
        del i
    if targ_res is None:
        # No candidate matched: the list stays as it is; existence checks give 0, values poison.
        return _calc_relo(local, None, big_endian), None, cands
    return targ_res, targ_spec, kept


# ---------------------------------------------------------------------------- patching


@dataclass(slots=True)
class _Insn:
    code: int
    regs: int
    off: int
    imm: int


def _insn_codec(big_endian: bool) -> struct.Struct:
    return struct.Struct(">BBhi" if big_endian else "<BBhi")


def _patch(
    insns: bytearray, idx: int, end: int, res: _Res, codec: struct.Struct, big_endian: bool
) -> tuple[int | None, dict[str, int] | None, bool]:
    """bpf_core_patch_insn() on ``insns`` (section bytes) at instruction ``idx`` (``end`` is
    the program's end). Returns (value the instruction held, mem size change, poisoned)."""
    o = idx * INSN_SIZE
    code, regs, off, imm = codec.unpack_from(insns, o)
    cls = code & 0x07

    def poison() -> None:
        if code == _LDIMM64 and idx + 1 < end:
            codec.pack_into(insns, o + INSN_SIZE, 0x85, 0, 0, POISON_IMM)
        codec.pack_into(insns, o, 0x85, 0, 0, POISON_IMM)

    if res.poison:
        poison()
        return None, None, True
    orig, new = res.orig_val, res.new_val
    if cls in (_ALU, _ALU64):
        if code & 0x08:  # BPF_X
            raise _Fail(f"insn #{idx} (ALU/ALU64) does not use an immediate")
        if res.validate and imm & _U64 != orig:
            raise _Fail(f"unexpected insn #{idx} (ALU/ALU64) value: got {imm & 0xFFFFFFFF}, "
                        f"exp {orig} -> {new}")
        imm32 = new & 0xFFFFFFFF
        codec.pack_into(insns, o, code, regs, off, imm32 - (1 << 32) if imm32 >= 1 << 31 else imm32)
        return imm, None, False
    if cls in (_LDX, _ST, _STX):
        if res.validate and off & _U64 != orig:
            raise _Fail(f"unexpected insn #{idx} (LDX/ST/STX) value: got {off & 0xFFFF}, "
                        f"exp {orig} -> {new}")
        if new > _SHRT_MAX:
            raise _Fail(f"insn #{idx} (LDX/ST/STX) value too big: {new} (-ERANGE)")
        if res.fail_memsz_adjust:
            # "accesses field incorrectly": only pointers and unsigned ints may change size.
            poison()
            return off, None, True
        mem = None
        if res.new_sz != res.orig_sz:
            have = _SIZE_BYTES.get(code & 0x18)
            if have != res.orig_sz:
                raise _Fail(f"insn #{idx} (LDX/ST/STX) unexpected mem size: got {have}, "
                            f"exp {res.orig_sz}")
            bsz = _BYTES_SIZE.get(res.new_sz)
            if bsz is None:
                raise _Fail(f"insn #{idx} (LDX/ST/STX) invalid new mem size: {res.new_sz}")
            code = (code & 0xE0) | bsz | cls
            mem = {"from": res.orig_sz, "to": res.new_sz}
        codec.pack_into(insns, o, code, regs, new, imm)
        return off, mem, False
    if cls == _LD:
        if code != _LDIMM64 or idx + 1 >= end:
            raise _Fail(f"insn #{idx} (LDIMM64) has unexpected form")
        src = (regs >> 4) if not big_endian else (regs & 0x0F)
        c2, r2, off2, imm2 = codec.unpack_from(insns, o + INSN_SIZE)
        if src != 0 or off != 0 or c2 != 0 or r2 != 0 or off2 != 0:
            raise _Fail(f"insn #{idx} (LDIMM64) has unexpected form")
        val = (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32)
        if res.validate and val != orig:
            raise _Fail(f"unexpected insn #{idx} (LDIMM64) value: got {val}, exp {orig} -> {new}")
        lo, hi = new & 0xFFFFFFFF, (new >> 32) & 0xFFFFFFFF
        codec.pack_into(insns, o, code, regs, off, lo - (1 << 32) if lo >= 1 << 31 else lo)
        codec.pack_into(insns, o + INSN_SIZE, c2, r2, off2, hi - (1 << 32) if hi >= 1 << 31 else hi)
        return val, None, False
    raise _Fail(f"trying to relocate unrecognized insn #{idx}, code:{code:#x}")


# ---------------------------------------------------------------------------- driver


@dataclass(slots=True)
class _Item:
    relo: CoreRelo
    prog: str | None
    prog_start: int  # first instruction of prog in its section
    prog_end: int


class CoreTarget:
    """A target spec prepared for repeated resolutions: candidate lists by local name and a
    bounded cache of decoded target types (``max_types``, oldest dropped first), so a daemon
    serving many ``ResolveCore`` calls against one spec does not decode ``task_struct`` each
    time. Holds no per-type state of the whole spec. Safe to share between threads (worst
    case: a type decoded twice).

    ``modules``: split specs over ``spec`` (kernel module BTF). As libbpf does with the running
    kernel's modules, their own types are searched only when ``spec`` has no candidate, all
    modules in the given order; a module candidate's TYPE_ID_TARGET is its id in that module.
    """

    def __init__(self, spec: Spec, *, modules: Sequence[Spec] = (), max_types: int = 4096,
                 max_names: int = 4096) -> None:
        self.spec = spec
        self.view = BtfView(spec, limit=max_types)
        self.modules = [(m, BtfView(m, limit=max_types)) for m in modules]
        self.max_names = max_names
        self._cands: dict[tuple[str, frozenset[Kind]], list[tuple[BtfView, int]]] = {}

    def candidates(self, name: str, kinds: frozenset[Kind]) -> list[tuple[BtfView, int]]:
        """bpf_core_find_cands() for a local type called ``name`` of ``kinds``: (view, id)."""
        key = (name, kinds)
        found = self._cands.get(key)
        if found is None:
            found = [(self.view, i) for i in _find(self.spec, name, kinds)]
            if not found:
                for m, view in self.modules:
                    found.extend((view, i) for i in m.find_essential(name, kinds) if i >= m.start_id)
            if len(self._cands) >= self.max_names:
                BtfView._evict(self._cands)  # type: ignore[arg-type]
            self._cands[key] = found
        return found


class _Engine:
    """State of one resolution: views, the candidate cache, section buffers."""

    def __init__(self, local: Spec, target: Spec | CoreTarget, big_endian: bool) -> None:
        self.lv = BtfView(local)
        self.core = target if isinstance(target, CoreTarget) else CoreTarget(target, max_types=0)
        self.tv = self.core.view
        self.big_endian = big_endian
        self._found: dict[int, list[tuple[BtfView, int]]] = {}  # reused across restarts
        self.sink: list[AccessSpec] | None = None  # matching target specs, when minimizing

    def candidates(self, type_id: int) -> list[tuple[BtfView, int]]:
        found = self._found.get(type_id)
        if found is None:
            t = self.lv.t(type_id)
            if not t.name:
                raise _Fail("target candidate search failed: anonymous local type (-EINVAL)")
            found = self._found[type_id] = self.core.candidates(t.name, _kinds_for(t))
        return list(found)

    def resolve(
        self, relo: CoreRelo, cache: dict[int, list[tuple[BtfView, int]]], rec: CoreRecord
    ) -> tuple[_Res, AccessSpec, AccessSpec | None, int]:
        """bpf_core_resolve_relo() + bpf_core_calc_relo_insn(): (result, local spec,
        target spec, candidate count). ``rec`` gets the local spec (and, on an ambiguity,
        the first matching candidate) even when this raises."""
        try:
            local = _parse_spec(self.lv, relo.type_id, relo.access, relo.kind)
        except _Fail as e:
            t = self.lv.t(relo.type_id)
            raise _Fail(
                f"parsing [{relo.type_id}] {_KIND_LOWER[t.kind]} {t.name or '<anon>'} + "
                f"{relo.access} failed: {e}"
            ) from None
        rec.local_spec = _format_spec(local)
        cands = None
        if relo.kind != TYPE_ID_LOCAL:
            cands = cache.get(relo.type_id)
            if cands is None:
                cands = cache[relo.type_id] = self.candidates(relo.type_id)
        n = len(cands) if cands is not None else 0
        rec.candidates = n
        try:
            res, targ, kept = _calc_relo_insn(local, cands, self.big_endian, self.sink)
        except _Fail as e:
            if e.targ is not None:
                _fill_target(rec, e.targ)
            raise
        if cands is not None and kept is not None:
            cache[relo.type_id] = kept
        return res, local, targ, n


def _base_record(item: _Item, lv: BtfView) -> CoreRecord:
    r = item.relo
    t = lv.t(r.type_id)
    sec_insn = r.insn_off // INSN_SIZE
    return CoreRecord(
        sec=r.sec,
        prog=item.prog or "",
        insn=sec_insn - item.prog_start,
        sec_insn=sec_insn,
        relo_idx=r.relo_idx,
        order=r.order,
        kind=KIND_NAMES[r.kind] if 0 <= r.kind < len(KIND_NAMES) else f"UNKNOWN({r.kind})",
        kind_id=r.kind,
        type_id=r.type_id,
        type_kind=_KIND_LOWER[t.kind] if t.id else "void",
        type_name=t.name,
        access=r.access,
    )


def _fill_target(rec: CoreRecord, targ: AccessSpec) -> None:
    rec.target_btf = targ.view.spec.name or None
    rec.target_spec = _format_spec(targ)
    rec.target_type_id = targ.root_type_id
    rec.target_type_name = targ.view.name(targ.root_type_id)
    if targ.kind in FIELD_KINDS:
        rec.target_access = ":".join(str(x) for x in targ.raw)
        rec.target_bit_offset = targ.bit_offset


def _fill(rec: CoreRecord, res: _Res, local: AccessSpec, targ: AccessSpec | None, n: int) -> None:
    if targ is not None:
        _fill_target(rec, targ)
    if res.poison:
        rec.status = RecordStatus.POISON
    else:
        rec.status = RecordStatus.OK
        rec.new_val = res.new_val


def _run(
    eng: _Engine,
    items: list[_Item],
    obj_sections: dict[str, bytearray] | None,
    codec: struct.Struct,
) -> tuple[list[CoreRecord], dict[str, bytearray] | None]:
    """The whole-object pass with libbpf's per-program failure semantics (see the module
    docstring): restart without a program each time one of its relocations fails."""
    excluded: set[tuple[str, str]] = set()
    final: dict[int, CoreRecord] = {}
    lv = eng.lv
    cache: dict[int, list[tuple[BtfView, int]]] = {}
    secs = {k: bytearray(v) for k, v in obj_sections.items()} if obj_sections is not None else None
    tentative: dict[int, CoreRecord] = {}
    # State before each program's first record: a restart without program P resumes there
    # (what precedes P cannot depend on P), instead of redoing the whole object.
    snaps: dict[tuple[str, str], tuple[int, dict[int, list[tuple[BtfView, int]]],
                                       dict[str, bytearray] | None]] = {}
    i = 0
    while i < len(items):
        item = items[i]
        if item.prog is None:
            rec = _base_record(item, lv)
            rec.status = RecordStatus.SKIPPED
            rec.error = "no function symbol holds this instruction (libbpf skips it)"
            final[i] = rec
            i += 1
            continue
        key = (item.relo.sec, item.prog)
        if key in excluded:
            i += 1
            continue
        if key not in snaps:
            snaps[key] = (i, dict(cache),
                          {k: bytearray(v) for k, v in secs.items()} if secs is not None else None)
        rec = _base_record(item, lv)
        buf = secs[item.relo.sec] if secs is not None else None
        idx = rec.sec_insn
        o = idx * INSN_SIZE
        width = INSN_SIZE
        if buf is not None:
            c = buf[o]
            rec.insn_class = "LDIMM64" if c == _LDIMM64 else _CLASS_NAMES.get(c & 7, "?")
            width = 2 * INSN_SIZE if c == _LDIMM64 and idx + 1 < item.prog_end else INSN_SIZE
            rec.orig_insn = bytes(buf[o : o + width]).hex()
        try:
            res, local, targ, n = eng.resolve(item.relo, cache, rec)
            _fill(rec, res, local, targ, n)
            if buf is not None:
                held, mem, poisoned = _patch(buf, idx, item.prog_end, res, codec, eng.big_endian)
                rec.orig_val = held
                rec.mem_size = mem
                if poisoned:
                    rec.status, rec.new_val, rec.orig_val = RecordStatus.POISON, None, None
                rec.new_insn = bytes(buf[o : o + width]).hex()
            elif not res.poison:
                # No instruction: report what the compiler should have emitted, and the size
                # change a load/store of the field would get.
                rec.orig_val = res.orig_val
                if res.orig_sz != res.new_sz:
                    rec.mem_size = {"from": res.orig_sz, "to": res.new_sz}
                    if res.fail_memsz_adjust:
                        rec.error = ("a load/store of this field would be poisoned: only pointers "
                                     "and unsigned integers may change size")
        except (_Fail, BTFError) as e:
            rec.status = RecordStatus.ERROR
            rec.new_val = None
            rec.error = str(e)
            tentative[i] = rec
            # Keep this run's records of the failing program (nothing of it gets patched);
            # redo what follows its first record without it.
            start, snap_cache, snap_secs = snaps[key]
            for j in [j for j in tentative if j >= start]:
                r = tentative.pop(j)
                if (r.sec, r.prog) == key:
                    r.new_insn = None
                    final[j] = r
            for k2 in [k2 for k2, v in snaps.items() if v[0] > start]:
                del snaps[k2]
            excluded.add(key)
            cache = dict(snap_cache)
            secs = {k: bytearray(v) for k, v in snap_secs.items()} if snap_secs is not None else None
            i = start
            continue
        tentative[i] = rec
        i += 1
    final.update(tentative)
    out: list[CoreRecord] = []
    for i, item in enumerate(items):
        rec_ = final.get(i)
        if rec_ is None:
            rec_ = _base_record(item, lv)
            rec_.status = RecordStatus.SKIPPED
            rec_.error = "an earlier relocation of this program failed"
        out.append(rec_)
    return out, secs


def _check_byte_order(what: str, order: str, target: Spec | CoreTarget) -> None:
    """libbpf relocates for the kernel it runs on, whose byte order the target BTF has; an
    object of the other order gets wrong bitfield shifts and instruction encodings."""
    spec = target.spec if isinstance(target, CoreTarget) else target
    if order != spec.byte_order:
        arch = "bpfeb" if spec.byte_order == "big" else "bpfel"
        raise ByteOrderError(
            f"{what} is {order}-endian, target {spec.name or 'BTF'} is {spec.byte_order}-endian: "
            f"build the object for the target (clang -target {arch})"
        )


def resolve_object(
    obj: bytes | BpfObject, target: Spec | CoreTarget, *, want_patched: bool = False,
    _sink: list[AccessSpec] | None = None,
) -> CoreResult:
    """Resolve every CO-RE relocation of a BPF object against ``target`` (a spec, or a
    :class:`CoreTarget` kept across calls to reuse decoded types).

    ``obj`` is the object's bytes (or an already parsed :class:`BpfObject`). Returns the
    records in ``.BTF.ext`` order and, with ``want_patched``, each program's relocated
    instructions (``{(section, program): bytes}``; programs with a failed relocation are
    left out, as a loader would not load them). Raises :class:`ObjectError` for a malformed
    object, :class:`ByteOrderError` when the object's byte order is not the target's; a
    relocation libbpf would refuse is a record with status ``error``, not an exception. No I/O.
    """
    o = obj if isinstance(obj, BpfObject) else parse_object(obj)
    relos = o.ext.core_relos if o.ext is not None else []
    items: list[_Item] = []
    for r in relos:
        ps = o.sections.get(r.sec)
        if ps is None:
            raise ObjectError(f".BTF.ext: core_relo #{r.relo_idx} names section {r.sec!r}, which "
                              "is not a program section of this object", offset=r.ext_off)
        if r.insn_off % INSN_SIZE:
            raise ObjectError(
                f".BTF.ext: core_relo #{r.relo_idx} of {r.sec}: insn_off {r.insn_off} is not a "
                f"multiple of {INSN_SIZE} (not the start of an instruction)", offset=r.ext_off
            )
        if r.insn_off >= ps.size:
            raise ObjectError(
                f".BTF.ext: core_relo #{r.relo_idx} of {r.sec} points at byte {r.insn_off}, "
                f"outside the section's {ps.size // INSN_SIZE} instructions", offset=r.ext_off
            )
        f = ps.function_at(r.insn_off // INSN_SIZE)
        if f is None:
            items.append(_Item(r, None, 0, ps.size // INSN_SIZE))
        else:
            items.append(_Item(r, f.name, f.insn, f.insn + f.count))
    _check_byte_order("object", o.byte_order, target)
    big = o.byte_order == "big"
    eng = _Engine(o.btf, target, big)
    eng.sink = _sink
    sections = {name: o.section_bytes(name) for name in {r.sec for r in relos}}
    records, secs = _run(eng, items, {k: bytearray(v) for k, v in sections.items()}, _insn_codec(big))
    result = CoreResult(records)
    if want_patched:
        failed = {(r.sec, r.prog) for r in records if r.status == RecordStatus.ERROR}
        for ps in o.sections.values():
            buf = secs.get(ps.name) if secs is not None else None
            data = bytes(buf) if buf is not None else o.section_bytes(ps.name)
            for fn in ps.functions:
                if (ps.name, fn.name) in failed:
                    continue
                lo, hi = fn.insn * INSN_SIZE, (fn.insn + fn.count) * INSN_SIZE
                result.programs[(ps.name, fn.name)] = data[lo:hi]
    return result


def resolve_records(
    local_btf: Any, records: Iterable[RecordInput] | Sequence[RecordInput], target: Spec | CoreTarget
) -> CoreResult:
    """Resolve bare relocation records (no instructions) against ``target``.

    ``local_btf`` is the object's ``.BTF`` (bytes or a :class:`Spec`). With no instruction to
    validate or patch, each record carries the computed ``new_val`` (and ``orig_val``: the
    value the compiler should have put in the instruction), ``mem_size`` when a load/store
    of that field would change size, and ``poison``/``error`` as libbpf decides them before
    patching. ``prog`` is empty and ``insn`` equals ``sec_insn``; each section counts as one
    program for libbpf's failure semantics (an error excludes the rest of its section).
    """
    local = local_btf if isinstance(local_btf, Spec) else Spec(local_btf, name=".BTF")
    items: list[_Item] = []
    for i, r in enumerate(records):
        if r.type_id < 0 or r.type_id >= local.next_id:
            raise CoreError(f"record #{i} refers to type [{r.type_id}], but the local BTF has "
                            f"only {local.next_id - 1} types")
        if r.insn_off < 0 or r.insn_off % INSN_SIZE:
            raise CoreError(f"record #{i}: insn_off {r.insn_off} is not a multiple of 8")
        if r.access.count(":") + 1 > CORE_SPEC_MAX_LEN:
            raise CoreError(f"record #{i}: access string deeper than {CORE_SPEC_MAX_LEN} levels")
        relo = CoreRelo(r.sec, r.insn_off, r.type_id, -1, r.kind, r.access, i, i, 0)
        items.append(_Item(relo, "", 0, 1 << 30))
    _check_byte_order("local BTF", local.byte_order, target)
    big = local.byte_order == "big"
    eng = _Engine(local, target, big)
    out, _ = _run(eng, items, None, _insn_codec(big))
    return CoreResult(out)
