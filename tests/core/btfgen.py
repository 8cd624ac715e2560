"""A tiny BTF encoder for tests: build types by hand (either byte order, split over a base).

Independent of btfd's own writer on purpose: tests must not check the library with itself.
"""

from __future__ import annotations

import struct
from typing import Any

from btfd.btf import Kind, Spec

__all__ = ["BtfBuilder"]


class BtfBuilder:
    def __init__(self, base: Spec | None = None) -> None:
        self.base = base
        self.start_id = base.next_id if base is not None else 1
        self.str_base = 0
        if base is not None:
            self.str_base = _str_len(base)
        self.strs = bytearray(b"" if base is not None else b"\0")
        self._str_idx: dict[str, int] = {}
        self.recs: list[tuple[int, int, int, list[tuple[str, tuple[Any, ...]]]]] = []

    # ---------------------------------------------------------------- strings
    def s(self, name: str) -> int:
        if not name:
            return 0
        if name not in self._str_idx:
            self._str_idx[name] = self.str_base + len(self.strs)
            self.strs += name.encode() + b"\0"
        return self._str_idx[name]

    def _add(self, name: str, kind: Kind, vlen: int, st: int, extra: list[tuple[str, tuple[Any, ...]]],
             kflag: bool = False) -> int:
        info = (int(kind) << 24) | vlen | (1 << 31 if kflag else 0)
        self.recs.append((self.s(name), info, st, extra))
        return self.start_id + len(self.recs) - 1

    # ---------------------------------------------------------------- kinds
    def int(self, name: str, size: int, signed: bool = False, bits: int | None = None,
            offset: int = 0, char: bool = False, boolean: bool = False) -> int:
        enc = (1 if signed else 0) | (2 if char else 0) | (4 if boolean else 0)
        word = (enc << 24) | (offset << 16) | (bits if bits is not None else size * 8)
        return self._add(name, Kind.INT, 0, size, [("I", (word,))])

    def ptr(self, to: int) -> int:
        return self._add("", Kind.PTR, 0, to, [])

    def array(self, elem: int, n: int, index: int = 0) -> int:
        return self._add("", Kind.ARRAY, 0, 0, [("III", (elem, index, n))])

    def struct(self, name: str, size: int, members: list[tuple[str, int, int] | tuple[str, int, int, int]],
               union: bool = False) -> int:
        """members: (name, type, bit_offset[, bitfield_size])."""
        kflag = any(len(m) == 4 for m in members)
        extra = []
        for m in members:
            bo = m[2]
            if kflag:
                bo = ((m[3] if len(m) == 4 else 0) << 24) | m[2]  # type: ignore[misc]
            extra.append(("III", (self.s(m[0]), m[1], bo)))
        return self._add(name, Kind.UNION if union else Kind.STRUCT, len(members), size, extra, kflag)

    def union(self, name: str, size: int, members: list[tuple[str, int, int]]) -> int:
        return self.struct(name, size, members, union=True)

    def enum(self, name: str, size: int, values: list[tuple[str, int]], signed: bool = False) -> int:
        extra = [("Ii", (self.s(n), v - (1 << 32) if v >= 1 << 31 else v)) for n, v in values]
        return self._add(name, Kind.ENUM, len(values), size, extra, signed)

    def enum64(self, name: str, size: int, values: list[tuple[str, int]], signed: bool = False) -> int:
        extra = []
        for n, v in values:
            v &= (1 << 64) - 1
            extra.append(("III", (self.s(n), v & 0xFFFFFFFF, v >> 32)))
        return self._add(name, Kind.ENUM64, len(values), size, extra, signed)

    def fwd(self, name: str, union: bool = False) -> int:
        return self._add(name, Kind.FWD, 0, 0, [], union)

    def typedef(self, name: str, to: int) -> int:
        return self._add(name, Kind.TYPEDEF, 0, to, [])

    def const(self, to: int) -> int:
        return self._add("", Kind.CONST, 0, to, [])

    def volatile(self, to: int) -> int:
        return self._add("", Kind.VOLATILE, 0, to, [])

    def float(self, name: str, size: int) -> int:
        return self._add(name, Kind.FLOAT, 0, size, [])

    def func_proto(self, ret: int, params: list[tuple[str, int]]) -> int:
        return self._add("", Kind.FUNC_PROTO, len(params), ret, [("II", (self.s(n), t)) for n, t in params])

    # ---------------------------------------------------------------- output
    def encode(self, byte_order: str = "little") -> bytes:
        p = "<" if byte_order == "little" else ">"
        types = bytearray()
        for name_off, info, st, extra in self.recs:
            types += struct.pack(p + "III", name_off, info, st)
            for fmt, vals in extra:
                types += struct.pack(p + fmt, *vals)
        hdr = struct.pack(p + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self.strs))
        return hdr + bytes(types) + bytes(self.strs)


def _str_len(spec: Spec) -> int:
    total = 0
    s: Spec | None = spec
    while s is not None:
        total += s.header.strs_end - s.header.strs_start
        s = s.base
    return total
