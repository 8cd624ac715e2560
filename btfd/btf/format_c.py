"""C declarations from BTF, byte-identical to ``bpftool btf dump file F format c``
(bpftool 7.1 with libbpf 1.1's btf_dump.c).

The semantics are libbpf 1.1's: a topological ordering pass that queues named
structs/unions/enums/typedefs after what they embed (forward declarations break pointer
cycles), an emit pass with a small state machine per type, names deduplicated with
``___N`` suffixes in first-use order (tags and identifiers in separate namespaces),
anonymous types inlined, bit padding and ``__attribute__((packed))`` inferred from the
layout. Per-type state lives in ``bytearray``s indexed by id; types are decoded on demand.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence

from . import types as T
from .errors import BTFError, BTFFormatError, BTFUnsupportedError
from .kinds import Kind, is_known_kind, kind_of
from .spec import Spec, composite_align

__all__ = ["dump_c", "format_type_c", "CDumper", "HEADER", "FOOTER"]

HEADER = (
    "#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n"
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n"
    "#endif\n\n"
)
FOOTER = (
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n"
    "#endif /* __VMLINUX_H__ */\n"
)

# Kinds as plain ints (an IntEnum member costs an attribute lookup a comparison: hot loops)
_ARRAY = int(Kind.ARRAY)
_CONST = int(Kind.CONST)
_DATASEC = int(Kind.DATASEC)
_DECL_TAG = int(Kind.DECL_TAG)
_ENUM = int(Kind.ENUM)
_ENUM64 = int(Kind.ENUM64)
_FLOAT = int(Kind.FLOAT)
_FUNC = int(Kind.FUNC)
_FUNC_PROTO = int(Kind.FUNC_PROTO)
_FWD = int(Kind.FWD)
_INT = int(Kind.INT)
_PTR = int(Kind.PTR)
_RESTRICT = int(Kind.RESTRICT)
_STRUCT = int(Kind.STRUCT)
_TYPEDEF = int(Kind.TYPEDEF)
_TYPE_TAG = int(Kind.TYPE_TAG)
_UNION = int(Kind.UNION)
_VAR = int(Kind.VAR)
_VOLATILE = int(Kind.VOLATILE)
_COMPOSITES = frozenset({_STRUCT, _UNION})
_NUMERIC = frozenset({_INT, _FLOAT})
_ENUMS_FWD = frozenset({_ENUM, _ENUM64, _FWD})
_MODS = frozenset({_VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})
_NO_ORDER = frozenset({_FUNC, _VAR, _DATASEC, _DECL_TAG})
_ENUMS = frozenset({_ENUM, _ENUM64})
_PTR_OR_MODS = frozenset({_PTR, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})
_DECLARATOR_LINKS = frozenset({_PTR, _VOLATILE, _CONST, _RESTRICT, _FUNC_PROTO, _TYPE_TAG})
_COMMENTED = frozenset({_DATASEC, _DECL_TAG})

# order/emit states (btf_dump.c)
_NOT, _ING, _DONE = 0, 1, 2
_MAX_DEPTH = 200  # recursion guard for malformed chains (kernel BTF nests < 40 deep)
_MAX_PAD_BITS = 8 << 20  # 1 MiB of explicit padding in one gap: refused
# Padding budgets, in `type: bits;` lines. Real kernels need at most ~1,500 lines for one
# type and ~10,000 for a whole vmlinux.h; without a total bound a 2 KB blob of 128 members
# each 1 MiB apart would print 16M lines. One top-level type may print _PAD_LINES_TYPE; a
# whole dump _PAD_LINES_DUMP plus one line per 16 bytes of BTF (its base's included).
_PAD_LINES_TYPE = 1 << 15
_PAD_LINES_DUMP = 1 << 17

# GCC emits typedefs to its internal __PolyX_t types for Arm SVE: libbpf aliases them
# (btf_dump_emit_missing_aliases).
_MISSING_ALIASES = {
    "__Poly8_t": "unsigned char",
    "__Poly16_t": "unsigned short",
    "__Poly64_t": "unsigned long long",
    "__Poly128_t": "unsigned __int128",
}
_PREFIXES = "\t" * 12
_ALIGN_THROUGH = frozenset({_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})


def _pfx(lvl: int) -> str:
    return _PREFIXES if lvl >= len(_PREFIXES) else "\t" * lvl


def _chip_away_bits(total: int, at_most: int) -> int:
    return total % at_most or at_most


class CDumper:
    """libbpf's ``struct btf_dump`` for one spec (split specs include their base)."""

    def __init__(self, spec: Spec, *, whole_dump: bool = True) -> None:
        self.spec = spec
        n = spec.next_id
        self.n = n
        self.order_state = bytearray(n)
        self.emit_state = bytearray(n)
        self.fwd_emitted = bytearray(n)
        self.referenced = bytearray(n)
        self.name_resolved = bytearray(n)
        self.cached_names: dict[int, str] = {}
        self.type_names: dict[str, int] = {}
        self.ident_names: dict[str, int] = {}
        self.ptr_sz = spec.ptr_size
        self._aligns: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self.out: list[str] = []
        # A whole dump visits every record several times (ordering, emitting, declarators):
        # there the wire words are read once into three arrays (12 bytes a type, released
        # with the dumper) and names are decoded once each; one type's text reads the spec.
        self._no: array[int] | None = None
        self._info: array[int] = array("I")
        self._st: array[int] = array("I")
        self._kinds = b""
        self._bad_refs: set[int] = set()
        self._strings: dict[int, str] = {}
        self._ref_off: array[int] | None = None
        self._ref_flat: array[int] = array("I")
        # Work budget: valid BTF needs ~3 ordering/emitting steps a type (vmlinux: 356k for
        # 127k types). A malformed graph (pointer/func-proto cycles with no named struct to
        # stop at) can branch exponentially; past the budget it is refused, not walked.
        self._budget = 64 * n + 100_000
        blob_bytes = 0
        sp: Spec | None = spec
        while sp is not None:
            blob_bytes += sp.size
            sp = sp.base
        self._pad_dump_left = _PAD_LINES_DUMP + blob_bytes // 16
        self._pad_type_left = _PAD_LINES_TYPE
        if whole_dump:  # only ordering needs it (anonymous enums); one type's text does not
            self._load_records()
            self._mark_referenced()

    # ---------------------------------------------------------------- helpers

    def t(self, tid: int) -> T.Type:
        return self.spec.type(tid)

    def align_of(self, tid: int) -> int:
        """btf__align_of() (:meth:`Spec.align_of`, the one implementation), memoized for the
        dump: struct alignment is asked for again and again while checking packing."""
        aligns = self._aligns
        a = aligns.get(tid)
        if a is not None:
            return a
        # Typedefs, modifiers and arrays take their target's alignment (as Spec.align_of
        # does); a whole dump follows them in its arrays instead of decoding each link.
        kinds = self._kinds
        t = tid
        if 0 < t < len(kinds) and not self._bad_refs:
            for _ in range(_MAX_DEPTH):
                k = kinds[t]
                if k in _ALIGN_THROUGH:
                    t = self._st[t]
                elif k == _ARRAY:
                    t = self.refs(t)[0]
                else:
                    break
                a = aligns.get(t)
                if a is not None or not 0 < t < len(kinds):
                    break
            if a is None:
                a = self.spec.align_of(t, memo=aligns)
            aligns[tid] = a
            return a
        return self.spec.align_of(tid, memo=aligns)

    def _composite_align(self, tid: int, t: T.Struct | T.Union) -> int:
        """Spec.align_of()'s rule for a struct or union, over the already decoded ``t`` (its
        definition needs it right after decoding; asking the spec would decode it again)."""
        a = self._aligns.get(tid)
        if a is None:
            a = self._aligns[tid] = composite_align(t, self.align_of)
        return a

    def size_of(self, tid: int) -> int:
        s = self._sizes.get(tid)
        if s is None:
            try:
                s = max(0, self.spec.size_of(tid))
            except BTFError:
                s = 0
            self._sizes[tid] = s
        return s

    _REF_KINDS = frozenset({_PTR, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT,
                            _TYPE_TAG, _FUNC, _FUNC_PROTO, _VAR, _DECL_TAG})

    def _load_records(self) -> None:
        """Every record's three wire words, base specs first, into arrays indexed by id."""
        n = self.n
        no = array("I", bytes(4 * n))
        inf = array("I", bytes(4 * n))
        st = array("I", bytes(4 * n))
        specs: list[Spec] = []
        s: Spec | None = self.spec
        while s is not None:
            specs.append(s)
            s = s.base
        ref_kinds = self._REF_KINDS
        bad = self._bad_refs
        for sp in reversed(specs):
            for tid, name_off, info, size_type in sp.iter_raw():
                no[tid] = name_off
                inf[tid] = info
                st[tid] = size_type
                if size_type >= n and kind_of(info) in ref_kinds:
                    bad.add(tid)
        self._kinds = bytes((i >> 24) & 0x7F for i in inf)
        # Leaves of btf__align_of() straight from the words (Spec.align_of decodes each type
        # it is asked about; the dump asks about every member's type).
        aligns, ptr = self._aligns, self.ptr_sz
        leaf = {_INT, _ENUM, _ENUM64, _FLOAT}
        for tid, k in enumerate(self._kinds):
            if k in leaf:
                if tid not in bad:
                    aligns[tid] = min(ptr, st[tid]) or 1
            elif k == _PTR:
                aligns[tid] = ptr
        self._info, self._st, self._no = inf, st, no

    def raw(self, tid: int) -> tuple[int, int, int]:
        """The wire record, with the referenced id checked (malformed input must end in a
        BTFError, never an index error)."""
        no = self._no
        if no is not None and 0 < tid < self.n:
            if tid in self._bad_refs:
                self._bad_ref(tid)
            return (no[tid], self._info[tid], self._st[tid])
        r = self.spec.raw(tid)
        if r[2] >= self.n and kind_of(r[1]) in self._REF_KINDS:
            self._bad_ref(tid)
        return r

    def _bad_ref(self, tid: int) -> None:
        r = self.spec.raw(tid)
        raise BTFFormatError(f"type [{tid}] refers to type id {r[2]}, past the last id {self.n - 1}")

    def string(self, off: int) -> str:
        """``spec.string(off)``, each name decoded once a dump."""
        s = self._strings.get(off)
        if s is None:
            s = self._strings[off] = self.spec.string(off)
        return s

    def _bad_kind(self, tid: int, k: int) -> BTFError:
        if k >= len(Kind):  # stepped over thanks to a kind-layout section, but not C
            return BTFUnsupportedError(f"type [{tid}] has kind {k}, which this code cannot format as C")
        return BTFFormatError(f"type [{tid}] has invalid kind {k}")

    def kind(self, tid: int) -> int:
        if 0 < tid < len(self._kinds):
            if tid in self._bad_refs:
                self._bad_ref(tid)
            return self._kinds[tid]
        return 0 if tid == 0 else kind_of(self.raw(tid)[1])

    def _mark_referenced(self) -> None:
        """btf_dump_mark_referenced(): every type some other type points at. The lists of
        arrays, composites, prototypes and sections are kept (flat, 4 bytes a reference) for
        ordering and emitting, which walk them again."""
        ref = self.referenced
        simple = {_VOLATILE, _CONST, _RESTRICT, _PTR, _TYPEDEF, _FUNC,
                  _VAR, _DECL_TAG, _TYPE_TAG}
        multi = {_ARRAY, _STRUCT, _UNION, _FUNC_PROTO, _DATASEC}
        refs = self.spec.refs
        n = self.n
        st = self._st
        ref_off = array("I", bytes(4 * (n + 1)))
        flat: array[int] = array("I")
        for tid, k in enumerate(self._kinds):
            ref_off[tid] = len(flat)
            if k in simple:
                if st[tid] < n:
                    ref[st[tid]] = 1
            elif k in multi:
                rs = refs(tid)
                flat.extend(rs)
                if k == _FUNC_PROTO:
                    rs = rs[1:]  # libbpf marks parameters, not the return type
                for r in rs:
                    if r < n:
                        ref[r] = 1
        ref_off[n] = len(flat)
        self._ref_off, self._ref_flat = ref_off, flat

    def refs(self, tid: int) -> Sequence[int]:
        """``spec.refs(tid)``, from the lists kept by a whole dump."""
        off = self._ref_off
        if off is not None and 0 < tid < self.n:
            a, b = off[tid], off[tid + 1]
            if a != b:
                return self._ref_flat[a:b]
        return self.spec.refs(tid)

    def _name_dups(self, names: dict[str, int], name: str) -> int:
        c = names.get(name, 0) + 1
        names[name] = c
        return c

    def _resolve_name(self, tid: int, names: dict[str, int]) -> str:
        """btf_dump_resolve_name(): first use decides the ``___N`` suffix."""
        name_off, info, _ = self.raw(tid)
        if name_off == 0:
            return ""
        orig = self.string(name_off)
        if self.name_resolved[tid]:
            return self.cached_names.get(tid, orig)
        k = kind_of(info)
        if k == _FWD or (k == _ENUM and self.spec.vlen(tid) == 0):
            self.name_resolved[tid] = 1
            return orig
        dup = self._name_dups(names, orig)
        if dup > 1:
            self.cached_names[tid] = f"{orig}___{dup}"
        self.name_resolved[tid] = 1
        return self.cached_names.get(tid, orig)

    def type_name(self, tid: int) -> str:
        return self._resolve_name(tid, self.type_names)

    def ident_name(self, tid: int) -> str:
        return self._resolve_name(tid, self.ident_names)

    def is_blacklisted(self, tid: int) -> bool:
        name_off = self.raw(tid)[0]
        return name_off != 0 and self.string(name_off) == "__builtin_va_list"

    # ---------------------------------------------------------------- ordering

    def dump_type(self, tid: int) -> None:
        """btf_dump__dump_type(): emit ``tid`` and whatever it needs first."""
        queue: list[int] = []
        self._order(tid, False, queue, 0)
        for q in queue:
            self._pad_type_left = _PAD_LINES_TYPE
            self._emit(q, 0, 0)

    def _order(self, tid: int, through_ptr: bool, queue: list[int], depth: int) -> int:
        """btf_dump_order_type(): 1 when the reference is 'strong' (needs a definition)."""
        if depth > _MAX_DEPTH:
            raise BTFFormatError(f"type chain through [{tid}] too deep to order")
        self._spend(tid)
        st = self.order_state
        if st[tid] == _DONE:
            return 1
        if tid == 0:
            return 0
        name_off, info, size_type = self.raw(tid)
        k = kind_of(info)
        if st[tid] == _ING:
            if k in _COMPOSITES and through_ptr and name_off != 0:
                return 0
            raise BTFFormatError(f"unsatisfiable type cycle, id:[{tid}]")
        d = depth + 1
        if k in _NUMERIC:
            st[tid] = _DONE
            return 0
        if k == _PTR:
            r = self._order(size_type, True, queue, d)
            st[tid] = _DONE
            return r
        if k == _ARRAY:
            return self._order(self.refs(tid)[0], False, queue, d)
        if k in _COMPOSITES:
            if through_ptr and name_off != 0:
                return 0
            st[tid] = _ING
            for m in self.refs(tid):
                self._order(m, False, queue, d)
            if name_off != 0:
                queue.append(tid)
            st[tid] = _DONE
            return 1
        if k in _ENUMS_FWD:
            if name_off != 0 or not self.referenced[tid]:
                queue.append(tid)
            st[tid] = _DONE
            return 1
        if k == _TYPEDEF:
            strong = self._order(size_type, through_ptr, queue, d)
            if through_ptr and not strong:
                return 0
            queue.append(tid)
            st[tid] = _DONE
            return 1
        if k in _MODS:
            return self._order(size_type, through_ptr, queue, d)
        if k == _FUNC_PROTO:
            strong = False
            for r in self.refs(tid):  # return type, then parameters
                if self._order(r, through_ptr, queue, d) > 0:
                    strong = True
            return 1 if strong else 0
        if k in _NO_ORDER:
            st[tid] = _DONE
            return 0
        raise self._bad_kind(tid, k)

    # ---------------------------------------------------------------- emitting

    def _emit(self, tid: int, cont_id: int, depth: int) -> None:
        """btf_dump_emit_type()."""
        if depth > _MAX_DEPTH:
            raise BTFFormatError(f"type chain through [{tid}] too deep to emit")
        self._spend(tid)
        es = self.emit_state
        if tid == 0 or es[tid] == _DONE:
            return
        top = cont_id == 0
        name_off, info, size_type = self.raw(tid)
        k = kind_of(info)
        w = self.out.append
        if es[tid] == _ING:
            if self.fwd_emitted[tid]:
                return
            if k in _COMPOSITES:
                if tid == cont_id or name_off == 0:
                    return
                self._struct_fwd(tid, k)
                w(";\n\n")
                self.fwd_emitted[tid] = 1
            elif k == _TYPEDEF:
                if not self.is_blacklisted(tid):
                    self._typedef_def(tid, size_type, 0)
                    w(";\n\n")
                self.fwd_emitted[tid] = 1
            return
        d = depth + 1
        if k == _INT:
            alias = _MISSING_ALIASES.get(self.type_name(tid)) if name_off else None
            if alias is not None:
                w(f"typedef {alias} {self.type_name(tid)};\n\n")
            es[tid] = _DONE
        elif k in _ENUMS:
            if top:
                self._enum_def(tid, 0)
                w(";\n\n")
            es[tid] = _DONE
        elif k in _PTR_OR_MODS:
            self._emit(size_type, cont_id, d)
        elif k == _ARRAY:
            self._emit(self.refs(tid)[0], cont_id, d)
        elif k == _FWD:
            self._fwd_def(tid, info)
            w(";\n\n")
            es[tid] = _DONE
        elif k == _TYPEDEF:
            es[tid] = _ING
            self._emit(size_type, tid, d)
            if not self.fwd_emitted[tid] and not self.is_blacklisted(tid):
                self._typedef_def(tid, size_type, 0)
                w(";\n\n")
            es[tid] = _DONE
        elif k in _COMPOSITES:
            es[tid] = _ING
            if top or name_off == 0:
                new_cont = cont_id if name_off == 0 else tid
                for m in self.refs(tid):
                    self._emit(m, new_cont, d)
            elif not self.fwd_emitted[tid] and tid != cont_id:
                self._struct_fwd(tid, k)
                w(";\n\n")
                self.fwd_emitted[tid] = 1
            if top:
                self._struct_def(tid, 0)
                w(";\n\n")
                es[tid] = _DONE
            else:
                es[tid] = _NOT
        elif k == _FUNC_PROTO:
            for r in self.refs(tid):
                self._emit(r, cont_id, d)
        elif not is_known_kind(k):
            raise self._bad_kind(tid, k)

    def _struct_fwd(self, tid: int, k: int) -> None:
        name = self.type_name(tid)
        self.out.append(("struct" if k == _STRUCT else "union") + (" " if name else "") + name)

    def _fwd_def(self, tid: int, info: int) -> None:
        self.out.append(("union " if info >> 31 else "struct ") + self.type_name(tid))

    def _typedef_def(self, tid: int, target: int, lvl: int) -> None:
        name = self.ident_name(tid)
        if target == 0 and name == "__gnuc_va_list":
            self.out.append("typedef __builtin_va_list __gnuc_va_list")
            return
        self.out.append("typedef ")
        self._type_decl(target, name, lvl)

    def _enum_def(self, tid: int, lvl: int) -> None:
        e = self.t(tid)
        assert isinstance(e, T.Enum)
        name = self.type_name(tid) if e.name else ""
        w = self.out.append
        w("enum" + (" " if e.name else "") + name)
        if not e.values:
            return
        w(" {")
        p = _pfx(lvl + 1)
        for v in e.values:
            dup = self._name_dups(self.ident_names, v.name)
            vn = f"{v.name}___{dup}" if dup > 1 else v.name
            if e.is64:
                val = v.value & 0xFFFFFFFFFFFFFFFF
                if e.signed:
                    val = val - (1 << 64) if val >= 1 << 63 else val
                    w(f"\n{p}{vn} = {val}LL,")
                else:
                    w(f"\n{p}{vn} = {val}ULL,")
            else:
                val = v.value & 0xFFFFFFFF
                if e.signed:
                    val = val - (1 << 32) if val >= 1 << 31 else val
                w(f"\n{p}{vn} = {val},")
        w(f"\n{_pfx(lvl)}}}")

    def _is_packed(self, t: T.Struct) -> bool:
        """libbpf 1.1's btf_is_struct_packed(): a non-bitfield member off its natural
        alignment, or a size that is not a multiple of the largest member alignment."""
        max_align = 1
        for m in t.members:
            a = self.align_of(m.type)
            if a and m.bitfield_size == 0 and m.bit_offset % (8 * a):
                return True
            max_align = max(a, max_align)
        return t.size % max_align != 0

    def _bit_padding(self, cur_off: int, next_off: int, next_align: int, in_bitfield: bool,
                     lvl: int) -> None:
        """libbpf 1.1's btf_dump_emit_bit_padding(): align with the largest of long, int,
        short, char that fits (``type: 0`` markers where the compiler would not align by
        itself), then fill the rest with full-size markers and one smallest remainder."""
        if cur_off >= next_off:
            return
        if next_off - cur_off > _MAX_PAD_BITS:
            # bpftool would print one `long: 64;` per 8 bytes; a 1 KiB blob claiming a 64 MiB
            # struct would turn into ~100 MB of text. No real type has such a gap.
            raise BTFFormatError(f"padding gap of {(next_off - cur_off) // 8} bytes is too large to format")
        pads = (("long", self.ptr_sz * 8), ("int", 32), ("short", 16), ("char", 8))
        w = self.out.append
        # The largest padding type whose next boundary is still within the gap (char always).
        for pad in pads:
            new_off = -(-cur_off // pad[1]) * pad[1]
            if new_off <= next_off:
                break
        pad_type, pad_bits = pad
        self._charge_padding((next_off - new_off) // pad_bits + 2)
        if cur_off < new_off <= next_off:
            if (
                in_bitfield
                or (new_off == next_off and -(-cur_off // (next_align * 8)) * next_align * 8 != new_off)
                or (new_off != next_off and next_off - new_off <= new_off - cur_off)
            ):
                w(f"\n{_pfx(lvl)}{pad_type}: {new_off - cur_off if in_bitfield else 0};")
            cur_off = new_off
        while cur_off != next_off:
            bits = min(next_off - cur_off, pad_bits)
            if bits == pad_bits:
                w(f"\n{_pfx(lvl)}{pad_type}: {pad_bits};")
                cur_off += bits
                continue
            for ptype, pbits in reversed(pads):
                if pbits < bits:
                    continue
                w(f"\n{_pfx(lvl)}{ptype}: {bits};")
                cur_off += bits
                break

    def _charge_padding(self, lines: int) -> None:
        """Spend padding lines from the per-type and per-dump budgets (an upper bound of
        what one gap prints); refuse before printing what would exceed either."""
        self._pad_type_left -= lines
        self._pad_dump_left -= lines
        if self._pad_type_left < 0:
            raise BTFFormatError(
                f"padding of one type would exceed {_PAD_LINES_TYPE} lines (a malformed layout?)")
        if self._pad_dump_left < 0:
            raise BTFFormatError("padding of the whole dump would exceed its budget (a malformed layout?)")

    def _struct_def(self, tid: int, lvl: int) -> None:
        t = self.t(tid)
        assert isinstance(t, (T.Struct, T.Union))
        is_struct = isinstance(t, T.Struct)
        packed = self._is_packed(t) if isinstance(t, T.Struct) else False
        align = 1 if packed else self._composite_align(tid, t)
        name = self.type_name(tid) if t.name else ""
        w = self.out.append
        w(("struct" if is_struct else "union") + (" " if t.name else "") + name + " {")
        off = 0
        prev_bitfield = False
        p = _pfx(lvl + 1)
        for m in t.members:
            m_align = 1 if packed else self.align_of(m.type)
            in_bitfield = prev_bitfield and m.bitfield_size != 0
            self._bit_padding(off, m.bit_offset, m_align, in_bitfield, lvl + 1)
            w(f"\n{p}")
            self._type_decl(m.type, m.name, lvl + 1)
            if m.bitfield_size:
                w(f": {m.bitfield_size}")
                off = m.bit_offset + m.bitfield_size
                prev_bitfield = True
            else:
                off = m.bit_offset + self.size_of(m.type) * 8
                prev_bitfield = False
            w(";")
        if is_struct:
            self._bit_padding(off, t.size * 8, align, False, lvl + 1)
        # `struct empty {}` stays on one line.
        if t.members or t.size:
            w(f"\n{_pfx(lvl)}}}")
        else:
            w("}")
        if packed:
            w(" __attribute__((packed))")

    # ---------------------------------------------------------------- declarators

    def _spend(self, tid: int) -> None:
        self._budget -= 1
        if self._budget < 0:
            raise BTFFormatError(f"type graph through [{tid}] is too tangled to format (a reference cycle?)")

    def _type_decl(self, tid: int, fname: str, lvl: int) -> None:
        """btf_dump_emit_type_decl(): build the declarator stack, then emit the chain."""
        self._spend(tid)
        stack: list[int] = []
        for _ in range(_MAX_DEPTH):
            stack.append(tid)
            if tid == 0:
                break
            _, info, st = self.raw(tid)
            k = kind_of(info)
            if k in _DECLARATOR_LINKS:
                tid = st  # the pointee, modified type or return type
            elif k == _ARRAY:
                tid = self.refs(tid)[0]
            else:
                break
        else:
            raise BTFFormatError(f"declarator chain through [{tid}] too long")
        self._type_chain(stack, fname, lvl)

    def _emit_mods(self, stack: list[int]) -> None:
        w = self.out.append
        while stack:
            k = self.kind(stack[-1])
            if k == _VOLATILE:
                w("volatile ")
            elif k == _CONST:
                w("const ")
            elif k == _RESTRICT:
                w("restrict ")
            else:
                return
            stack.pop()

    def _drop_mods(self, stack: list[int]) -> None:
        while stack and self.kind(stack[-1]) in _MODS:
            stack.pop()

    def _emit_name(self, name: str, last_was_ptr: bool) -> None:
        self.out.append((" " if name and not last_was_ptr else "") + name)

    def _type_chain(self, stack: list[int], fname: str, lvl: int) -> None:
        """btf_dump_emit_type_chain()."""
        w = self.out.append
        last_was_ptr = True
        while stack:
            tid = stack.pop()
            if tid == 0:
                self._emit_mods(stack)
                w("void")
                last_was_ptr = False
                continue
            name_off, info, _st = self.raw(tid)
            k = kind_of(info)
            if k in _NUMERIC:
                self._emit_mods(stack)
                w(self.string(name_off))
            elif k in _COMPOSITES:
                self._emit_mods(stack)
                if name_off == 0:
                    self._struct_def(tid, lvl)
                else:
                    self._struct_fwd(tid, k)
            elif k in _ENUMS:
                self._emit_mods(stack)
                if name_off == 0:
                    self._enum_def(tid, lvl)
                else:
                    w("enum " + self.type_name(tid))
            elif k == _FWD:
                self._emit_mods(stack)
                self._fwd_def(tid, info)
            elif k == _TYPEDEF:
                self._emit_mods(stack)
                w(self.ident_name(tid))
            elif k == _PTR:
                w("*" if last_was_ptr else " *")
            elif k == _VOLATILE:
                w(" volatile")
            elif k == _CONST:
                w(" const")
            elif k == _RESTRICT:
                w(" restrict")
            elif k == _TYPE_TAG:
                self._emit_mods(stack)
                w(f' __attribute__((btf_type_tag("{self.string(name_off)}")))')
            elif k == _ARRAY:
                a = self.t(tid)
                assert isinstance(a, T.Array)
                self._drop_mods(stack)
                if not stack:
                    self._emit_name(fname, last_was_ptr)
                    w(f"[{a.nelems}]")
                    return
                multidim = self.kind(stack[-1]) == _ARRAY
                if fname and not last_was_ptr:
                    w(" ")
                if not multidim:
                    w("(")
                self._type_chain(stack, fname, lvl)
                if not multidim:
                    w(")")
                w(f"[{a.nelems}]")
                return
            elif k == _FUNC_PROTO:
                fp = self.t(tid)
                assert isinstance(fp, T.FuncProto)
                self._drop_mods(stack)
                if stack:
                    w(" (")
                    self._type_chain(stack, fname, lvl)
                    w(")")
                else:
                    self._emit_name(fname, last_was_ptr)
                w("(")
                ps = fp.params
                if not ps or (len(ps) == 1 and ps[0].type == 0):
                    w("void)")
                    return
                for i, prm in enumerate(ps):
                    if i > 0:
                        w(", ")
                    if i == len(ps) - 1 and prm.type == 0:
                        w("...")
                        break
                    self._type_decl(prm.type, prm.name, lvl)
                w(")")
                return
            elif not is_known_kind(k):
                raise self._bad_kind(tid, k)
            else:
                return
            last_was_ptr = k == _PTR
        self._emit_name(fname, last_was_ptr)

    def take(self) -> str:
        s = "".join(self.out)
        self.out.clear()
        return s


def dump_c(spec: Spec) -> Iterator[str]:
    """The whole spec (a split spec with its base) as bpftool 7.1's ``format c`` prints it,
    in pieces (join them for the text).

    Types of kinds this code does not know (blobs with a kind-layout section can carry them)
    are left out; a type that refers to one cannot be written as C and fails the dump with
    :class:`BTFUnsupportedError` naming it (a partial header would not compile either)."""
    with spec.dense():
        d = CDumper(spec)
        yield HEADER
        kinds = d._kinds
        for tid in range(1, spec.next_id):
            if tid in d._bad_refs:
                d._bad_ref(tid)
            if not 0 < kinds[tid] < len(Kind):
                continue  # a kind only a layout section describes: nothing to print for it
            try:
                d.dump_type(tid)
            except RecursionError:  # a last resort: the depth guards should stop it first
                raise BTFFormatError(f"type [{tid}] nests too deeply to format") from None
            if d.out:
                yield d.take()
        yield FOOTER


def format_type_c(spec: Spec, tid: int) -> str:
    """One type's C declaration as it stands in bpftool's full dump: structs, unions, enums,
    typedefs and forward declarations exactly as that block (anonymous members inlined);
    a FUNC as its prototype; a VAR as a declaration; other kinds as a type name."""
    try:
        return _format_one(spec, tid)
    except RecursionError:
        raise BTFFormatError(f"type [{tid}] nests too deeply to format") from None


def _format_one(spec: Spec, tid: int) -> str:
    d = CDumper(spec, whole_dump=False)
    if tid == 0:
        return "void\n"
    k = d.kind(tid)
    if k in _COMPOSITES:
        d._struct_def(tid, 0)
        d.out.append(";\n\n")
    elif k in _ENUMS:
        d._enum_def(tid, 0)
        d.out.append(";\n\n")
    elif k == _TYPEDEF:
        d._typedef_def(tid, d.raw(tid)[2], 0)
        d.out.append(";\n\n")
    elif k == _FWD:
        d._fwd_def(tid, d.raw(tid)[1])
        d.out.append(";\n\n")
    elif k == _FUNC:
        f = spec.type(tid)
        assert isinstance(f, T.Func)
        d._type_decl(f.type, f.name, 0)
        d.out.append(";\n")
    elif k == _VAR:
        v = spec.type(tid)
        assert isinstance(v, T.Var)
        d._type_decl(v.type, v.name, 0)
        d.out.append(";\n")
    elif k in _COMMENTED:
        d.out.append(f"/* {Kind(k).name} {spec.type_name(tid)} */\n")
    else:
        d._type_decl(tid, "", 0)
        d.out.append("\n")
    return d.take()
