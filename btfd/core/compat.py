"""Type views and compatibility rules of CO-RE (ported from libbpf's relo_core.c).

:class:`BtfView` wraps a :class:`~btfd.btf.Spec` with a small decode cache that lives as
long as one resolution call (never per type of a whole vmlinux). The three relations libbpf
uses to accept a candidate are here: :func:`fields_are_compat` (a matched field's type),
:func:`types_are_compat` (TYPE_EXISTS / TYPE_SIZE / TYPE_ID_TARGET) and :func:`types_match`
(TYPE_MATCHES).
"""

from __future__ import annotations

from typing import Any

from ..btf import BTFCycleError, Kind, Spec
from ..btf import types as T
from ..btf.index import essential as _essential

__all__ = [
    "BtfView",
    "essential_len",
    "fields_are_compat",
    "types_are_compat",
    "types_match",
    "names_match",
    "kind_core_compat",
    "COMPAT_LEVEL",
]

#: libbpf passes this recursion budget to __bpf_core_types_are_compat/__bpf_core_types_match.
COMPAT_LEVEL = 32
#: Mirrors the `depth = 32` guard of those functions' goto loops.
_LOOP_DEPTH = 32

_MODS = (T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)
_COMPOSITE = (T.Struct, T.Union)


class BtfView:
    """A spec plus a cache of decoded types and sizes: per call by default, or bounded to
    ``limit`` entries (oldest dropped first) when kept across calls (see ``CoreTarget``)."""

    __slots__ = ("spec", "limit", "_types", "_sizes")

    def __init__(self, spec: Spec, limit: int = 0) -> None:
        self.spec = spec
        self.limit = limit
        self._types: dict[int, T.Type] = {}
        self._sizes: dict[int, int] = {}

    def t(self, tid: int) -> T.Type:
        t = self._types.get(tid)
        if t is None:
            t = self.spec.type(tid)
            if self.limit and len(self._types) >= self.limit:
                self._evict(self._types)
            self._types[tid] = t
        return t

    @staticmethod
    def _evict(d: dict[int, Any]) -> None:
        try:
            del d[next(iter(d))]
        except (StopIteration, KeyError, RuntimeError):  # emptied/changed by another thread
            pass

    def skip(self, tid: int) -> tuple[int, T.Type]:
        """libbpf's skip_mods_and_typedefs(): (id, type) behind modifiers and typedefs."""
        for _ in range(_LOOP_DEPTH * 8):
            t = self.t(tid)
            if not isinstance(t, _MODS):
                return tid, t
            tid = t.type
        raise BTFCycleError(f"modifier/typedef chain from [{tid}] does not end (a cycle?)")

    def size(self, tid: int) -> int:
        """btf__resolve_size()."""
        s = self._sizes.get(tid)
        if s is None:
            s = self.spec.size_of(tid)
            if self.limit and len(self._sizes) >= self.limit:
                self._evict(self._sizes)
            self._sizes[tid] = s
        return s

    def name(self, tid: int) -> str:
        return self.t(tid).name


def essential_len(name: str) -> int:
    """bpf_core_essential_name_len(), in characters of ``name``."""
    return len(_essential(name.encode()).decode("utf-8", "replace")) if "___" in name else len(name)


def _ess(name: str) -> str:
    return name[: essential_len(name)]


def _is_enum(t: T.Type) -> bool:
    return isinstance(t, T.Enum)


def kind_core_compat(a: T.Type, b: T.Type) -> bool:
    """btf_kind_core_compat(): same kind, or ENUM vs ENUM64."""
    return a.kind == b.kind or (_is_enum(a) and _is_enum(b))


def fields_are_compat(lv: BtfView, lid: int, tv: BtfView, tid: int) -> bool:
    """bpf_core_fields_are_compat(): may a local field's type be relocated to the target's?"""
    for _ in range(_LOOP_DEPTH * 8):
        lid, lt = lv.skip(lid)
        tid, tt = tv.skip(tid)
        if isinstance(lt, _COMPOSITE) and isinstance(tt, _COMPOSITE):
            return True
        if not kind_core_compat(lt, tt):
            return False
        if isinstance(lt, (T.Ptr, T.Float)):
            return True
        if isinstance(lt, (T.Fwd, T.Enum)):
            # One anonymous, or the same flavor-less names.
            ln, tn = _ess(lt.name), _ess(tt.name)
            return not ln or not tn or ln == tn
        if isinstance(lt, T.Int):
            assert isinstance(tt, T.Int)
            # Reject deprecated bitfield-like integers only.
            return lt.offset == 0 and tt.offset == 0
        if isinstance(lt, T.Array):
            assert isinstance(tt, T.Array)
            lid, tid = lt.type, tt.type
            continue
        return False
    raise BTFCycleError("array chain too deep while comparing fields")


