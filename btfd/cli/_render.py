"""Text renderings btfctl prints locally: type names and a pahole-style layout ("tree")."""

from __future__ import annotations

from ..btf import Spec
from ..btf import types as T

__all__ = ["type_name", "tree"]


def type_name(spec: Spec, tid: int, depth: int = 0) -> str:
    """A short C spelling of a type reference (``struct list_head *``, ``char[16]``)."""
    if depth > 16:
        return "..."
    t = spec.type(tid)
    if isinstance(t, T.Void):
        return "void"
    if isinstance(t, (T.Struct, T.Union, T.Enum, T.Fwd)):
        kw = ("union" if isinstance(t, T.Union) or (isinstance(t, T.Fwd) and t.is_union)
              else "enum" if isinstance(t, T.Enum) else "struct")
        return f"{kw} {t.name or '(anon)'}"
    if isinstance(t, T.Ptr):
        inner = spec.type(t.type)
        if isinstance(inner, T.FuncProto):
            return f"{type_name(spec, inner.return_type, depth + 1)} (*)(...)"
        return type_name(spec, t.type, depth + 1) + " *"
    if isinstance(t, T.Array):
        return f"{type_name(spec, t.type, depth + 1)}[{t.nelems}]"
    if isinstance(t, T.Const):
        return "const " + type_name(spec, t.type, depth + 1)
    if isinstance(t, T.Volatile):
        return "volatile " + type_name(spec, t.type, depth + 1)
    if isinstance(t, (T.Restrict, T.TypeTag)):
        return type_name(spec, t.type, depth + 1)
    if isinstance(t, T.FuncProto):
        return f"{type_name(spec, t.return_type, depth + 1)} (...)"
    return t.name or f"<{t.kind.name.lower()} {tid}>"


def _size(spec: Spec, tid: int) -> int:
    try:
        return spec.size_of(tid)
    except Exception:  # noqa: BLE001 - flexible arrays, void, functions: size unknown here
        return 0


def tree(spec: Spec, tid: int) -> str:
    """Members with offsets, sizes and bit positions, holes and padding, in pahole's terms:
    bitfields at ``unit-offset:bit`` of their storage unit, byte holes between members, and
    pahole's summary (size, cachelines, members; sum members, holes, sum holes; padding; last
    cacheline). Differences from ``pahole -F btf``: anonymous members are not expanded
    inline, bit holes are not reported, and type names are the short spellings above."""
    t = spec.resolve(tid)
    if not isinstance(t, (T.Struct, T.Union)):
        return f"{type_name(spec, tid)}: size {_size(spec, tid)}\n"
    kw = "union" if isinstance(t, T.Union) else "struct"
    out = [f"{kw} {t.name or '(anon)'} {{"]
    end = 0  # byte just past the previous member (structs)
    holes = sum_holes = sum_members = 0
    for m in t.members:
        sz = _size(spec, m.type)
        off = m.bit_offset // 8
        if isinstance(t, T.Struct) and m.bitfield_size == 0 and off > end:
            gap = off - end
            out.append(f"\n\t/* XXX {gap} byte{'s' if gap != 1 else ''} hole, try to pack */\n")
            holes += 1
            sum_holes += gap
        decl = f"\t{type_name(spec, m.type)} {m.name or '(anon)'}"
        if m.bitfield_size:
            decl += f":{m.bitfield_size}"
            unit = sz or 1
            unit_off = (m.bit_offset // (unit * 8)) * unit
            where = f"/* {unit_off:5d}:{m.bit_offset - unit_off * 8:2d} {sz:4d} */"
            end = max(end, unit_off + unit)
        else:
            where = f"/* {off:5d} {sz:5d} */"
            end = max(end, off + sz)
            sum_members += sz
        out.append(f"{decl + ';':<48} {where}")
    out.append("")
    lines = [f"size: {t.size}, cachelines: {(t.size + 63) // 64}, members: {len(t.members)}"]
    if holes:
        lines.append(f"sum members: {sum_members}, holes: {holes}, sum holes: {sum_holes}")
    if isinstance(t, T.Struct) and t.size > end:
        lines.append(f"padding: {t.size - end}")
    if t.size % 64:
        lines.append(f"last cacheline: {t.size % 64} bytes")
    out += [f"\t/* {x} */" for x in lines]
    out.append("};")
    return "\n".join(out) + "\n"
