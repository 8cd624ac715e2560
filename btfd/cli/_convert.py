"""A library type as the JSON object ``btfctl lookup --format json`` prints: the same object
the daemon's answer gives (protobuf's JSON mapping of ``btfd.v1.Type``), computed locally for
``--file`` without importing server code or protobuf."""

from __future__ import annotations

from typing import Any

from ..btf import Spec
from ..btf import types as T
from ..btf.format_c import format_type_c
from ..btf.kinds import Kind

__all__ = ["type_to_json"]

_LINKAGE = {0: "static", 1: "global", 2: "extern"}


def _drop_defaults(d: dict[str, Any]) -> dict[str, Any]:
    # proto3 JSON leaves out fields at their default (0, "", false, empty lists).
    return {k: v for k, v in d.items() if v not in (0, "", False, [], None) or v is True}


def type_to_json(spec: Spec, t: T.Type) -> dict[str, Any]:
    """Fields in field-number order; 64-bit integers as strings, enums by name (as protobuf's
    ``MessageToDict(..., preserving_proto_field_name=True)`` writes them)."""
    d: dict[str, Any] = {"id": t.id, "kind": f"KIND_{t.kind.name}" if t.kind else 0,
                         "name": t.name, "spec": spec.name}
    if isinstance(t, T.Int):
        d.update(size=t.size, is_signed=t.signed, int_encoding=t.encoding, int_bits=t.bits,
                 int_offset=t.offset)
    elif isinstance(t, (T.Ptr, T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)):
        d["type_id"] = t.type
    elif isinstance(t, T.Array):
        d.update(type_id=t.type, index_type_id=t.index_type, nelems=t.nelems)
    elif isinstance(t, (T.Struct, T.Union)):
        d["size"] = t.size
        d["members"] = [_drop_defaults({"name": m.name, "type_id": m.type, "bit_offset": m.bit_offset,
                                        "bitfield_size": m.bitfield_size}) for m in t.members]
    elif isinstance(t, T.Enum):
        d.update(size=t.size, is_signed=t.signed)
        vals = []
        for v in t.values:
            u = v.value & 0xFFFFFFFFFFFFFFFF
            s = u - (1 << 64) if u >= 1 << 63 else u
            vals.append(_drop_defaults({"name": v.name, "value": str(s) if s else 0,
                                        "unsigned_value": str(u) if u else 0}))
        d["values"] = vals
    elif isinstance(t, T.Fwd):
        d["is_union"] = t.is_union
    elif isinstance(t, (T.Func, T.Var)):
        d.update(type_id=t.type, linkage=_LINKAGE.get(t.linkage, str(t.linkage)))
    elif isinstance(t, T.FuncProto):
        d["type_id"] = t.return_type
        d["params"] = [_drop_defaults({"name": p.name, "type_id": p.type}) for p in t.params]
    elif isinstance(t, T.Datasec):
        d["size"] = t.size
        d["vars"] = [_drop_defaults({"type_id": v.type, "offset": v.offset, "size": v.size}) for v in t.vars]
    elif isinstance(t, T.Float):
        d["size"] = t.size
    elif isinstance(t, T.DeclTag):
        d.update(type_id=t.type, component_idx=t.component_idx)
    if t.kind != Kind.UNKN:
        d["c_decl"] = format_type_c(spec, t.id)
    order = ("id", "kind", "name", "spec", "size", "type_id", "members", "values", "is_signed",
             "int_encoding", "int_bits", "int_offset", "index_type_id", "nelems", "is_union",
             "params", "linkage", "vars", "component_idx", "c_decl")
    return _drop_defaults({k: d[k] for k in order if k in d})