def types_are_compat(lv: BtfView, lid: int, tv: BtfView, tid: int, level: int = COMPAT_LEVEL) -> int:
    """__bpf_core_types_are_compat(): 1 compatible, 0 not, -1 error (too deep)."""
    if not kind_core_compat(lv.t(lid), tv.t(tid)):
        return 0
    depth = _LOOP_DEPTH
    while True:
        depth -= 1
        if depth < 0:
            return -1
        lid, lt = lv.skip(lid)
        tid, tt = tv.skip(tid)
        if not kind_core_compat(lt, tt):
            return 0
        if isinstance(lt, (T.Void, T.Struct, T.Union, T.Enum, T.Fwd)):
            return 1
        if isinstance(lt, T.Int):
            assert isinstance(tt, T.Int)
            return int(lt.offset == 0 and tt.offset == 0)
        if isinstance(lt, (T.Ptr, T.Array)):
            assert isinstance(tt, (T.Ptr, T.Array))
            lid, tid = lt.type, tt.type
            continue
        if isinstance(lt, T.FuncProto):
            assert isinstance(tt, T.FuncProto)
            if len(lt.params) != len(tt.params):
                return 0
            for lp, tp in zip(lt.params, tt.params, strict=True):
                if level <= 0:
                    return -1
                r = types_are_compat(lv, lv.skip(lp.type)[0], tv, tv.skip(tp.type)[0], level - 1)
                if r <= 0:
                    return r
            lid, tid = lv.skip(lt.return_type)[0], tv.skip(tt.return_type)[0]
            continue
        # libbpf warns "unexpected kind %s relocated" and says no.
        return 0


def names_match(ln: str, tn: str) -> bool:
    """bpf_core_names_match(): an anonymous target matches only an anonymous local; else the
    essential names must be equal."""
    if not tn:
        return not ln
    return _ess(ln) == _ess(tn)


def _enums_match(lt: T.Enum, tt: T.Enum) -> bool:
    if lt.size != tt.size or len(lt.values) > len(tt.values):
        return False
    tnames = [v.name for v in tt.values]
    return all(any(names_match(lv.name, n) for n in tnames) for lv in lt.values)


def _composites_match(
    lv: BtfView, lt: T.Struct | T.Union, tv: BtfView, tt: T.Struct | T.Union, behind_ptr: bool, level: int
) -> int:
    if len(lt.members) > len(tt.members):
        return 0
    for lm in lt.members:
        matched = False
        for tm in tt.members:
            if not names_match(lm.name, tm.name):
                continue
            r = types_match(lv, lm.type, tv, tm.type, behind_ptr, level - 1)
            if r < 0:
                return r
            if r > 0:
                matched = True
                break
        if not matched:
            return 0
    return 1


def types_match(
    lv: BtfView, lid: int, tv: BtfView, tid: int, behind_ptr: bool = False, level: int = COMPAT_LEVEL
) -> int:
    """__bpf_core_types_match() (TYPE_MATCHES): 1 match, 0 not, -1 error (too deep)."""
    if level <= 0:
        return -1
    depth = _LOOP_DEPTH
    while True:
        depth -= 1
        if depth < 0:
            return -1
        lid, lt = lv.skip(lid)
        tid, tt = tv.skip(tid)
        # The name check happens after typedefs are skipped.
        if not names_match(lt.name, tt.name):
            return 0
        lk, tk = lt.kind, tt.kind
        if isinstance(lt, T.Void):
            return int(lk == tk)
        if isinstance(lt, T.Fwd):
            lf = lt.is_union
            if behind_ptr:
                if lk == tk:
                    assert isinstance(tt, T.Fwd)
                    return int(lf == tt.is_union)
                # kflag of a FWD says struct (0) or union (1).
                return int((tk == Kind.STRUCT and not lf) or (tk == Kind.UNION and lf))
            if lk != tk:
                return 0
            assert isinstance(tt, T.Fwd)
            return int(lf == tt.is_union)
        if isinstance(lt, T.Enum):
            if not isinstance(tt, T.Enum):
                return 0
            return int(_enums_match(lt, tt))
        if isinstance(lt, _COMPOSITE):
            if behind_ptr:
                if lk == tk:
                    return 1
                if not isinstance(tt, T.Fwd):
                    return 0
                return int((lk == Kind.UNION) == tt.is_union)
            if lk != tk:
                return 0
            assert isinstance(tt, _COMPOSITE)
            return _composites_match(lv, lt, tv, tt, behind_ptr, level)
        if isinstance(lt, T.Int):
            if not isinstance(tt, T.Int):
                return 0
            return int(lt.size == tt.size and lt.signed == tt.signed)
        if isinstance(lt, T.Ptr):
            if not isinstance(tt, T.Ptr):
                return 0
            behind_ptr = True
            lid, tid = lt.type, tt.type
            continue
        if isinstance(lt, T.Array):
            if not isinstance(tt, T.Array) or lt.nelems != tt.nelems:
                return 0
            lid, tid = lt.type, tt.type
            continue
        if isinstance(lt, T.FuncProto):
            if not isinstance(tt, T.FuncProto) or len(lt.params) != len(tt.params):
                return 0
            for lp, tp in zip(lt.params, tt.params, strict=True):
                r = types_match(lv, lp.type, tv, tp.type, behind_ptr, level - 1)
                if r <= 0:
                    return r
            lid, tid = lt.return_type, tt.return_type
            continue
        return 0
