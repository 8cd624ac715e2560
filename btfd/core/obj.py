"""Read a BPF ELF object: ``.BTF``, ``.BTF.ext``, program sections, function symbols.

The ELF structure (section headers, symbols) is read with pyelftools over an in-memory file;
the ``.BTF`` section is parsed zero-copy by :class:`btfd.btf.Spec` over the caller's bytes, and
``.BTF.ext`` is decoded here (libbpf's ``btf_ext__new()`` rules: header, then the func_info,
line_info and core_relo subsections, each ``rec_size`` + per-section ``{sec_name_off,
num_info}`` blocks). Either byte order. Every malformed input ends in :class:`ObjectError`
naming the section and offset.
"""

from __future__ import annotations

import io
import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from ..btf import BTFError, Spec
from .errors import ObjectError

__all__ = [
    "BpfObject",
    "BtfExt",
    "CoreRelo",
    "Function",
    "ProgSection",
    "parse_object",
    "parse_btf_ext",
    "BTF_EXT_MAGIC",
    "CORE_SPEC_MAX_LEN",
    "INSN_SIZE",
]

#: struct btf_ext_header's magic (the same as BTF's).
BTF_EXT_MAGIC = 0xEB9F
#: Mirrors libbpf's BPF_CORE_SPEC_MAX_LEN: deepest access string libbpf accepts.
CORE_SPEC_MAX_LEN = 64
#: sizeof(struct bpf_insn).
INSN_SIZE = 8
EM_BPF = 247
_SHF_EXECINSTR = 0x4
# Minimal record sizes libbpf accepts (sizeof bpf_func_info / bpf_line_info / bpf_core_relo).
_MIN_FUNC_INFO, _MIN_LINE_INFO, _MIN_CORE_RELO = 8, 16, 16


@dataclass(frozen=True, slots=True)
class CoreRelo:
    """One ``struct bpf_core_relo`` of ``.BTF.ext`` plus where it sits.

    ``insn_off`` is in bytes from the start of ``sec`` (object files), ``relo_idx`` its index
    within its ``.BTF.ext`` section block, ``order`` its global position, ``ext_off`` its byte
    offset in ``.BTF.ext``, ``access`` the decoded access string.
    """

    sec: str
    insn_off: int
    type_id: int
    access_str_off: int
    kind: int
    access: str
    relo_idx: int = 0
    order: int = 0
    ext_off: int = 0


@dataclass(frozen=True, slots=True)
class BtfExt:
    """Decoded ``.BTF.ext``: func_info and line_info per section (raw record counts and, for
    func_info, ``(insn_off, type_id)`` pairs) and every CO-RE relocation in file order."""

    byte_order: str
    func_info: dict[str, list[tuple[int, int]]]
    line_info: dict[str, int]
    core_relos: list[CoreRelo]


@dataclass(frozen=True, slots=True)
class Function:
    """A function symbol: a BPF (sub)program, as libbpf names programs."""

    name: str
    sec: str
    insn: int  # first instruction, from the start of the section
    count: int  # number of instructions


@dataclass(slots=True)
class ProgSection:
    """An executable section and the functions in it (sorted by start)."""

    name: str
    index: int
    offset: int  # file offset of the instructions
    size: int
    functions: list[Function] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)

    def function_at(self, insn: int) -> Function | None:
        """The function whose instructions include ``insn`` (section-relative), if any."""
        i = bisect_right(self._starts, insn) - 1
        if i >= 0:
            f = self.functions[i]
            if insn < f.insn + f.count:
                return f
        return None


@dataclass(slots=True)
class BpfObject:
    """A parsed BPF object. ``data`` is borrowed (not copied); ``btf`` reads it in place."""

    data: Any
    byte_order: str
    btf: Spec
    ext: BtfExt | None
    sections: dict[str, ProgSection]

    def insn_bytes(self, sec: str, insn: int, count: int = 1) -> bytes:
        """Raw bytes of ``count`` instructions starting at section instruction ``insn``."""
        s = self.sections[sec]
        o = insn * INSN_SIZE
        if o < 0 or o + count * INSN_SIZE > s.size:
            raise ObjectError(f"instruction #{insn} is outside section {sec}", offset=o)
        return bytes(self.data[s.offset + o : s.offset + o + count * INSN_SIZE])

    def section_bytes(self, sec: str) -> bytes:
        s = self.sections[sec]
        return bytes(self.data[s.offset : s.offset + s.size])


