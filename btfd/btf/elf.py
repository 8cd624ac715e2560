"""Locate the ``.BTF`` (and ``.BTF.ext``) section of an ELF file without copying it.

Only section headers are read; either ELF class and byte order. BPF objects' deeper
structure (relocations, symbols) is read with pyelftools in :mod:`btfd.core`.
"""

from __future__ import annotations

import struct
from typing import Any

from .errors import BTFFormatError, BTFNotFoundError

__all__ = ["is_elf", "elf_sections", "find_section"]

ELF_MAGIC = b"\x7fELF"


def is_elf(data: Any) -> bool:
    return bytes(data[:4]) == ELF_MAGIC


def elf_sections(data: Any) -> dict[str, tuple[int, int]]:
    """``{name: (offset, size)}`` of every section with file contents."""
    if len(data) < 52 or not is_elf(data):
        raise BTFFormatError("not an ELF file", offset=0)
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise BTFFormatError(f"bad ELF class/data {ei_class}/{ei_data}", offset=4)
    pfx = "<" if ei_data == 1 else ">"
    if ei_class == 2:
        if len(data) < 64:
            raise BTFFormatError("ELF header truncated", offset=0)
        shoff, = struct.unpack_from(pfx + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(pfx + "HHH", data, 0x3A)
        sh = struct.Struct(pfx + "IIQQQQIIQQ")
    else:
        shoff, = struct.unpack_from(pfx + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(pfx + "HHH", data, 0x2E)
        sh = struct.Struct(pfx + "IIIIIIIIII")
    if shentsize < sh.size or shoff + shnum * shentsize > len(data):
        raise BTFFormatError("ELF section headers run past the file", offset=shoff)
    if shstrndx >= shnum:
        raise BTFFormatError("ELF section name table index out of range", offset=0)
    hdrs = [sh.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    str_off, str_size = hdrs[shstrndx][4], hdrs[shstrndx][5]
    if str_off + str_size > len(data):
        raise BTFFormatError("ELF section name table runs past the file", offset=str_off)
    out: dict[str, tuple[int, int]] = {}
    for h in hdrs:
        name_off, sh_type, off, size = h[0], h[1], h[4], h[5]
        if sh_type == 8:  # SHT_NOBITS
            continue
        if name_off >= str_size:
            raise BTFFormatError("ELF section name out of range", offset=str_off + name_off)
        end = data.find(b"\0", str_off + name_off, str_off + str_size)
        if end < 0:
            raise BTFFormatError("ELF section name not terminated", offset=str_off + name_off)
        name = bytes(data[str_off + name_off : end]).decode("ascii", "replace")
        if off + size > len(data):
            raise BTFFormatError(f"ELF section {name} runs past the file", offset=off)
        out[name] = (off, size)
    return out


def find_section(data: Any, name: str) -> tuple[int, int]:
    """(offset, size) of section ``name``; :class:`BTFNotFoundError` when absent."""
    secs = elf_sections(data)
    if name not in secs:
        raise BTFNotFoundError(f"ELF file has no {name} section")
    return secs[name]
