"""MinimizeBtf: the smallest BTF that gives a set of objects the same CO-RE answers as the full
target (what ``bpftool gen min_core_btf`` does; the marking rules are bpftool's btfgen ones).

For every relocation of every object, each target candidate that *matched* (not only the
first, so that ambiguities and the per-object candidate narrowing come out the same) marks:

- field relocations: the root type, and along the target access path each struct/union with
  only the accessed member, each member's type, array element types (btfgen_record_field_relo);
- TYPE_EXISTS / TYPE_SIZE / TYPE_ID_TARGET: the type and what it refers to, following pointers
  but not struct members (btfgen_mark_type with follow_pointers);
- TYPE_MATCHES: the type with all members, recursively, stopping at structs behind pointers
  (btfgen_mark_type_match);
- ENUMVAL_*: the whole enum.

Marked types keep their original order; struct/union keep their size and the original bit
offsets of the members they keep; references to unmarked types become void. The result is a
standalone BTF (also for a split target). Type ids differ from the full target's, so
TYPE_ID_TARGET values differ by the returned id map, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..btf import Spec
from ..btf import types as T
from .compat import BtfView
from .errors import CoreError
from .obj import BpfObject
from .relo import ENUMVAL_KINDS, FIELD_KINDS, TYPE_MATCHES, AccessSpec, CoreTarget, resolve_object

__all__ = ["MinBtf", "minimize", "minimize_btf"]

_MODS = (T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)


@dataclass(frozen=True, slots=True)
class MinBtf:
    """``types``: the kept types renumbered from 1 (i-th type has id 1+i, references use the
    new ids); ``id_map``: target id -> new id; ``btf``: the encoded blob."""

    types: list[T.Type]
    id_map: dict[int, int]
    btf: bytes


class _Marker:
    def __init__(self, view: BtfView) -> None:
        self.v = view
        self.types: set[int] = set()
        self.members: dict[int, set[int]] = {}  # composite id -> kept member indices
        self._seen: set[tuple[int, bool, bool]] = set()

    def member(self, tid: int, idx: int) -> None:
        self.members.setdefault(tid, set()).add(idx)

    def mark(self, tid: int, follow_ptrs: bool) -> None:
        """btfgen_mark_type()."""
        while tid and (tid, follow_ptrs, False) not in self._seen:
            self._seen.add((tid, follow_ptrs, False))
            self.types.add(tid)
            t = self.v.t(tid)
            if isinstance(t, T.Ptr):
                if not follow_ptrs:
                    return
                tid = t.type
            elif isinstance(t, _MODS):
                tid = t.type
            elif isinstance(t, T.Array):
                self.mark(t.index_type, follow_ptrs)
                tid = t.type
            elif isinstance(t, T.FuncProto):
                for p in t.params:
                    self.mark(p.type, follow_ptrs)
                tid = t.return_type
            elif isinstance(t, (T.Int, T.Float, T.Enum, T.Struct, T.Union, T.Fwd)):
                return
            else:
                raise CoreError(f"min BTF: unsupported kind {t.kind.name} of [{tid}]")

    def mark_match(self, tid: int, behind_ptr: bool) -> None:
        """btfgen_mark_type_match(): whole types, as TYPE_MATCHES compares them."""
        if not tid or (tid, behind_ptr, True) in self._seen:
            return
        self._seen.add((tid, behind_ptr, True))
        self.types.add(tid)
        t = self.v.t(tid)
        if isinstance(t, (T.Struct, T.Union)):
            if behind_ptr:
                return
            for i, m in enumerate(t.members):
                self.member(tid, i)
                self.mark_match(m.type, False)
        elif isinstance(t, (T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)):
            self.mark_match(t.type, behind_ptr)
        elif isinstance(t, T.Ptr):
            self.mark_match(t.type, True)
        elif isinstance(t, T.Array):
            self.mark_match(t.type, False)
            self.mark_match(t.index_type, False)
        elif isinstance(t, T.FuncProto):
            self.mark_match(t.return_type, False)
            for p in t.params:
                self.mark_match(p.type, False)
        elif not isinstance(t, (T.Int, T.Float, T.Enum, T.Fwd)):
            raise CoreError(f"min BTF: unsupported kind {t.kind.name} of [{tid}]")

    def record(self, spec: AccessSpec) -> None:
        """btfgen_record_reloc() for one matching target spec."""
        root = spec.root_type_id
        if spec.kind in FIELD_KINDS:
            # btfgen_record_field_relo(): walk the raw access path.
            self.mark(root, False)
            tid = root
            for idx in spec.raw[1:]:
                tid, t = self.v.skip(tid)
                if isinstance(t, (T.Struct, T.Union)):
                    self.member(tid, idx)
                    _, mt = self.v.skip(t.members[idx].type)
                    if isinstance(mt, T.Array) and mt.nelems == 0 and idx != len(t.members) - 1:
                        # is_flex_arr() asks whether this is the last member: keep the real
                        # last member so that a non-flexible zero-length array stays one.
                        self.member(tid, len(t.members) - 1)
                        self.mark(t.members[-1].type, False)
                    tid = t.members[idx].type
                    self.mark(tid, False)
                elif isinstance(t, T.Array):
                    tid = t.type
                else:
                    raise CoreError(f"min BTF: access path through {t.kind.name} [{tid}]")
        elif spec.kind == TYPE_MATCHES:
            self.mark_match(root, False)
        elif spec.kind in ENUMVAL_KINDS:
            self.mark(root, False)
        else:
            self.mark(root, True)


def minimize(objects: Iterable[bytes | BpfObject], target: Spec | CoreTarget, *,
             byte_order: str | None = None) -> MinBtf:
    """Build the minimal BTF of ``target`` for the CO-RE relocations of ``objects``.
    Raises :class:`~btfd.core.ObjectError` for a malformed object."""
    core = target if isinstance(target, CoreTarget) else CoreTarget(target, max_types=0)
    spec = core.spec
    marker = _Marker(core.view)
    for obj in objects:
        sink: list[AccessSpec] = []
        resolve_object(obj, core, _sink=sink)
        for s in sink:
            if s.view is not core.view:
                raise CoreError("min BTF: a candidate comes from module BTF; minimize against "
                                "one spec (a split module spec with its base) instead")
            marker.record(s)
    keep = sorted(marker.types)
    id_map = {old: i + 1 for i, old in enumerate(keep)}
    types = [_remap(marker.v.t(old), id_map, marker.members.get(old, set())) for old in keep]
    order = byte_order or spec.byte_order
    return MinBtf(types, id_map, encode(types, order))


def minimize_btf(objects: Sequence[bytes | BpfObject], target: Spec | CoreTarget) -> bytes:
    """The encoded minimal BTF (raw ``.BTF`` bytes a loader takes as custom BTF)."""
    return minimize(objects, target).btf


def _remap(t: T.Type, m: dict[int, int], members: set[int]) -> T.Type:
    def r(x: int) -> int:
        return m.get(x, 0)

    new_id = m[t.id]
    if isinstance(t, (T.Struct, T.Union)):
        kept = tuple(replace(mb, type=r(mb.type)) for i, mb in enumerate(t.members) if i in members)
        return replace(t, id=new_id, members=kept)
    if isinstance(t, T.Array):
        return replace(t, id=new_id, type=r(t.type), index_type=r(t.index_type))
    if isinstance(t, T.FuncProto):
        return replace(t, id=new_id, return_type=r(t.return_type),
                       params=tuple(replace(p, type=r(p.type)) for p in t.params))
    if isinstance(t, (T.Ptr, T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)):
        return replace(t, id=new_id, type=r(t.type))
    return replace(t, id=new_id)


def encode(types: Sequence[T.Type], byte_order: str = "little") -> bytes:
    """Encode renumbered types as a raw BTF blob (btfd.btf.writer)."""
    from ..btf.writer import encode_btf

    return encode_btf(list(types), byte_order=byte_order, base=None)
