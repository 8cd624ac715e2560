"""``btfctl lookup --format tree``: a struct's layout as ``pahole`` prints it.

What pahole shows, by its rules as observed on ``pahole -F btf`` output: members with
``/* offset size */`` (bitfields as ``unit-offset:bit unit-size``), anonymous structs and
unions expanded inline, byte holes and bit holes, forced bitfield alignments (``:0``),
cacheline boundaries, tail padding of member structs ("last struct has N bytes of padding"),
and the summary (size, cachelines, members; sum members, holes, sum holes; bitfield bits and
bit holes; bit_padding; padding; paddings; last cacheline).

Not reproduced: pahole's inference of ``__attribute__((__aligned__(N)))`` on members and the
struct (and its "forced alignments" summary line): BTF records no alignment, pahole guesses it
from holes before cacheline-aligned members; we print the hole, not the guess.
"""

from __future__ import annotations

from ..btf import Spec
from ..btf import types as T

__all__ = ["type_name", "tree"]

_TYPE_SPACING = 26
_NAME_SPACING = 23
_CACHELINE = 64


def _size(spec: Spec, tid: int) -> int:
    try:
        return spec.size_of(tid)
    except Exception:  # noqa: BLE001 - flexible arrays, void, functions: size unknown here
        return 0


def _params(spec: Spec, fp: T.FuncProto, depth: int) -> str:
    if not fp.params:
        return "void"
    return ", ".join("..." if p.type == 0 and not p.name else type_name(spec, p.type, depth + 1)
                     for p in fp.params)


def type_name(spec: Spec, tid: int, depth: int = 0) -> str:
    """A type as pahole spells it in a member line (``struct list_head *``,
    ``const struct cred  *``, ``void * *``)."""
    if depth > 32:
        return "..."
    t = spec.type(tid)
    if isinstance(t, T.Void):
        return "void"
    if isinstance(t, (T.Struct, T.Union, T.Enum, T.Fwd)):
        kw = ("union" if isinstance(t, T.Union) or (isinstance(t, T.Fwd) and t.is_union)
              else "enum" if isinstance(t, T.Enum) else "struct")
        return f"{kw} {t.name}" if t.name else f"{kw} {{...}}"
    if isinstance(t, T.Ptr):
        inner = spec.type(t.type)
        if isinstance(inner, T.FuncProto):
            return f"{type_name(spec, inner.return_type, depth + 1)} (*)({_params(spec, inner, depth)})"
        qual_target = (isinstance(inner, (T.Const, T.Volatile))
                       and not isinstance(spec.type(inner.type), T.Ptr))
        return type_name(spec, t.type, depth + 1) + ("  *" if qual_target else " *")
    if isinstance(t, T.Array):
        return f"{type_name(spec, t.type, depth + 1)}[{t.nelems}]"
    if isinstance(t, (T.Const, T.Volatile)):
        q = "const" if isinstance(t, T.Const) else "volatile"
        if isinstance(spec.type(t.type), T.Ptr):  # a const pointer: `char * const`
            return f"{type_name(spec, t.type, depth + 1)} {q}"
        return f"{q} {type_name(spec, t.type, depth + 1)}"
    if isinstance(t, (T.Restrict, T.TypeTag)):
        return type_name(spec, t.type, depth + 1)
    if isinstance(t, T.FuncProto):
        return f"{type_name(spec, t.return_type, depth + 1)} ({_params(spec, t, depth)})"
    return t.name or f"<{t.kind.name.lower()} {tid}>"


def _member_decl(spec: Spec, tid: int, name: str, ts: int, last: bool = False) -> str:
    """``type name`` with the type padded to ``ts`` columns; arrays and function pointers
    spelled as C declarators (``char cb[48]``, ``void (*fn)(struct sk_buff *)``); a
    zero-length array as the ``last`` member is a flexible array (``data[]``)."""
    dims = ""
    quals = ""
    t = spec.type(tid)
    while isinstance(t, (T.Const, T.Volatile)) and isinstance(spec.resolve(t.type), T.Array):
        quals += "const " if isinstance(t, T.Const) else "volatile "  # pahole: on the element
        tid = t.type
        t = spec.type(tid)
    while isinstance(t, T.Array):
        dims += f"[{t.nelems}]" if t.nelems or not last or dims else "[]"
        tid = t.type
        t = spec.type(tid)
    if isinstance(t, T.Ptr) and isinstance(spec.type(t.type), T.FuncProto) and not dims:
        fp = spec.type(t.type)
        assert isinstance(fp, T.FuncProto)
        ret = type_name(spec, fp.return_type)
        return f"{ret:<{abs(ts)}} (*{name})({_params(spec, fp, 0)})"
    return f"{quals + type_name(spec, tid):<{abs(ts)}} {name}{dims}"


