"""The type model -> wire messages: the one converter from :mod:`btfd.btf` types and
:class:`btfd.core.CoreRecord` to ``btfd.v1`` messages (pure helpers, no I/O). The daemon
answers with them; btfctl's local modes build the same messages here and print them with the
same code as the daemon's answers (``btfd.cli._json``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .btf import Spec
from .btf import types as T
from .btf.kinds import Kind
from .v1 import btfd_pb2 as pb

__all__ = ["type_to_pb", "core_record_to_pb", "LINKAGE"]

LINKAGE = T.LINKAGE_NAMES  # the one table lives in btfd.btf.types


def type_to_pb(spec: Spec, t: T.Type, spec_name: str, c_decl: Callable[[Spec, int], str] | None) -> pb.Type:
    """The structured form of one type; ``c_decl`` formats its C declaration when given."""
    m = pb.Type(id=t.id, kind=int(t.kind), name=t.name, spec=spec_name)  # type: ignore[arg-type]
    if isinstance(t, T.Int):
        m.size, m.int_encoding, m.int_bits, m.int_offset = t.size, t.encoding, t.bits, t.offset
        m.is_signed = t.signed
    elif isinstance(t, (T.Ptr, T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)):
        m.type_id = t.type
    elif isinstance(t, T.Array):
        m.type_id, m.index_type_id, m.nelems = t.type, t.index_type, t.nelems
    elif isinstance(t, (T.Struct, T.Union)):
        m.size = t.size
        m.members.extend(
            pb.Member(name=x.name, type_id=x.type, bit_offset=x.bit_offset, bitfield_size=x.bitfield_size)
            for x in t.members
        )
    elif isinstance(t, T.Enum):
        m.size, m.is_signed = t.size, t.signed
        for v in t.values:
            u = v.value & 0xFFFFFFFFFFFFFFFF
            m.values.append(pb.EnumValue(name=v.name, value=u - (1 << 64) if u >= 1 << 63 else u,
                                         unsigned_value=u))
    elif isinstance(t, T.Fwd):
        m.is_union = t.is_union
    elif isinstance(t, T.Func):
        m.type_id, m.linkage = t.type, LINKAGE.get(t.linkage, str(t.linkage))
    elif isinstance(t, T.FuncProto):
        m.type_id = t.return_type
        m.params.extend(pb.Param(name=p.name, type_id=p.type) for p in t.params)
    elif isinstance(t, T.Var):
        m.type_id, m.linkage = t.type, LINKAGE.get(t.linkage, str(t.linkage))
    elif isinstance(t, T.Datasec):
        m.size = t.size
        m.vars.extend(pb.VarSecinfo(type_id=v.type, offset=v.offset, size=v.size) for v in t.vars)
    elif isinstance(t, T.Float):
        m.size = t.size
    elif isinstance(t, T.DeclTag):
        m.type_id, m.component_idx = t.type, t.component_idx
    if c_decl is not None and t.kind != Kind.UNKN:
        m.c_decl = c_decl(spec, t.id)
    return m


def core_record_to_pb(r: Any) -> pb.CoreRelocation:
    """A :class:`btfd.core.CoreRecord` as its protobuf message."""
    ms = r.mem_size or {}
    return pb.CoreRelocation(
        sec=r.sec, prog=r.prog, insn=r.insn, sec_insn=r.sec_insn, kind=r.kind, type_id=r.type_id,
        type_name=r.type_name, access=r.access, status=r.status,
        new_val=(r.new_val or 0) & 0xFFFFFFFFFFFFFFFF,
        orig_val=(r.orig_val or 0) & 0xFFFFFFFFFFFFFFFF,
        mem_size_from=ms.get("from", 0), mem_size_to=ms.get("to", 0),
        target_type_id=r.target_type_id or 0, target_access=r.target_access or "",
        error=r.error or "",
    )