def _bare(e: BTFError) -> str:
    """``e``'s message without the ``(at offset ...)`` suffix BTFError adds, for re-wrapping."""
    msg = str(e)
    if e.offset is not None:
        tail = f" (at offset {e.offset:#x})"
        if msg.endswith(tail):
            msg = msg[: -len(tail)]
    return msg


def _u32(pfx: str) -> struct.Struct:
    return struct.Struct(pfx + "I")


def parse_btf_ext(data: Any, start: int, length: int, local: Spec) -> BtfExt:
    """Decode a ``.BTF.ext`` section at ``data[start:start+length]`` whose strings (section
    names, access strings) live in ``local``'s string table. Offsets in errors are relative
    to the start of ``.BTF.ext``."""
    if length < 8:
        raise ObjectError(".BTF.ext: header truncated", offset=0)
    raw = bytes(data[start : start + length])
    (magic_le,) = struct.unpack_from("<H", raw, 0)
    if magic_le == BTF_EXT_MAGIC:
        pfx, order = "<", "little"
    elif struct.unpack_from(">H", raw, 0)[0] == BTF_EXT_MAGIC:
        pfx, order = ">", "big"
    else:
        raise ObjectError(f".BTF.ext: bad magic {raw[0]:02x}{raw[1]:02x}", offset=0)
    if order != local.byte_order:
        raise ObjectError(".BTF.ext and .BTF have different byte orders", offset=0)
    version, flags = raw[2], raw[3]
    if version != 1:
        raise ObjectError(f".BTF.ext: unsupported version {version}", offset=2)
    # libbpf's btf_ext_parse_hdr(): no flag is defined, so any is refused (-ENOTSUP).
    if flags:
        raise ObjectError(f".BTF.ext: unsupported flags {flags:#x} (none are defined)", offset=3)
    (hdr_len,) = struct.unpack_from(pfx + "I", raw, 4)
    # libbpf: the header must at least hold func_info and line_info (32 bytes with core_relo).
    if hdr_len < 24 or hdr_len > length:
        raise ObjectError(f".BTF.ext: header length {hdr_len} is invalid (section is {length} bytes)",
                          offset=4)
    # libbpf: "BTF.ext has no data" (-EINVAL) when the section is only its header.
    if hdr_len == length:
        raise ObjectError(f".BTF.ext: the section is only its {hdr_len}-byte header, no data", offset=4)
    u32 = _u32(pfx)
    fi_off, fi_len, li_off, li_len = struct.unpack_from(pfx + "IIII", raw, 8)
    cr_off = cr_len = 0
    if hdr_len >= 32:
        cr_off, cr_len = struct.unpack_from(pfx + "II", raw, 24)

    def string(off: int, at: int, what: str) -> str:
        try:
            return local.string(off)
        except BTFError as e:
            raise ObjectError(f".BTF.ext: {what} string offset {off} is invalid ({_bare(e)} in .BTF)",
                              offset=at) from None

    def blocks(name: str, off: int, ln: int, min_rec: int) -> list[tuple[str, int, int, int]]:
        """(section name, number of records, record size, offset of first record)."""
        if ln == 0:
            return []
        base = hdr_len + off
        if off % 4 or base + ln > length or base + ln < base:
            raise ObjectError(f".BTF.ext: {name} subsection ({off}+{ln}) runs past the section",
                              offset=base)
        if ln < 4:
            raise ObjectError(f".BTF.ext: {name} subsection has no record size", offset=base)
        (rec_size,) = u32.unpack_from(raw, base)
        if rec_size < min_rec or rec_size % 4:
            raise ObjectError(f".BTF.ext: {name} record size {rec_size} is invalid", offset=base)
        out = []
        p, end = base + 4, base + ln
        while p < end:
            if end - p < 8:
                raise ObjectError(f".BTF.ext: {name} section header truncated", offset=p)
            sec_off, num = struct.unpack_from(pfx + "II", raw, p)
            if num == 0:
                raise ObjectError(f".BTF.ext: {name} section block has no records", offset=p)
            if num * rec_size > end - p - 8:
                raise ObjectError(
                    f".BTF.ext: {name} block of {num} records runs past the subsection", offset=p
                )
            out.append((string(sec_off, p, f"{name} section name"), num, rec_size, p + 8))
            p += 8 + num * rec_size
        return out

    func_info: dict[str, list[tuple[int, int]]] = {}
    for sec, num, rs, p in blocks("func_info", fi_off, fi_len, _MIN_FUNC_INFO):
        func_info.setdefault(sec, []).extend(
            struct.unpack_from(pfx + "II", raw, p + i * rs) for i in range(num)
        )
    line_info: dict[str, int] = {}
    for sec, num, _rs, _p in blocks("line_info", li_off, li_len, _MIN_LINE_INFO):
        line_info[sec] = line_info.get(sec, 0) + num
    relos: list[CoreRelo] = []
    rec = struct.Struct(pfx + "IIII")
    for sec, num, rs, p in blocks("core_relo", cr_off, cr_len, _MIN_CORE_RELO):
        for i in range(num):
            at = p + i * rs
            insn_off, type_id, str_off, kind = rec.unpack_from(raw, at)
            if type_id >= local.next_id:
                raise ObjectError(
                    f".BTF.ext: core_relo #{i} of {sec} refers to type [{type_id}], but .BTF "
                    f"has only {local.next_id - 1} types", offset=at
                )
            access = string(str_off, at, f"core_relo #{i} of {sec}: access")
            if access.count(":") + 1 > CORE_SPEC_MAX_LEN:
                raise ObjectError(
                    f".BTF.ext: core_relo #{i} of {sec}: access string has "
                    f"{access.count(':') + 1} levels, more than libbpf's {CORE_SPEC_MAX_LEN}",
                    offset=at,
                )
            relos.append(CoreRelo(sec, insn_off, type_id, str_off, kind, access, i, len(relos), at))
    return BtfExt(order, func_info, line_info, relos)