def _inline(spec: Spec, m: T.Member) -> tuple[T.Struct | T.Union | T.Enum | None, str]:
    """The anonymous struct/union/enum a member's type is (arrays of one too), to print
    inline as pahole does, and the array dimensions (``[2]``)."""
    t = spec.type(m.type)
    dims = ""
    while isinstance(t, T.Array):
        dims += f"[{t.nelems}]"
        t = spec.type(t.type)
    if isinstance(t, (T.Struct, T.Union, T.Enum)) and not t.name:
        return t, dims
    return None, ""


class _Holes:
    """pahole's hole search over one struct (offsets relative to it): the byte and bit hole
    after each member (``hole[i]``, ``bit_hole[i]``), those before the first, the counts,
    and the tail ``padding``/``bit_padding``."""

    def __init__(self, spec: Spec, t: T.Struct | T.Union) -> None:
        n = len(t.members)
        self.hole = [0] * n
        self.bit_hole = [0] * n
        self.pre_hole = self.pre_bit_hole = 0
        self.nr_holes = self.nr_bit_holes = 0
        self.padding = self.bit_padding = 0
        if not isinstance(t, T.Struct):
            return
        cur_end, cur_size = t.size * 8, 0
        last_seen = 0
        in_bf = False
        for i, m in enumerate(t.members):
            size = _size(spec, m.type)
            unit_off = _unit_offset(m, size)
            start = m.bit_offset
            end = start + (m.bitfield_size or size * 8)
            bits = byts = 0
            if in_bf:
                bf_end = min(start, cur_end)
                bits = bf_end - last_seen
                last_seen = bf_end
            if m.bitfield_size:
                aligned = unit_off * 8
                if last_seen < aligned <= start:
                    byts = unit_off - last_seen // 8
                    last_seen = aligned
                bits += start - last_seen
            else:
                byts = start // 8 - last_seen // 8
            last_seen = end
            if m.bitfield_size:
                in_bf = True
                if end > cur_end or size * 8 > cur_size:
                    cur_size = size * 8
                    cur_end = unit_off * 8 + cur_size
                    if end > cur_end:
                        cur_end += cur_size
            else:
                in_bf, cur_size, cur_end = False, 0, end
            if i:
                self.hole[i - 1], self.bit_hole[i - 1] = byts, bits
            else:
                self.pre_hole, self.pre_bit_hole = byts, bits
            self.nr_bit_holes += bits != 0
            self.nr_holes += byts != 0
        if in_bf:
            bf_end = min(t.size * 8, cur_end)
            self.bit_padding = bf_end - last_seen
            last_seen = bf_end
        self.padding = t.size - last_seen // 8


