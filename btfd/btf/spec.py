"""A parsed BTF blob: zero-copy, lazily decoded.

:class:`Spec` ties together the pieces of one blob, each in its own module:

- :mod:`~btfd.btf.header`: the header, validated in libbpf's order;
- :mod:`~btfd.btf.wire`: the type section's record layout (where a record starts, how long
  it is) and the one pass that keeps the offset of every ``CHECKPOINT``-th record (an
  ``array('I')``: 4 bytes per 16 types);
- :mod:`~btfd.btf.strings`: the string section, continuing the base's offsets;
- :mod:`~btfd.btf.index`: the name index (a hash of each named type's *essential* name,
  ``foo___v2`` -> ``foo``), built on the first lookup by name or read from a shared index
  the daemon built (``Spec(..., index=...)``: then no pass and no build happen here);
- this module: decoding one record into the type model (:mod:`~btfd.btf.types`), lookups,
  and libbpf's semantics (sizes, alignment, modifiers).

``type(id)`` walks at most ``CHECKPOINT - 1`` records from the nearest checkpoint and decodes
one record into a frozen dataclass (nothing is cached: decoding is cheap and a cache would
grow with every distinct id asked for). A blob already sorted by name (anonymous types
first, then by name) needs no hash: lookups binary-search the checkpointed records, then walk
one block of 16. Figures: ``docs/PERFORMANCE.md``.

Split BTF (module BTF over vmlinux) continues the base's type ids and string offsets.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from . import types as T
from .errors import (
    BTFClosedError,
    BTFCycleError,
    BTFFormatError,
    BTFNotFoundError,
    BTFUnsupportedError,
)
from .header import Header, parse_header
from .index import IndexError_, NameIndex, SharedIndex, build_names, essential
from .index import encode as encode_index
from .kinds import Kind, kind_of
from .strings import Strings
from .wire import CHECKPOINT, MEMBER, PARAM, RECORD_SIZE, VAR_SECINFO, Records

__all__ = ["Spec", "composite_align", "essential_name", "CHECKPOINT", "MAX_RESOLVE_DEPTH"]

_CK_SHIFT = 4  # log2(CHECKPOINT)
#: Mirrors libbpf's MAX_RESOLVE_DEPTH (btf.c): deeper chains are treated as cycles.
MAX_RESOLVE_DEPTH = 32
#: Nesting allowed while computing alignment: struct members nest, so this is deeper than
#: MAX_RESOLVE_DEPTH (kernel BTF nests < 40 deep) but far below Python's recursion limit.
MAX_ALIGN_DEPTH = 200
#: Mirrors the kernel's BTF_MAX_TYPE.
BTF_MAX_TYPE = 0x000FFFFF

_MODIFIERS = frozenset({Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})
_MODS_AND_TYPEDEF = _MODIFIERS | {Kind.TYPEDEF}
# Names of 'long' integers libbpf uses to guess the pointer size (determine_ptr_size).
_LONG_NAMES = frozenset(
    {b"long", b"long int", b"int long", b"unsigned long", b"long unsigned",
     b"unsigned long int", b"unsigned int long", b"long unsigned int",
     b"long int unsigned", b"int unsigned long", b"int long unsigned"}
)


def composite_align(t: T.Struct | T.Union, member_align: Callable[[int], int]) -> int:
    """libbpf's btf__align_of() rule for a struct or union: its largest member alignment, or
    1 when it is packed (a member off its alignment, or a size that is not a multiple of it).
    ``member_align``: type id -> alignment (callers bring their own memo and depth guard)."""
    a = 1
    for m in t.members:
        ma = member_align(m.type)
        a = max(a, ma)
        if m.bitfield_size == 0 and m.bit_offset % (8 * ma):
            return 1
    return 1 if t.size % a else a


def essential_name(name: str) -> str:
    """The CO-RE essential name: ``task_struct___old`` -> ``task_struct``; ``a____b`` stays."""
    return essential(name.encode()).decode()


def _as_buffer(data: Any) -> Any:
    """Something with ``find`` and slicing that yields bytes (bytes, mmap); memoryviews are
    unwrapped when they span their whole object. A bytearray (mutable, so unsafe to index
    lazily) or a partial memoryview is copied: the only copies this module makes."""
    if isinstance(data, bytearray):
        return bytes(data)
    if isinstance(data, memoryview):
        obj = data.obj
        whole = hasattr(obj, "find") and data.nbytes == len(obj)  # type: ignore[arg-type]
        if whole and not isinstance(obj, bytearray) and data.contiguous:
            return obj
        return data.tobytes()
    if not hasattr(data, "find"):
        raise TypeError(f"BTF data must be bytes, bytearray, mmap or memoryview, not {type(data)}")
    return data


class Spec:
    """One BTF blob (raw ``.BTF`` bytes), optionally split over ``base``.

    ``data`` is borrowed, never copied: keep it alive (and unmodified) while the spec is used,
    and call :meth:`close` before closing an mmap it came from.
    """

    def __init__(
        self,
        data: Any,
        *,
        base: Spec | None = None,
        start: int = 0,
        length: int | None = None,
        name: str = "",
        index: Any = None,
    ) -> None:
        """``index``: the blob's index in the shared format (bytes or a mapping, see
        :mod:`btfd.btf.index`), read in place instead of walking the blob and hashing its
        names; :class:`~btfd.btf.index.IndexError_` when it does not belong to this blob."""
        self._data = _as_buffer(data)
        self.name = name
        self.base: Spec | None = base
        self.next_id: int = 0
        self.header: Header = parse_header(self._data, start, length)
        h = self.header
        self.byte_order = h.byte_order
        self._w = w = Records(self._data, h)
        # The wire layout's pieces, bound here: the decoding paths below are hot.
        self._rec, self._u32, self._i32, self._u32pair = w.rec, w.u32, w.i32, w.u32pair
        self._ts, self._te = w.ts, w.te
        self._ss, self._se = h.strs_start, h.strs_end
        #: vlen bits of ``info``: 16, or 24 in blobs with a kind-layout section.
        self.vlen_mask = self._vlen_mask = w.vlen_mask
        self._fixed, self._elem = w.fixed, w.elem
        self._step = w.step
        if base is not None:
            if base.byte_order != self.byte_order:
                raise BTFFormatError("split BTF and its base have different byte orders")
            self.start_id = base.next_id
        else:
            self.start_id = 1
        base_strs = base._strs if base is not None else None
        self._strs: Strings = Strings(self._data, self._ss, self._se, base_strs)
        self._str_bytes = self._strs.bytes_at
        self._str_base = self._strs.start
        if base is None and self._se == self._ss:  # libbpf's btf_parse_str_sec
            raise BTFFormatError("string section is empty (only split BTF may have none)", offset=self._ss)
        if base is None and self._data[self._ss] != 0:
            raise BTFFormatError("string section does not start with an empty string", offset=self._ss)
        # Name index, built on first use and published in one assignment (threads may look
        # names up while another builds it), or read from a shared index.
        self._nx: NameIndex | None = None
        self._shared: SharedIndex | None = None
        self._ckpt: Any
        if index is not None:
            self._adopt(index)
        else:
            self._ckpt, self.count = w.offset_pass(self.start_id)
        self.next_id = self.start_id + self.count
        if self.next_id - 1 > BTF_MAX_TYPE:
            raise BTFFormatError(f"{self.next_id - 1} types exceed BTF_MAX_TYPE")
        self._closed = False
        self._ptr_size: int | None = None
        self._dense: array[int] | None = None  # every offset, only while dense() is active

    # ------------------------------------------------------------------ offsets

    def _blob(self) -> tuple[Any, int, int]:
        return self._data, self.header.start, self.header.end

    def _adopt(self, index: Any) -> None:
        """Use a shared index: its checkpoints and names replace the offset pass and the name
        hash. The type section's tail is walked from the last checkpoint, so a count or a last
        checkpoint that does not fit the blob is caught here."""
        from .index import decode

        shared = decode(index, self._blob(), start_id=self.start_id)
        nwords = (self._te - self._ts) // 4
        ck = shared.checkpoints
        if shared.count == 0 or not len(ck) or ck[0] != 0 or ck[-1] >= nwords:
            if shared.count or nwords:
                raise IndexError_("index checkpoints do not fit the type section")
        o = self._ts + 4 * ck[-1] if len(ck) else self._ts
        for _ in range((shared.count - 1) % CHECKPOINT + 1 if shared.count else 0):
            if o + 12 > self._te:
                raise IndexError_("index type count does not fit the type section")
            o = self._step(o)
        if o != self._te:
            raise IndexError_("index type count does not fit the type section")
        self._ckpt, self.count = ck, shared.count
        self._shared = shared
        self._nx = shared.names

    def export_index(self) -> bytes:
        """This spec's index (checkpoints and names, building the names if needed) in the
        shared format of :mod:`btfd.btf.index`, for :class:`Spec` ``(..., index=...)``."""
        nx = self._nx or self._build_name_index()
        return encode_index(blob=self._blob(), start_id=self.start_id, count=self.count,
                            checkpoints=array("I", self._ckpt), names=nx)

    @property
    def shared_index_bytes(self) -> int:
        """Bytes of the shared index this spec reads (0 when its index is its own)."""
        return self._shared.nbytes if self._shared is not None else 0

    def _offset(self, tid: int) -> int:
        """Absolute byte offset of one of *this* spec's own types."""
        rel = tid - self.start_id
        dense = self._dense  # read once: another thread may end its dense() block meanwhile
        if dense is not None:
            return self._ts + 4 * dense[rel]
        o: int = self._ts + 4 * self._ckpt[rel >> _CK_SHIFT]
        for _ in range(rel & (CHECKPOINT - 1)):
            o = self._step(o)
        return o

    @contextmanager
    def dense(self) -> Iterator[None]:
        """For bulk work (dumps): keep every type's offset (4 bytes a type, this spec and its
        bases) for the duration of the ``with`` block, so id -> record is one array index."""
        self._check_not_closed()
        if self._dense is not None:
            yield
            return
        outer = self.base.dense() if self.base is not None else nullcontext()
        with outer:
            dense: array[int] = array("I")
            o, i = self._ts, 0
            step = self._step
            while o < self._te:
                dense.append(i)
                n = step(o)
                i += (n - o) >> 2
                o = n
            self._dense = dense
            try:
                yield
            finally:
                self._dense = None

    def _id_at(self, o: int) -> int:
        """Type id of the record at absolute offset ``o`` (inverse of :meth:`_offset`)."""
        w = (o - self._ts) // 4
        c = bisect_right(self._ckpt, w) - 1
        tid: int = self.start_id + (c << _CK_SHIFT)
        p: int = self._ts + 4 * self._ckpt[c]
        while p < o:
            p = self._step(p)
            tid += 1
        if p != o:  # only a hostile shared index names an offset inside a record
            raise IndexError_(f"offset {o} is not the start of a type record")
        return tid

    def _locate(self, tid: int) -> tuple[Spec, int]:
        """(owning spec, absolute offset) of a non-void type id."""
        spec: Spec | None = self
        while spec is not None:
            if tid >= spec.start_id:
                if tid >= spec.next_id or tid <= 0:
                    break
                if spec._closed:
                    spec._check_not_closed()
                return spec, spec._offset(tid)
            spec = spec.base
        raise BTFNotFoundError(f"no type with id {tid} (ids are 0..{self.next_id - 1})")

    # ------------------------------------------------------------------ strings

    def string(self, off: int) -> str:
        """The string at offset ``off`` of the (split) string section."""
        return self._strs.text(off)

    # ------------------------------------------------------------------ basic accessors

    @property
    def size(self) -> int:
        """Bytes of this blob (header and sections)."""
        return self.header.end - self.header.start

    @property
    def string_offsets_end(self) -> int:
        """The first string offset past this spec's strings (and its bases'): where a blob
        split over this one starts its own."""
        return self._strs.size

    @property
    def data(self) -> Any:
        """The borrowed buffer this spec reads."""
        return self._data

    def __len__(self) -> int:
        """Number of type ids, void and base types included (``next_id``)."""
        return self.next_id

    def __contains__(self, tid: object) -> bool:
        return isinstance(tid, int) and 0 <= tid < self.next_id

    def raw(self, tid: int) -> tuple[int, int, int]:
        """The wire ``(name_off, info, size_or_type)`` of a type."""
        if tid == 0:
            return (0, 0, 0)
        spec, o = self._locate(tid)
        rec: tuple[int, int, int] = spec._rec(spec._data, o)
        return rec

    def record_span(self, tid: int) -> tuple[Spec, int, int]:
        """(owning spec, start, end): the absolute byte range of a type's wire record."""
        spec, o = self._locate(tid)
        return spec, o, spec._step(o)

    def kind(self, tid: int) -> Kind:
        if tid == 0:
            return Kind.UNKN
        k = kind_of(self.raw(tid)[1])
        try:
            return Kind(k)
        except ValueError:
            raise BTFUnsupportedError(f"type [{tid}] has unknown kind {k}") from None

    def vlen(self, tid: int) -> int:
        """The vlen field of a type's record (masked as its own blob's header says)."""
        if tid == 0:
            return 0
        spec, o = self._locate(tid)
        info: int = spec._u32(spec._data, o + 4)[0]
        return info & spec._vlen_mask

    def type_name(self, tid: int) -> str:
        """Name of a type ("" when anonymous or void)."""
        if tid == 0:
            return ""
        return self.string(self.raw(tid)[0])

    # ------------------------------------------------------------------ decoding

    def type(self, tid: int) -> T.Type:
        """Decode type ``tid`` (0 is :class:`~btfd.btf.types.Void`)."""
        if tid == 0:
            return T.Void(0, "")
        spec, o = self._locate(tid)
        return spec._decode(tid, o)

    def __getitem__(self, tid: int) -> T.Type:
        return self.type(tid)

    def _decode(self, tid: int, o: int) -> T.Type:
        data = self._data
        name_off, info, st = self._rec(data, o)
        name = self.string(name_off) if name_off else ""
        k = kind_of(info)
        vlen = info & self._vlen_mask
        kflag = bool(info >> 31)
        p = o + 12
        if k == Kind.INT:
            (enc,) = self._u32(data, p)
            return T.Int(tid, name, st, (enc >> 24) & 0x0F, (enc >> 16) & 0xFF, enc & 0xFF)
        if k == Kind.PTR:
            return T.Ptr(tid, name, self._ref(st, o))
        if k == Kind.ARRAY:
            et, it, n = self._rec(data, p)
            return T.Array(tid, name, self._ref(et, o), self._ref(it, o), n)
        if k == Kind.STRUCT or k == Kind.UNION:
            members = []
            for _ in range(vlen):
                mn, mt, moff = self._rec(data, p)
                if kflag:
                    bo, bs = moff & 0xFFFFFF, moff >> 24
                else:
                    bo, bs = moff, 0
                members.append(T.Member(self.string(mn) if mn else "", self._ref(mt, p), bo, bs))
                p += 12
            cls = T.Struct if k == Kind.STRUCT else T.Union
            return cls(tid, name, st, tuple(members))
        if k == Kind.ENUM:
            values = []
            for _ in range(vlen):
                vn, v = self._u32pair(data, p)
                values.append(T.EnumValue(self.string(vn), v - (1 << 32) if kflag and v >= 1 << 31 else v))
                p += 8
            return T.Enum(tid, name, st, kflag, tuple(values), False)
        if k == Kind.ENUM64:
            values = []
            for _ in range(vlen):
                vn, lo, hi = self._rec(data, p)
                v = (hi << 32) | lo
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                values.append(T.EnumValue(self.string(vn), v))
                p += 12
            return T.Enum(tid, name, st, kflag, tuple(values), True)
        if k == Kind.FWD:
            return T.Fwd(tid, name, kflag)
        if k == Kind.TYPEDEF:
            return T.Typedef(tid, name, self._ref(st, o))
        if k == Kind.VOLATILE:
            return T.Volatile(tid, name, self._ref(st, o))
        if k == Kind.CONST:
            return T.Const(tid, name, self._ref(st, o))
        if k == Kind.RESTRICT:
            return T.Restrict(tid, name, self._ref(st, o))
        if k == Kind.TYPE_TAG:
            return T.TypeTag(tid, name, self._ref(st, o))
        if k == Kind.FUNC:
            return T.Func(tid, name, self._ref(st, o), vlen)
        if k == Kind.FUNC_PROTO:
            params = []
            for _ in range(vlen):
                pn, pt = self._u32pair(data, p)
                params.append(T.Param(self.string(pn) if pn else "", self._ref(pt, p)))
                p += 8
            return T.FuncProto(tid, name, self._ref(st, o), tuple(params))
        if k == Kind.VAR:
            (linkage,) = self._u32(data, p)
            return T.Var(tid, name, self._ref(st, o), linkage)
        if k == Kind.DATASEC:
            vs = []
            for _ in range(vlen):
                vt, voff, vsz = self._rec(data, p)
                vs.append(T.VarSecinfo(self._ref(vt, p), voff, vsz))
                p += 12
            return T.Datasec(tid, name, st, tuple(vs))
        if k == Kind.FLOAT:
            return T.Float(tid, name, st)
        if k == Kind.DECL_TAG:
            (cidx,) = self._i32(data, p)
            return T.DeclTag(tid, name, self._ref(st, o), cidx)
        raise BTFUnsupportedError(f"type [{tid}] has kind {k}, which this code cannot decode", offset=o)

    def _ref(self, ref: int, at: int) -> int:
        if ref >= self.next_id:
            raise BTFFormatError(
                f"reference to type id {ref}, but the last id is {self.next_id - 1}", offset=at
            )
        return ref

    def refs(self, tid: int) -> list[int]:
        """Type ids a type refers to, read straight from the record without decoding names:
        members (STRUCT/UNION), element then index type (ARRAY), return then parameter types
        (FUNC_PROTO), variables (DATASEC), else the one referenced type (or none)."""
        if tid == 0:
            return []
        spec, o = self._locate(tid)
        data = spec._data
        _, info, st = spec._rec(data, o)
        k = kind_of(info)
        vlen = info & spec._vlen_mask
        u32 = spec._u32
        p = o + RECORD_SIZE
        if k == Kind.STRUCT or k == Kind.UNION:
            out = [u32(data, p + MEMBER.type_at + MEMBER.size * i)[0] for i in range(vlen)]
        elif k == Kind.FUNC_PROTO:
            out = [st] + [u32(data, p + PARAM.type_at + PARAM.size * i)[0] for i in range(vlen)]
        elif k == Kind.ARRAY:
            et, it, _ = spec._rec(data, p)  # struct btf_array { type, index_type, nelems }
            out = [et, it]
        elif k == Kind.DATASEC:
            out = [u32(data, p + VAR_SECINFO.type_at + VAR_SECINFO.size * i)[0] for i in range(vlen)]
        elif k in (Kind.INT, Kind.ENUM, Kind.ENUM64, Kind.FWD, Kind.FLOAT):
            return []
        else:
            out = [st]
        for r in out:
            if r >= self.next_id:
                raise BTFFormatError(
                    f"type [{tid}] refers to type id {r}, but the last id is {self.next_id - 1}", offset=o
                )
        return out

    def types(self, kind: Kind | None = None) -> Iterator[T.Type]:
        """This spec's own types in id order (not the base's), optionally of one kind."""
        self._check_not_closed()
        o = self._ts
        for tid in range(self.start_id, self.next_id):
            if kind is None or kind_of(self._u32(self._data, o + 4)[0]) == kind:
                yield self._decode(tid, o)
            o = self._step(o)

    def iter_raw(self, start_id: int | None = None) -> Iterator[tuple[int, int, int, int]]:
        """``(id, name_off, info, size_or_type)`` of own types from ``start_id`` on, walking the
        records sequentially (cheap: nothing is decoded). For listings and filters."""
        self._check_not_closed()
        tid = self.start_id if start_id is None else max(start_id, self.start_id)
        if tid >= self.next_id:
            return
        o = self._offset(tid)
        data, rec, step = self._data, self._rec, self._step
        while tid < self.next_id:
            name_off, info, st = rec(data, o)
            yield tid, name_off, info, st
            o = step(o)
            tid += 1

    def ids(self) -> range:
        """This spec's own type ids."""
        return range(self.start_id, self.next_id)

    # ------------------------------------------------------------------ name index

    def _build_name_index(self) -> NameIndex:
        # Published complete, in one assignment: a concurrent builder computes the same
        # value and overwrites it harmlessly; readers see either None or a whole index.
        nx = build_names(self._w, self._strs, self.start_id, self.count)
        self._nx = nx
        return nx

    def build_name_index(self) -> None:
        """Build the name index now instead of on the first lookup by name (daemons do this
        before they report ready). Idempotent."""
        self._check_not_closed()
        if self._nx is None:
            self._build_name_index()

    def _own_named(self, ess: bytes) -> Iterator[tuple[int, bytes, int]]:
        """(absolute offset, full name, info) of own types whose essential name is ``ess``."""
        self._check_not_closed()
        nx = self._nx
        if nx is None:
            nx = self._build_name_index()
        if nx.first_named is not None:
            yield from self._sorted_named(ess, nx.first_named)
            return
        data, ts = self._data, self._ts
        for w in nx.bucket(ess, (self._te - ts) >> 2):
            o = ts + 4 * w
            name_off, info, _ = self._rec(data, o)
            nm = self._str_bytes(name_off)
            # "foo___a" has essential name "foo", so it must not answer a query for "foo___a"
            # (the essential name of "foo___a___b"): compare essential names, never full ones.
            if nm.startswith(ess) and (nm == ess and b"___" not in nm or essential(nm) == ess):
                yield o, nm, info

    def _name_reader(self) -> Any:
        """A function: record offset -> its name's bytes (own strings read inline)."""
        data, rec, strs = self._data, self._rec, self._str_bytes
        find, sbase, ss, se = data.find, self._str_base, self._ss, self._se

        def name_at(o: int) -> bytes:
            off: int = rec(data, o)[0]
            if off >= sbase and (a := ss + off - sbase) < se:
                e = find(b"\0", a, se)
                if e >= 0:
                    return bytes(data[a:e])
            return strs(off)

        return name_at

    def _sorted_lower_bound(self, key: bytes, lo_id: int, name_at: Any) -> tuple[int, int]:
        """(id, offset) of the first named type at or after ``lo_id`` whose name is >= ``key``
        in a name-sorted blob (named types from ``lo_id`` on): a binary search over the
        checkpointed records (one record read a step), then a walk inside one block."""
        ck, ts = self._ckpt, self._ts
        first_c = (lo_id - self.start_id + CHECKPOINT - 1) >> _CK_SHIFT
        lo, hi = first_c, len(ck)
        while lo < hi:
            mid = (lo + hi) >> 1
            if name_at(ts + 4 * ck[mid]) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo > first_c:  # checkpoint lo - 1 sorts before key: the answer is past it
            tid = self.start_id + ((lo - 1) << _CK_SHIFT)
            o = ts + 4 * ck[lo - 1]
        else:
            tid = lo_id
            o = self._offset(lo_id)
        step, end = self._step, self.next_id
        while tid < end and name_at(o) < key:
            o = step(o)
            tid += 1
        return tid, o

    def _sorted_named(self, ess: bytes, lo_id: int) -> Iterator[tuple[int, bytes, int]]:
        """Types named ``ess`` exactly, then its flavors ``ess___x``: all names starting with
        ``ess`` form one contiguous run starting at the first name >= ``ess``."""
        name_at, u32, data, step, end = self._name_reader(), self._u32, self._data, self._step, self.next_id
        tid, o = self._sorted_lower_bound(ess, lo_id, name_at)
        while tid < end and (nm := name_at(o)) == ess:
            if essential(nm) == ess:
                yield o, nm, u32(data, o + 4)[0]
            o = step(o)
            tid += 1
        if tid >= end or not name_at(o).startswith(ess):
            return  # no name has the prefix: no flavors (the common miss ends here)
        key = ess + b"___"
        if name_at(o) < key:
            tid, o = self._sorted_lower_bound(key, tid, name_at)
        while tid < end and (nm := name_at(o)).startswith(key):
            if essential(nm) == ess:
                yield o, nm, u32(data, o + 4)[0]
            o = step(o)
            tid += 1

    def find_ids(self, name: str, kind: Kind | None = None) -> list[int]:
        """Ids of every type named exactly ``name`` (optionally of one kind), base first,
        in id order."""
        q = name.encode()
        if not q:
            return []
        out = self.base.find_ids(name, kind) if self.base is not None else []
        own = [
            o for o, nm, info in self._own_named(essential(q))
            if nm == q and (kind is None or kind_of(info) == kind)
        ]
        out.extend(self._id_at(o) for o in sorted(own))
        return out

    def find(self, name: str, kind: Kind | None = None) -> list[T.Type]:
        """Every type named ``name`` (optionally of one kind), decoded."""
        return [self.type(t) for t in self.find_ids(name, kind)]

    def find_one(self, name: str, kind: Kind | None = None) -> T.Type:
        """The first type named ``name``; :class:`BTFNotFoundError` when there is none."""
        ids = self.find_ids(name, kind)
        if not ids:
            what = f"{kind.name.lower()} " if kind is not None else ""
            raise BTFNotFoundError(f"no {what}type named {name!r}")
        return self.type(ids[0])

    def find_essential(self, name: str, kinds: frozenset[Kind] | set[Kind] | None = None) -> list[int]:
        """CO-RE candidate search: ids of types whose essential name equals ``name``'s
        essential name, of one of ``kinds``; base first, in id order."""
        ess = essential(name.encode())
        out = self.base.find_essential(name, kinds) if self.base is not None else []
        own = [
            o for o, _nm, info in self._own_named(ess)
            if kinds is None or kind_of(info) in kinds
        ]
        out.extend(self._id_at(o) for o in sorted(own))
        return out

    def index_bytes(self) -> dict[str, int]:
        """Bytes this spec's indexes hold: ``offsets`` and ``names`` built by this process
        (private memory), ``shared`` read from a shared index (a mapping others share)."""
        if self._shared is not None:
            return {"offsets": 0, "names": 0, "shared": self._shared.nbytes}
        nx = self._nx
        return {"offsets": 4 * len(self._ckpt), "names": nx.nbytes if nx is not None else 0,
                "shared": 0}

    @property
    def name_sorted(self) -> bool | None:
        """True when the blob is name-sorted (known once the name index was asked for)."""
        nx = self._nx
        return None if nx is None else nx.first_named is not None

    # ------------------------------------------------------------------ semantics

    def skip_mods(self, tid: int, *, typedefs: bool = True) -> int:
        """Follow const/volatile/restrict/type_tag (and typedefs, unless told not to)."""
        kinds = _MODS_AND_TYPEDEF if typedefs else _MODIFIERS
        for _ in range(MAX_RESOLVE_DEPTH):
            if tid == 0:
                return 0
            _, info, st = self.raw(tid)
            if kind_of(info) not in kinds:
                return tid
            tid = self._ref(st, 0)
        raise BTFCycleError(f"type chain from [{tid}] is longer than {MAX_RESOLVE_DEPTH} (a cycle?)")

    def resolve(self, tid: int) -> T.Type:
        """The type behind typedefs and modifiers."""
        return self.type(self.skip_mods(tid))

    @property
    def ptr_size(self) -> int:
        """Pointer size guessed like libbpf's determine_ptr_size(): the size of a 'long'."""
        if self._ptr_size is None:
            self._ptr_size = 8
            spec: Spec | None = self
            while spec is not None and spec.base is not None:
                spec = spec.base
            assert spec is not None
            spec._check_not_closed()
            o = spec._ts
            for _ in spec.ids():
                name_off, info, sz = spec._rec(spec._data, o)
                if kind_of(info) == Kind.INT and sz in (4, 8):
                    if spec._str_bytes(name_off) in _LONG_NAMES:
                        self._ptr_size = sz
                        break
                o = spec._step(o)
        return self._ptr_size

    def size_of(self, tid: int) -> int:
        """Size in bytes, like libbpf's btf__resolve_size()."""
        nelems = 1
        for _ in range(MAX_RESOLVE_DEPTH):
            if tid == 0:
                raise BTFFormatError("void has no size")
            _, info, st = self.raw(tid)
            k = kind_of(info)
            if k in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64,
                     Kind.DATASEC, Kind.FLOAT):
                size = st * nelems
                if size > 0xFFFFFFFF:
                    raise BTFFormatError(f"size of [{tid}] overflows 32 bits")
                return size
            if k == Kind.PTR:
                return self.ptr_size * nelems
            if k in (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.VAR,
                     Kind.DECL_TAG, Kind.TYPE_TAG):
                tid = self._ref(st, 0)
                continue
            if k == Kind.ARRAY:
                a = self.type(tid)
                assert isinstance(a, T.Array)
                nelems *= a.nelems
                if nelems > 0xFFFFFFFF:
                    raise BTFFormatError(f"array [{tid}] size overflows 32 bits")
                tid = a.type
                continue
            raise BTFFormatError(f"type [{tid}] of kind {k} has no size")
        raise BTFCycleError(f"size of [{tid}]: chain longer than {MAX_RESOLVE_DEPTH} (a cycle?)")

    def align_of(self, tid: int, *, memo: dict[int, int] | None = None) -> int:
        """Alignment in bytes, like libbpf's btf__align_of() (1 for packed composites).
        ``memo`` (id -> alignment) is read and filled, for callers asking again and again."""
        return self._align_of(tid, 0, {} if memo is None else memo)

    def _align_of(self, tid: int, depth: int, memo: dict[int, int]) -> int:
        a = memo.get(tid)
        if a is not None:
            return a
        if depth > MAX_ALIGN_DEPTH:
            raise BTFCycleError(f"alignment of [{tid}]: nesting deeper than {MAX_ALIGN_DEPTH} (a cycle?)")
        t = self.type(tid)
        if isinstance(t, (T.Int, T.Enum, T.Float)):
            a = min(self.ptr_size, t.size) or 1
        elif isinstance(t, T.Ptr):
            a = self.ptr_size
        elif isinstance(t, (T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag, T.Array)):
            a = self._align_of(t.type, depth + 1, memo)
        elif isinstance(t, (T.Struct, T.Union)):
            a = composite_align(t, lambda m: self._align_of(m, depth + 1, memo))
        else:
            raise BTFFormatError(f"type [{tid}] ({t.kind.name}) has no alignment")
        memo[tid] = a
        return a

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        """Drop the reference to the buffer (so an mmap can be closed). Idempotent. Using
        the spec afterwards raises :class:`BTFClosedError` (so does using a split spec's
        types or strings that live in a closed base)."""
        self._closed = True
        self._data = b""
        self._w.data = b""
        self._strs.close(self.name)
        self._dense = None
        if self._shared is not None:  # views of a mapping: let it be unmapped
            self._ckpt = array("I")
            self._nx = None
            self._shared = None

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_not_closed(self) -> None:
        if self._closed:
            raise BTFClosedError(f"spec {self.name or '(unnamed)'} is closed")

    def __enter__(self) -> Spec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        split = f", split over {self.base.name or 'base'}" if self.base is not None else ""
        return (
            f"<Spec {self.name or '?'}: {self.count} types from [{self.start_id}], "
            f"{self.size} bytes, {self.byte_order}-endian{split}>"
        )
