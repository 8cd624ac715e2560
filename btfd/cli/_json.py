"""btfctl's JSON vocabulary (docs/JSON.md): the one converter from btfd's wire messages to the
objects every ``--format json`` prints, in both modes.

The daemon answers with protobuf messages; local work (``--file``, ``--target``) produces the
same messages with :mod:`btfd.convert` (the one converter from the type model to the
wire), so a type, a listing row or a CO-RE record reaches this module as a message either way
and is printed by the same code.

The rules (docs/JSON.md): field names and kind spelling are bpftool's ``btf dump -j`` ones
(``"kind": "STRUCT"``, ``bits_offset``, ``nr_elems``, ``"(anon)"`` for a type or member
without a name); every field of an object's kind is present, zero or not; 64-bit values are
JSON numbers; "not applicable" is ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["kind_name", "type_json", "summary_json", "info_json", "record_json", "write_lines",
           "ANON", "INT_ENCODING"]

#: bpftool's spelling of a missing name.
ANON = "(anon)"

#: BTF_INT_ENCODING bits as bpftool's -j prints them (several bits: joined with "|").
INT_ENCODING = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}


def kind_name(kind: int) -> str:
    """A kind number as JSON spells it: the wire enum's name without ``KIND_`` (the same
    names as :class:`btfd.btf.Kind`; a test keeps the two tables equal): ``STRUCT``,
    ``FUNC_PROTO``; an unknown number as ``UNKNOWN``, as bpftool does."""
    from ..v1 import btfd_pb2 as pb

    try:
        name = pb.Kind.Name(kind)
    except ValueError:
        return "UNKNOWN"
    return "UNKNOWN" if name == "KIND_UNSPECIFIED" else name.removeprefix("KIND_")


def _name(s: str) -> str:
    return s or ANON


def _int_encoding(bits: int) -> str:
    if bits in INT_ENCODING:
        return INT_ENCODING[bits]
    return "|".join(v for k, v in INT_ENCODING.items() if k and bits & k) or f"{bits:#x}"


def type_json(m: Any, *, extras: bool = True) -> dict[str, Any]:
    """A ``btfd.v1.Type`` as the type object of docs/JSON.md. ``extras``: also ``spec`` and
    ``c_decl`` (``lookup`` prints them; ``dump`` does not)."""
    k = kind_name(m.kind)
    d: dict[str, Any] = {"id": m.id, "kind": k, "name": _name(m.name)}
    if k == "INT":
        enc = m.int_encoding
        d.update(size=m.size, bits_offset=m.int_offset, nr_bits=m.int_bits, encoding=_int_encoding(enc))
    elif k in ("PTR", "TYPEDEF", "VOLATILE", "CONST", "RESTRICT", "TYPE_TAG"):
        d["type_id"] = m.type_id
    elif k == "ARRAY":
        d.update(type_id=m.type_id, index_type_id=m.index_type_id, nr_elems=m.nelems)
    elif k in ("STRUCT", "UNION"):
        d.update(size=m.size, vlen=len(m.members), members=[
            {"name": _name(x.name), "type_id": x.type_id, "bits_offset": x.bit_offset,
             "bitfield_size": x.bitfield_size} for x in m.members])
    elif k in ("ENUM", "ENUM64"):
        d.update(encoding="SIGNED" if m.is_signed else "UNSIGNED", size=m.size, vlen=len(m.values),
                 values=[{"name": v.name, "val": v.value if m.is_signed else v.unsigned_value}
                         for v in m.values])
    elif k == "FWD":
        d["fwd_kind"] = "union" if m.is_union else "struct"
    elif k in ("FUNC", "VAR"):
        d.update(type_id=m.type_id, linkage=m.linkage)
    elif k == "FUNC_PROTO":
        d.update(ret_type_id=m.type_id, vlen=len(m.params),
                 params=[{"name": _name(p.name), "type_id": p.type_id} for p in m.params])
    elif k == "DATASEC":
        d.update(size=m.size, vlen=len(m.vars),
                 vars=[{"type_id": v.type_id, "offset": v.offset, "size": v.size} for v in m.vars])
    elif k == "FLOAT":
        d["size"] = m.size
    elif k == "DECL_TAG":
        d.update(type_id=m.type_id, component_idx=m.component_idx)
    if extras:
        d.update(spec=m.spec, c_decl=m.c_decl)
    return d


def summary_json(m: Any) -> dict[str, Any]:
    """A ``btfd.v1.TypeSummary`` (a ``list`` row): ``id``, ``kind``, ``name``, ``size`` (0 for
    kinds without one)."""
    return {"id": m.id, "kind": kind_name(m.kind), "name": _name(m.name), "size": m.size}


def info_json(m: Any, grpc_socket: str) -> dict[str, Any]:
    """A ``btfd.v1.GetInfoResponse`` (``info``); ``socket`` is the gRPC socket asked."""
    specs = []
    for s in m.specs:
        specs.append({
            "name": s.name, "path": s.path, "loaded": s.loaded, "size": s.size,
            "type_count": s.type_count, "start_id": s.start_id, "byte_order": s.byte_order,
            "base": s.base, "mode": s.mode, "mmap_refused": s.mmap_refused, "note": s.note,
            "fd_socket": s.fd_socket, "index_bytes": dict(sorted(s.index_bytes.items())),
        })
    return {"version": m.version, "kernel_release": m.kernel_release, "socket": grpc_socket,
            "fd_socket": m.fd_socket, "specs": specs}


def record_json(m: Any) -> dict[str, Any]:
    """A ``btfd.v1.CoreRelocation`` (a ``core`` row). Values that only an ``ok`` record has
    (``new_val``, ``orig_val``) are ``null`` otherwise; ``mem_size`` is ``{"from", "to"}`` or
    ``null``; ``target_type_id``, ``target_access`` and ``error`` are ``null`` when unset."""
    ok = m.status == "ok"
    mem = {"from": m.mem_size_from, "to": m.mem_size_to} if m.mem_size_from or m.mem_size_to else None
    return {
        "sec": m.sec, "prog": m.prog, "insn": m.insn, "sec_insn": m.sec_insn, "kind": m.kind,
        "type_id": m.type_id, "type_name": _name(m.type_name), "access": m.access,
        "status": m.status, "new_val": m.new_val if ok else None, "orig_val": m.orig_val if ok else None,
        "mem_size": mem, "target_type_id": m.target_type_id or None,
        "target_access": m.target_access or None, "error": m.error or None,
    }


def write_lines(objs: Iterable[dict[str, Any]], out: TextIO) -> int:
    """JSON lines (one object a line); returns how many."""
    n = 0
    for o in objs:
        out.write(json.dumps(o) + "\n")
        n += 1
    return n
