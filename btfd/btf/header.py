"""The BTF header and the optional kind-layout section, validated the way libbpf does
(btf_parse_hdr / btf_parse_str_sec / btf_parse_type_sec in libbpf's btf.c)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import BTFFormatError
from .kinds import ELEM_SIZE, INFO_SIZE, Kind

__all__ = ["BTF_MAGIC", "Header", "parse_header", "LayoutTable"]

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BASE_HDR_LEN = 24  # magic..str_len
LAYOUT_HDR_LEN = 32  # + layout_off, layout_len (kernels from 7.1)
LAYOUT_ENTRY = 4  # struct btf_layout { u8 info_sz; u8 elem_sz; u16 flags; }

#: (info_sz, elem_sz) by kind index.
LayoutTable = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Header:
    """A validated header. Section offsets are absolute (from the start of the buffer)."""

    byte_order: str  # "little" | "big"
    version: int
    flags: int
    hdr_len: int
    types_start: int
    types_end: int
    strs_start: int
    strs_end: int
    layout: LayoutTable | None
    start: int  # absolute offset of the header itself
    layout_start: int = 0  # absolute byte range of the layout section (0, 0 when absent)
    layout_end: int = 0

    @property
    def struct_prefix(self) -> str:
        return "<" if self.byte_order == "little" else ">"

    @property
    def end(self) -> int:
        """Absolute offset just past the last section."""
        return max(self.types_end, self.strs_end, self.layout_end)


def _builtin_layout() -> LayoutTable:
    return tuple((INFO_SIZE.get(k, 0), ELEM_SIZE.get(k, 0)) for k in range(len(Kind)))


BUILTIN_LAYOUT = _builtin_layout()


def parse_header(data: bytes, start: int = 0, length: int | None = None) -> Header:
    """Validate the header of the BTF blob at ``data[start:start+length]``.

    Checks in libbpf's order: magic (a byte-swapped magic means the other byte order),
    version, ``hdr_len``, sections inside the data, the string section after the end of the
    type section (libbpf's btf_parse_hdr: ``type_off + type_len <= str_off``), 4-byte
    alignment of the type section, a NUL-terminated string section. A kind-layout section
    (kernels >= 7.1 write it between types and strings) must be 4-byte aligned, in bounds
    and overlap neither other section. That a base blob's strings are not empty and start
    with "" is checked by :class:`~btfd.btf.Spec`, which knows whether there is a base.
    """
    size = (len(data) - start) if length is None else length
    if size < BASE_HDR_LEN:
        raise BTFFormatError(f"BTF header truncated: {size} bytes, need {BASE_HDR_LEN}", offset=start)
    (magic,) = struct.unpack_from("<H", data, start)
    if magic == BTF_MAGIC:
        order = "<"
    elif magic == 0x9FEB:
        order = ">"
    else:
        raise BTFFormatError(f"bad BTF magic {magic:#06x}, expected 0xeb9f", offset=start)
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        order + "HBBIIIII", data, start
    )
    if version != BTF_VERSION:
        raise BTFFormatError(f"unsupported BTF version {version}", offset=start + 2)
    if hdr_len < BASE_HDR_LEN:
        raise BTFFormatError(f"BTF hdr_len {hdr_len} is shorter than {BASE_HDR_LEN}", offset=start + 4)
    if hdr_len > size:
        raise BTFFormatError(f"BTF hdr_len {hdr_len} runs past the data ({size} bytes)", offset=start + 4)
    layout: LayoutTable | None = None
    layout_off = layout_len = 0
    if hdr_len > BASE_HDR_LEN:
        known = min(hdr_len, LAYOUT_HDR_LEN)
        extra = bytes(data[start + known : start + hdr_len])
        if any(extra):
            raise BTFFormatError(
                f"BTF header has {hdr_len - known} unknown non-zero trailing bytes", offset=start + known
            )
        if hdr_len >= LAYOUT_HDR_LEN:
            layout_off, layout_len = struct.unpack_from(order + "II", data, start + BASE_HDR_LEN)
    body = size - hdr_len
    if type_off > body or type_len > body - type_off:
        raise BTFFormatError(
            f"type section [{type_off}, +{type_len}) runs past the data ({body} bytes)", offset=start + 8
        )
    if str_off > body or str_len > body - str_off:
        raise BTFFormatError(
            f"string section [{str_off}, +{str_len}) runs past the data ({body} bytes)", offset=start + 16
        )
    if type_off % 4:
        raise BTFFormatError(f"type section offset {type_off} is not 4-byte aligned", offset=start + 8)
    if type_len % 4:
        raise BTFFormatError(f"type section length {type_len} is not a multiple of 4", offset=start + 12)
    if type_off + type_len > str_off:
        raise BTFFormatError(
            f"invalid section layout: type data at {type_off} + {type_len}, string data at "
            f"{str_off} + {str_len} (strings must follow the types; sections overlap or are swapped)",
            offset=start + 8,
        )
    if layout_len:
        lay_end = layout_off + layout_len
        for name, off, ln in (("type", type_off, type_len), ("string", str_off, str_len)):
            if ln and off < lay_end and layout_off < off + ln:
                raise BTFFormatError(
                    f"layout section [{layout_off}, +{layout_len}) overlaps the {name} section "
                    f"[{off}, +{ln})",
                    offset=start + 24,
                )
    if layout_len:
        layout = _parse_layout(data, start, hdr_len, size, order, layout_off, layout_len)
    base = start + hdr_len
    strs_start, strs_end = base + str_off, base + str_off + str_len
    if str_len and data[strs_end - 1] != 0:
        raise BTFFormatError("string section is not NUL-terminated", offset=strs_end - 1)
    return Header(
        byte_order="little" if order == "<" else "big",
        version=version,
        flags=flags,
        hdr_len=hdr_len,
        types_start=base + type_off,
        types_end=base + type_off + type_len,
        strs_start=strs_start,
        strs_end=strs_end,
        layout=layout,
        start=start,
        layout_start=base + layout_off if layout is not None else 0,
        layout_end=base + layout_off + layout_len if layout is not None else 0,
    )


def _parse_layout(
    data: bytes, start: int, hdr_len: int, size: int, order: str, off: int, length: int
) -> LayoutTable:
    body = size - hdr_len
    if off > body or length > body - off:
        raise BTFFormatError(f"layout section [{off}, +{length}) runs past the data", offset=start + 24)
    if off % 4 or length % LAYOUT_ENTRY:
        raise BTFFormatError("layout section is misaligned", offset=start + 24)
    base = start + hdr_len + off
    entries = []
    for i in range(length // LAYOUT_ENTRY):
        info_sz, elem_sz, _flags = struct.unpack_from(order + "BBH", data, base + i * LAYOUT_ENTRY)
        if info_sz % 4 or elem_sz % 4:
            raise BTFFormatError(
                f"layout of kind {i} has unaligned sizes ({info_sz}, {elem_sz})",
                offset=base + i * LAYOUT_ENTRY,
            )
        if i < len(BUILTIN_LAYOUT) and (info_sz, elem_sz) != BUILTIN_LAYOUT[i]:
            raise BTFFormatError(
                f"layout of known kind {Kind(i).name} is ({info_sz}, {elem_sz}), "
                f"expected {BUILTIN_LAYOUT[i]}",
                offset=base + i * LAYOUT_ENTRY,
            )
        entries.append((info_sz, elem_sz))
    return tuple(entries)
