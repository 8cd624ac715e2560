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
    """Members with offsets, sizes and bit positions, holes and padding (like pahole)."""
    t = spec.resolve(tid)
    if not isinstance(t, (T.Struct, T.Union)):
        return f"{type_name(spec, tid)}: size {_size(spec, tid)}\n"
    kw = "union" if isinstance(t, T.Union) else "struct"
    out = [f"{kw} {t.name or '(anon)'} {{"]
    end = 0  # byte just past the previous member (structs)
    holes = 0
    for m in t.members:
        sz = _size(spec, m.type)
        off = m.bit_offset // 8
        if isinstance(t, T.Struct) and m.bitfield_size == 0 and off > end:
            out.append(f"\n\t/* XXX {off - end} byte{'s' if off - end != 1 else ''} hole, try to pack */\n")
            holes += 1
        decl = f"\t{type_name(spec, m.type)} {m.name or '(anon)'}"
        if m.bitfield_size:
            decl += f":{m.bitfield_size}"
            where = f"/* {off:5d}:{m.bit_offset % 8:2d} {sz:4d} */"
            end = max(end, (m.bit_offset + m.bitfield_size + 7) // 8)
        else:
            where = f"/* {off:5d} {sz:7d} */"
            end = max(end, off + sz)
        out.append(f"{decl + ';':<48} {where}")
    out.append("")
    out.append(f"\t/* size: {t.size}, members: {len(t.members)}, holes: {holes} */")
    if isinstance(t, T.Struct) and t.size > end:
        out.append(f"\t/* padding: {t.size - end} */")
    out.append("};")
    return "\n".join(out) + "\n"