def _unit_offset(m: T.Member, size: int) -> int:
    """A member's byte offset as pahole gives it: a bitfield's storage unit's offset."""
    if m.bitfield_size and size:
        return (m.bit_offset // (size * 8)) * size
    return m.bit_offset // 8


def _natural_align(spec: Spec, tid: int, depth: int = 0) -> int:
    t = spec.resolve(tid)
    if depth > 32:
        return 1
    if isinstance(t, T.Ptr):
        a = spec.ptr_size
    elif isinstance(t, (T.Int, T.Float, T.Enum)):
        a = t.size
    elif isinstance(t, (T.Struct, T.Union)):
        a = max([_natural_align(spec, m.type, depth + 1) for m in t.members] or [0])
    elif isinstance(t, T.Array):
        a = _natural_align(spec, t.type, depth + 1)
    else:
        a = 0
    return a or 1


def _is_packed(spec: Spec, t: T.Struct | T.Union) -> bool:
    """pahole's inference: no holes and no padding, and a member off its natural alignment
    or a size that is not a multiple of the largest one."""
    if not isinstance(t, T.Struct):
        return False
    h = _Holes(spec, t)
    if h.padding or h.nr_holes:
        return False
    most = 1
    for m in t.members:
        a = _natural_align(spec, m.type)
        if a == 1:
            continue
        most = max(most, a)
        if _unit_offset(m, _size(spec, m.type)) % a:
            return True
    return t.size % most != 0


class _Layout:
    def __init__(self, spec: Spec, name_spacing: int) -> None:
        self.spec = spec
        self.ns = name_spacing
        self.out: list[str] = []
        self.cacheline = 0
        self.sum_holes = self.sum_bit_holes = 0
        self.paddings = self.sum_paddings = 0

    def line(self, level: int, text: str) -> None:
        self.out.append("\t" * level + text)

    def commented(self, level: int, text: str, where: str) -> None:
        ts = _TYPE_SPACING - 8 * (level - 1)
        self.line(level, f"{text}{' ' * max(ts + self.ns - len(text), 1)}{where}")

    def boundary(self, level: int, off: int) -> None:
        cl = off // _CACHELINE
        if cl > self.cacheline:
            self.cacheline = cl
            pos = off % _CACHELINE
            was = f" was {pos} byte{'s' if pos != 1 else ''} ago" if pos else ""
            self.line(level, f"/* --- cacheline {cl} boundary ({off - pos} bytes){was} --- */")

    def members(self, t: T.Struct | T.Union, level: int, base: int = 0) -> tuple[int, int]:
        """Print ``t``'s members at ``level``, ``t`` starting at byte ``base`` of the outermost
        type; returns (sum of member bytes, bitfield bits). Holes and paddings count for the
        summary at the outermost level only."""
        spec = self.spec
        top = level == 1
        ts = _TYPE_SPACING - 8 * (level - 1)
        h = _Holes(spec, t)
        sum_bytes = sum_bits = 0
        newline = False

        def comment(text: str) -> None:
            nonlocal newline
            if not newline:
                self.out.append("")
                newline = True
            self.line(level, text)

        def plural(n: int, what: str) -> str:
            return f"{n} {what}{'s' if n != 1 else ''}"

        if h.pre_bit_hole > 0:
            comment(f"/* XXX {plural(h.pre_bit_hole, 'bit')} hole, try to pack */")
            self.sum_bit_holes += h.pre_bit_hole * top
        if h.pre_hole > 0:
            comment(f"/* XXX {plural(h.pre_hole, 'byte')} hole, try to pack */")
            self.sum_holes += h.pre_hole * top
        last: T.Member | None = None
        last_off = last_size = 0
        is_union = isinstance(t, T.Union)
        start_cacheline = self.cacheline
        for i, m in enumerate(t.members):
            if is_union:  # each alternative starts over at the union's cacheline
                self.cacheline = start_cacheline
            size = _size(spec, m.type)
            off = _unit_offset(m, size)
            if last is not None and last_size != 0:
                if h.bit_hole[i - 1] and m.bitfield_size:
                    width = h.bit_hole[i - 1]
                    if last_off != off:
                        self.out.append("")
                        self.line(level, "/* Force alignment to the next boundary: */")
                        width = 0
                    self.line(level, f"{type_name(spec, m.type):<{abs(ts)}} :{width};")
                if off < last_off or (off == last_off and not last.bitfield_size and m.bitfield_size):
                    comment("/* Bitfield combined with previous fields */")
                elif 0 < off - last_off < last_size:
                    comment("/* Bitfield combined with next fields */")
            if newline:
                self.out.append("")
                newline = False
            at = base + off
            self.boundary(level, at)
            inner, dims = _inline(spec, m)
            if isinstance(inner, T.Enum):
                self.line(level, "enum {")
                width_ = max((len(v.name) for v in inner.values), default=0)
                mask = (1 << (8 * inner.size)) - 1 if inner.size else -1
                for v in inner.values:
                    val = v.value if inner.signed else v.value & mask
                    self.line(level + 1, f"{v.name:<{width_}} = {val},")
                self.commented(level, f"}}{' ' + m.name if m.name else ''}{dims};",
                               f"/* {at:5d} {size:5d} */")
            elif inner is not None:
                kw = "union" if isinstance(inner, T.Union) else "struct"
                self.line(level, f"{kw} {{")
                self.members(inner, level + 1, at)
                packed = " __attribute__((__packed__))" if _is_packed(spec, inner) else ""
                closing = f"}}{packed}{' ' + m.name if m.name else ''}{dims};"
                if dims:  # pahole does not align the comment after an array of them
                    self.line(level, f"{closing} /* {at:5d} {size:5d} */")
                else:
                    self.commented(level, closing, f"/* {at:5d} {size:5d} */")
            elif m.bitfield_size:
                self.commented(level, _member_decl(spec, m.type, f"{m.name}:{m.bitfield_size}", ts) + ";",
                               f"/* {at:5d}:{m.bit_offset - off * 8:2d} {size:2d} */")
            else:
                last_member = top and i == len(t.members) - 1 > 0 and isinstance(t, T.Struct)
                self.commented(level, _member_decl(spec, m.type, m.name, ts, last_member) + ";",
                               f"/* {at:5d} {size:5d} */")
            mt = spec.type(m.type)
            if isinstance(mt, T.Struct) and not is_union:
                pad = _Holes(spec, mt).padding
                if pad > 0:
                    self.paddings += top
                    self.sum_paddings += pad * top
                    newline = True
                    self.out.append("")
                    self.line(level, f"/* XXX last struct has {plural(pad, 'byte')} of padding */")
            if h.bit_hole[i]:
                comment(f"/* XXX {plural(h.bit_hole[i], 'bit')} hole, try to pack */")
                self.sum_bit_holes += h.bit_hole[i] * top
            if h.hole[i] > 0:
                comment(f"/* XXX {plural(h.hole[i], 'byte')} hole, try to pack */")
                self.sum_holes += h.hole[i] * top
            if m.bitfield_size:
                sum_bits += m.bitfield_size
            else:
                sum_bytes += size
            if last is None or last_size == 0 or last_off != off:
                last_size = size
            elif not last.bitfield_size and m.bitfield_size:
                last_size = size
            last, last_off = m, off
        if is_union:
            self.cacheline = start_cacheline
        return sum_bytes, sum_bits


def tree(spec: Spec, tid: int) -> str:
    """The layout of struct/union ``tid`` as ``pahole -C NAME`` prints it (see the module
    docstring for what differs); other kinds as ``type: size N``."""
    t = spec.resolve(tid)
    if not isinstance(t, (T.Struct, T.Union)):
        return f"{type_name(spec, tid)}: size {_size(spec, tid)}\n"
    kw = "union" if isinstance(t, T.Union) else "struct"
    lay = _Layout(spec, 21 if isinstance(t, T.Union) else 23)
    lay.line(0, f"{kw} {t.name} {{" if t.name else f"{kw} {{")
    sum_bytes, sum_bits = lay.members(t, 1)
    h = _Holes(spec, t)
    out = lay.out
    if isinstance(t, T.Union):  # pahole prints no summary for a union
        out.append("};")
        return "\n".join(out) + "\n"
    out.append("")
    summary = [f"size: {t.size}, cachelines: {(t.size + _CACHELINE - 1) // _CACHELINE}, "
               f"members: {len(t.members)}"]
    if lay.sum_holes > 0 or lay.sum_bit_holes > 0:
        if sum_bytes > 0:
            holes = f", holes: {h.nr_holes}, sum holes: {lay.sum_holes}" if lay.sum_holes > 0 else ""
            summary.append(f"sum members: {sum_bytes}{holes}")
        if sum_bits > 0:
            bits = (f", bit holes: {h.nr_bit_holes}, sum bit holes: {lay.sum_bit_holes} bits"
                    if lay.sum_bit_holes > 0 else f" ({sum_bits // 8} bytes)")
            summary.append(f"sum bitfield members: {sum_bits} bits{bits}")
    if h.padding > 0:
        summary.append(f"padding: {h.padding}")
    if lay.paddings:
        summary.append(f"paddings: {lay.paddings}, sum paddings: {lay.sum_paddings}")
    if h.bit_padding > 0:
        summary.append(f"bit_padding: {h.bit_padding} bits")
    if t.size % _CACHELINE:
        summary.append(f"last cacheline: {t.size % _CACHELINE} bytes")
    out += [f"\t/* {x} */" for x in summary]
    out.append("} __attribute__((__packed__));" if _is_packed(spec, t) else "};")
    return "\n".join(out) + "\n"