def parse_object(data: Any) -> BpfObject:
    """Parse a BPF ELF object (bytes or any buffer; not copied except for ``.BTF.ext``).

    Raises :class:`ObjectError` for anything that is not a well-formed BPF object with BTF.
    """
    if len(data) < 4 or bytes(data[:4]) != b"\x7fELF":
        raise ObjectError("not an ELF file", offset=0)
    try:
        return _parse_elf(data)
    except ObjectError:
        raise
    except BTFError as e:
        # Offsets of .BTF errors are relative to the start of .BTF.
        raise ObjectError(f".BTF: {_bare(e)} (in .BTF)", offset=e.offset) from None
    except Exception as e:  # pyelftools raises many things on garbage: ELFError, struct.error...
        raise ObjectError(f"malformed ELF file header: {type(e).__name__}: {e}", offset=0) from None


def _read_functions(elf: Any, symtab: Any, by_index: dict[int, ProgSection], buf: bytes) -> None:
    """STT_FUNC symbols of program sections. pyelftools located the symbol table and its
    string table; the fixed-size Elf32/64_Sym records are unpacked here in one pass (going
    through pyelftools' per-symbol parser costs more than resolving the relocations)."""
    h = symtab.header
    is64 = elf.elfclass == 64
    pfx = "<" if elf.little_endian else ">"
    rec = struct.Struct(pfx + ("IBBHQQ" if is64 else "IIIBBH"))
    ent = h["sh_entsize"] or rec.size
    if ent < rec.size:
        raise ObjectError(f".symtab entry size {ent} is too small", offset=h["sh_offset"])
    strtab = elf.get_section(h["sh_link"])
    so, ssz = strtab.header["sh_offset"], strtab.header["sh_size"]
    if so + ssz > len(buf):
        raise ObjectError("symbol string table runs past the file", offset=so)
    base, n = h["sh_offset"], h["sh_size"] // ent
    for i in range(n):
        at = base + i * ent
        if is64:
            name_off, info, _other, shndx, val, sz = rec.unpack_from(buf, at)
        else:
            name_off, val, sz, info, _other, shndx = rec.unpack_from(buf, at)
        if info & 0xF != 2 or shndx not in by_index:  # STT_FUNC in a program section
            continue
        ps = by_index[shndx]
        if name_off >= ssz:
            raise ObjectError(f"symbol #{i} name offset {name_off} is out of range", offset=at)
        end = buf.find(b"\0", so + name_off, so + ssz)
        if end < 0:
            raise ObjectError(f"symbol #{i} name is not terminated", offset=at)
        name = buf[so + name_off : end].decode("utf-8", "backslashreplace")
        if val % INSN_SIZE or sz % INSN_SIZE or val + sz > ps.size:
            raise ObjectError(f"function {name} ({val}+{sz}) does not fit section {ps.name}", offset=at)
        ps.functions.append(Function(name, ps.name, val // INSN_SIZE, sz // INSN_SIZE))


def _parse_elf(data: Any) -> BpfObject:
    from elftools.elf.elffile import ELFFile

    buf = data if isinstance(data, bytes) else bytes(data)
    elf = ELFFile(io.BytesIO(buf))
    if elf.header["e_machine"] not in ("EM_BPF", EM_BPF):
        raise ObjectError(f"not a BPF object (machine {elf.header['e_machine']})", offset=0x12)
    order = "little" if elf.little_endian else "big"
    size = len(buf)
    eh = elf.header
    sh_end = eh["e_shoff"] + eh["e_shnum"] * eh["e_shentsize"]
    if eh["e_shnum"] and sh_end > size:
        raise ObjectError(
            f"truncated file: the ELF section header table ({eh['e_shnum']} entries from byte "
            f"{eh['e_shoff']}) ends at byte {sh_end}, past the end of the file ({size} bytes)",
            offset=eh["e_shoff"],
        )
    secs: dict[str, ProgSection] = {}
    btf_loc: tuple[int, int] | None = None
    ext_loc: tuple[int, int] | None = None
    by_index: dict[int, ProgSection] = {}
    symtab: Any = None
    for idx in range(elf.num_sections()):
        try:
            s = elf.get_section(idx)
            h = s.header
            name = s.name
        except Exception as e:  # pyelftools on a broken header or name table
            raise ObjectError(f"section #{idx}: malformed ELF section header: {type(e).__name__}: {e}",
                              offset=eh["e_shoff"] + idx * eh["e_shentsize"]) from None
        if h["sh_type"] == "SHT_SYMTAB":
            symtab = s
        if h["sh_type"] == "SHT_NOBITS":
            continue
        off, sz = h["sh_offset"], h["sh_size"]
        if off + sz > size:
            raise ObjectError(f"section {name} runs past the end of the file", offset=off)
        if name == ".BTF":
            btf_loc = (off, sz)
        elif name == ".BTF.ext":
            ext_loc = (off, sz)
        elif h["sh_flags"] & _SHF_EXECINSTR and h["sh_type"] == "SHT_PROGBITS":
            if sz % INSN_SIZE:
                raise ObjectError(f"program section {name} size {sz} is not a multiple of 8",
                                  offset=off)
            ps = ProgSection(name, idx, off, sz)
            secs[name] = ps
            by_index[idx] = ps
    if btf_loc is None:
        raise ObjectError("BPF object has no .BTF section (build it with clang -g)", offset=0)
    btf = Spec(buf, start=btf_loc[0], length=btf_loc[1], name=".BTF")
    if btf.byte_order != order:
        raise ObjectError(".BTF byte order differs from the ELF file's", offset=btf_loc[0])
    ext = parse_btf_ext(buf, ext_loc[0], ext_loc[1], btf) if ext_loc is not None else None
    if symtab is not None:
        _read_functions(elf, symtab, by_index, buf)
    for ps in secs.values():
        ps.functions.sort(key=lambda f: f.insn)
        ps._starts = [f.insn for f in ps.functions]
    return BpfObject(buf, order, btf, ext, secs)
