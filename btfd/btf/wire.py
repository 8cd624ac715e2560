"""The wire layout of a blob's type section: where each record starts and how long it is.

Every record is a 12-byte ``struct btf_type`` (``name_off``, ``info``, ``size``/``type``),
then ``INFO_SIZE[kind]`` bytes, then ``vlen`` elements of ``ELEM_SIZE[kind]`` bytes
(include/uapi/linux/btf.h; a kind-layout section may describe more kinds). This module knows
lengths and offsets; :mod:`btfd.btf.spec` decodes records into the type model.
"""

from __future__ import annotations

import struct
import sys
from array import array
from typing import Any, NoReturn

from .errors import BTFFormatError, BTFUnsupportedError
from .header import BUILTIN_LAYOUT, Header
from .kinds import Kind, kind_of

__all__ = ["CHECKPOINT", "Records", "RECORD_SIZE", "MEMBER", "PARAM", "VAR_SECINFO", "ENUM_VALUE",
           "ENUM64_VALUE"]

#: One offset is kept every CHECKPOINT types (a power of two).
CHECKPOINT = 16
#: Bytes of ``struct btf_type``, before a kind's own data.
RECORD_SIZE = 12


class _Elem:
    """One vlen element's layout: its size and where its type id is (-1: it has none)."""

    __slots__ = ("size", "type_at")

    def __init__(self, size: int, type_at: int) -> None:
        self.size, self.type_at = size, type_at


MEMBER = _Elem(12, 4)  # struct btf_member { name_off, type, offset }
PARAM = _Elem(8, 4)  # struct btf_param { name_off, type }
VAR_SECINFO = _Elem(12, 0)  # struct btf_var_secinfo { type, offset, size }
ENUM_VALUE = _Elem(8, -1)  # struct btf_enum { name_off, val }
ENUM64_VALUE = _Elem(12, -1)  # struct btf_enum64 { name_off, val_lo32, val_hi32 }


class Records:
    """The type section ``data[ts:te]`` of a blob with ``header``: record lengths (its
    kind-layout section's, or the built-in ones) and unpackers in the blob's byte order."""

    def __init__(self, data: Any, header: Header) -> None:
        self.data = data
        self.ts, self.te = header.types_start, header.types_end
        self.byte_order = header.byte_order
        pfx = header.struct_prefix
        self.rec = struct.Struct(pfx + "III").unpack_from
        self.u32 = struct.Struct(pfx + "I").unpack_from
        self.i32 = struct.Struct(pfx + "i").unpack_from
        self.u32pair = struct.Struct(pfx + "II").unpack_from
        #: vlen bits of ``info``: 16, or 24 in blobs with a kind-layout section.
        self.vlen_mask = 0xFFFFFF if header.layout else 0xFFFF
        # Record length in 4-byte words: fixed[kind] + vlen * elem[kind]. Unknown kinds get
        # a fixed length past any section so the fast pass stops; explain() says why.
        self.fixed = [1 << 40] * 128
        self.elem = [0] * 128
        for k, (info_sz, elem_sz) in enumerate((header.layout or BUILTIN_LAYOUT)[:128]):
            self.fixed[k] = 3 + info_sz // 4
            self.elem[k] = elem_sz // 4
        self.fixed[0] = 1 << 40  # BTF_KIND_UNKN never appears in the type section

    @property
    def nwords(self) -> int:
        return (self.te - self.ts) >> 2

    def native_words(self) -> Any:
        """The type section as u32 words in this host's order: a memoryview over the buffer
        (release it) when the blob's order is the host's, else None."""
        if self.byte_order != sys.byteorder:
            return None
        return memoryview(self.data)[self.ts : self.te].cast("B").cast("I")

    def step(self, o: int) -> int:
        """Offset of the record after the one at ``o``."""
        info: int = self.u32(self.data, o + 4)[0]
        k = (info >> 24) & 0x7F  # kind_of(), inlined: hot loop
        return o + 4 * (self.fixed[k] + (info & self.vlen_mask) * self.elem[k])

    def offset_pass(self, start_id: int) -> tuple[array[int], int]:
        """One pass over the type section: (word offset of every ``CHECKPOINT``-th record,
        record count). A section that does not end exactly at a record's end is explained by
        :meth:`explain`."""
        ts, te = self.ts, self.te
        nwords = (te - ts) // 4
        if self.byte_order == sys.byteorder:
            words: Any = memoryview(self.data)[ts:te].cast("B").cast("I")
        else:  # a byte-swapped copy for the pass only, dropped right after
            words = array("I", bytes(self.data[ts:te]))
            words.byteswap()
        ck: array[int] = array("I")
        fixed, elem, mask = self.fixed, self.elem, self.vlen_mask
        i = 0
        cnt = 0
        try:
            while i < nwords:
                if not cnt & (CHECKPOINT - 1):
                    ck.append(i)
                info = words[i + 1]
                k = (info >> 24) & 0x7F  # kind_of(), inlined: hot loop
                i += fixed[k] + (info & mask) * elem[k]
                cnt += 1
        except IndexError:
            i = nwords + 1
        finally:
            if isinstance(words, memoryview):
                words.release()
        if i != nwords:
            self.explain(start_id)
        return ck, cnt

    def explain(self, start_id: int) -> NoReturn:
        """Slow re-walk that names the first bad record; always raises."""
        o = self.ts
        tid = start_id
        while o < self.te:
            if o + 12 > self.te:
                raise BTFFormatError(f"type [{tid}] record truncated", offset=o)
            _, info, _ = self.rec(self.data, o)
            k = kind_of(info)
            if self.fixed[k] >= 1 << 40:
                if k < len(Kind) and k:
                    raise BTFFormatError(f"type [{tid}] has invalid kind {k}", offset=o)
                raise BTFUnsupportedError(
                    f"type [{tid}] has unknown kind {k} and the blob has no layout section",
                    offset=o,
                )
            n = 4 * (self.fixed[k] + (info & self.vlen_mask) * self.elem[k])
            if o + n > self.te:
                raise BTFFormatError(
                    f"type [{tid}] {Kind(k).name if k < len(Kind) else k} record of {n} bytes "
                    f"runs past the type section",
                    offset=o,
                )
            o += n
            tid += 1
        raise BTFFormatError("type section is inconsistent", offset=self.ts)
