"""Encode BTF: the inverse of :class:`~btfd.btf.Spec` decoding (pure, no I/O).

Used for minimal BTF (MinimizeBtf), for name-sorted copies of a blob (the layout newer kernels
give vmlinux) and for test blobs of newer formats (the kind-layout header of kernels >= 7.1).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from . import types as T
from .header import BTF_MAGIC, BUILTIN_LAYOUT
from .kinds import Kind
from .spec import Spec

__all__ = ["encode_btf", "sort_by_name", "remap"]


class _Strings:
    def __init__(self, base_len: int) -> None:
        self.buf = bytearray(b"\0")
        self.base_len = base_len
        self.offs: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        if not s:
            return 0
        off = self.offs.get(s)
        if off is None:
            off = self.base_len + len(self.buf)
            self.buf += s.encode() + b"\0"
            self.offs[s] = off
        return off


def encode_btf(
    types: Sequence[T.Type],
    *,
    byte_order: str = "little",
    base: Spec | None = None,
    kind_layout: bool = False,
    extra_kinds: Sequence[tuple[int, int, int, bytes]] = (),
) -> bytes:
    """Raw BTF holding ``types``; the i-th gets id ``(base.next_id if base else 1) + i`` and
    the ids inside refer to that numbering (or to the base's ids).

    ``kind_layout`` writes the 32-byte header with a layout section describing every kind
    (kernels >= 7.1). ``extra_kinds`` appends records of kinds this library does not know,
    as ``(kind, vlen, size_or_type, payload)`` (only with ``kind_layout``, which then also
    describes them: info size 0 and element size ``len(payload) // vlen``) -- for tests.
    """
    o = "<" if byte_order == "little" else ">"
    strs = _Strings(0 if base is None else base.string_offsets_end)
    out = bytearray()
    u32 = struct.Struct(o + "I").pack
    rec = struct.Struct(o + "III").pack

    def head(t: T.Type, kind: int, vlen: int, st: int, kflag: bool = False) -> None:
        out.extend(rec(strs.add(t.name), (int(kflag) << 31) | (kind << 24) | vlen, st))

    for t in types:
        if isinstance(t, T.Int):
            head(t, Kind.INT, 0, t.size)
            out += u32((t.encoding << 24) | (t.offset << 16) | t.bits)
        elif isinstance(t, T.Ptr):
            head(t, Kind.PTR, 0, t.type)
        elif isinstance(t, T.Array):
            head(t, Kind.ARRAY, 0, 0)
            out += rec(t.type, t.index_type, t.nelems)
        elif isinstance(t, (T.Struct, T.Union)):
            kflag = any(m.bitfield_size for m in t.members)
            head(t, Kind.STRUCT if isinstance(t, T.Struct) else Kind.UNION, len(t.members), t.size, kflag)
            for m in t.members:
                off = (m.bitfield_size << 24) | m.bit_offset if kflag else m.bit_offset
                out += rec(strs.add(m.name), m.type, off)
        elif isinstance(t, T.Enum):
            head(t, Kind.ENUM64 if t.is64 else Kind.ENUM, len(t.values), t.size, t.signed)
            for v in t.values:
                if t.is64:
                    val = v.value & 0xFFFFFFFFFFFFFFFF
                    out += rec(strs.add(v.name), val & 0xFFFFFFFF, val >> 32)
                else:
                    out += struct.pack(o + "II", strs.add(v.name), v.value & 0xFFFFFFFF)
        elif isinstance(t, T.Fwd):
            head(t, Kind.FWD, 0, 0, t.is_union)
        elif isinstance(t, (T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)):
            head(t, t.kind, 0, t.type)
        elif isinstance(t, T.Func):
            head(t, Kind.FUNC, t.linkage, t.type)
        elif isinstance(t, T.FuncProto):
            head(t, Kind.FUNC_PROTO, len(t.params), t.return_type)
            for p in t.params:
                out += struct.pack(o + "II", strs.add(p.name), p.type)
        elif isinstance(t, T.Var):
            head(t, Kind.VAR, 0, t.type)
            out += u32(t.linkage)
        elif isinstance(t, T.Datasec):
            head(t, Kind.DATASEC, len(t.vars), t.size)
            for vs in t.vars:
                out += rec(vs.type, vs.offset, vs.size)
        elif isinstance(t, T.Float):
            head(t, Kind.FLOAT, 0, t.size)
        elif isinstance(t, T.DeclTag):
            head(t, Kind.DECL_TAG, 0, t.type)
            out += struct.pack(o + "i", t.component_idx)
        else:
            raise ValueError(f"cannot encode {type(t).__name__}")
    layout = list(BUILTIN_LAYOUT)
    for kind, vlen, st, payload in extra_kinds:
        if not kind_layout:
            raise ValueError("unknown kinds need kind_layout=True")
        while len(layout) <= kind:
            layout.append((0, 0))
        layout[kind] = (0, len(payload) // vlen if vlen else 0)
        out += rec(0, (kind << 24) | vlen, st) + payload
    hdr_len = 32 if kind_layout else 24
    type_len, str_len = len(out), len(strs.buf)
    # Upstream order (libbpf's writer, kernels >= 7.1): header, types, layout, strings.
    lay = b"".join(struct.pack(o + "BBH", i, e, 0) for i, e in layout) if kind_layout else b""
    str_off = type_len + len(lay)
    hdr = struct.pack(o + "HBBIIIII", BTF_MAGIC, 1, 0, hdr_len, 0, type_len, str_off, str_len)
    if kind_layout:
        hdr += struct.pack(o + "II", type_len, len(lay))
    return hdr + bytes(out) + lay + bytes(strs.buf)


def remap(t: T.Type, new_id: int, m: dict[int, int]) -> T.Type:
    """``t`` renumbered: its own id becomes ``new_id``, every reference goes through ``m``."""
    from dataclasses import replace

    def r(x: int) -> int:
        return m.get(x, x)

    if isinstance(t, (T.Struct, T.Union)):
        return replace(t, id=new_id, members=tuple(replace(x, type=r(x.type)) for x in t.members))
    if isinstance(t, T.Array):
        return replace(t, id=new_id, type=r(t.type), index_type=r(t.index_type))
    if isinstance(t, T.FuncProto):
        return replace(t, id=new_id, return_type=r(t.return_type),
                       params=tuple(replace(p, type=r(p.type)) for p in t.params))
    if isinstance(t, T.Datasec):
        return replace(t, id=new_id, vars=tuple(replace(v, type=r(v.type)) for v in t.vars))
    if hasattr(t, "type"):
        return replace(t, id=new_id, type=r(t.type))  # type: ignore[call-arg]
    return replace(t, id=new_id)


def sort_by_name(spec: Spec) -> tuple[bytes, dict[int, int]]:
    """A copy of a base spec laid out like newer kernels' vmlinux: anonymous types first (in
    their original order), then named types sorted by name (stable). Returns the blob and
    the id map old -> new."""
    if spec.base is not None:
        raise ValueError("sort_by_name takes a base spec")
    ids = list(spec.ids())
    names = {t: spec.type_name(t) for t in ids}
    order = [t for t in ids if not names[t]] + sorted((t for t in ids if names[t]),
                                                      key=lambda t: names[t].encode())
    m = {old: new for new, old in enumerate(order, start=1)}
    m[0] = 0
    types = [remap(spec.type(old), m[old], m) for old in order]
    return encode_btf(types, byte_order=spec.byte_order), m
