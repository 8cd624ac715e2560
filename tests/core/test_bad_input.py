"""Malformed objects and records end in CoreError/ObjectError (a BTFError), never in another
exception; messages name the section and the offset."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from btfd.btf import BTFError, Spec
from btfd.btf.elf import find_section
from btfd.core import CoreError, ObjectError, RecordInput, parse_btf_ext, resolve_object, resolve_records
from tests.conftest import CORE_DATA, require_tool
from tests.core.btfgen import BtfBuilder

OBJ = (CORE_DATA / "objs" / "c_types.bpf.o").read_bytes()


def target() -> Spec:
    return Spec((CORE_DATA / "targets" / "custom-a.btf").read_bytes())


def patched(data: bytes, off: int, fmt: str, *vals: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, off, *vals)
    return bytes(b)


def ext_off() -> int:
    return find_section(OBJ, ".BTF.ext")[0]


def test_not_elf() -> None:
    with pytest.raises(ObjectError, match="not an ELF file"):
        resolve_object(b"this is not an object", target())
    with pytest.raises(ObjectError):
        resolve_object(b"", target())


def test_elf_but_not_bpf() -> None:
    exe = Path(shutil.which("true") or "/bin/true").read_bytes()
    with pytest.raises(ObjectError, match="not a BPF object"):
        resolve_object(exe, target())


def test_bpf_without_btf(tmp_path: Path) -> None:
    clang = require_tool("clang")
    (tmp_path / "x.c").write_text('__attribute__((section("xdp"), used)) int f(void *c) { return 2; }\n')
    subprocess.run([clang, "-O2", "-target", "bpf", "-c", str(tmp_path / "x.c"), "-o",
                    str(tmp_path / "x.o")], check=True)
    with pytest.raises(ObjectError, match="no .BTF section"):
        resolve_object((tmp_path / "x.o").read_bytes(), target())


@pytest.mark.parametrize("cut", [0x40, 0x400, len(OBJ) // 2, len(OBJ) - 9])
def test_truncated_object(cut: int) -> None:
    with pytest.raises(ObjectError):
        resolve_object(OBJ[:cut], target())


def test_btf_ext_subsection_past_the_section() -> None:
    e = ext_off()
    # core_relo_len (header word at +28) far beyond the section.
    bad = patched(OBJ, e + 28, "<I", 0x10000)
    with pytest.raises(ObjectError, match=r"\.BTF\.ext: core_relo subsection .* runs past") as ei:
        resolve_object(bad, target())
    assert ei.value.offset is not None


def test_btf_ext_bad_magic_and_header() -> None:
    e = ext_off()
    with pytest.raises(ObjectError, match="bad magic"):
        resolve_object(patched(OBJ, e, "<H", 0x1234), target())
    with pytest.raises(ObjectError, match="header length"):
        resolve_object(patched(OBJ, e + 4, "<I", 4), target())


def _first_relo_offset() -> int:
    from btfd.core import parse_object

    o = parse_object(OBJ)
    assert o.ext is not None
    return ext_off() + o.ext.core_relos[0].ext_off


def test_record_pointing_outside_the_section() -> None:
    bad = patched(OBJ, _first_relo_offset(), "<I", 0x100000)
    with pytest.raises(ObjectError, match="outside the section") as ei:
        resolve_object(bad, target())
    assert "kprobe/c_ty_exists" in str(ei.value)
    bad = patched(OBJ, _first_relo_offset(), "<I", 3)
    with pytest.raises(ObjectError):
        resolve_object(bad, target())


def test_record_with_nonexistent_type() -> None:
    bad = patched(OBJ, _first_relo_offset() + 4, "<I", 99999)
    with pytest.raises(ObjectError, match=r"type \[99999\]"):
        resolve_object(bad, target())


def test_record_with_bad_access_string_offset() -> None:
    bad = patched(OBJ, _first_relo_offset() + 8, "<I", 0x7FFFFFF0)
    with pytest.raises(ObjectError, match="access string offset"):
        resolve_object(bad, target())


def _ext(relos: list[tuple[int, int, int, int]], sec_off: int) -> bytes:
    body = struct.pack("<I", 16) + struct.pack("<II", sec_off, len(relos))
    for r in relos:
        body += struct.pack("<IIII", *r)
    hdr = struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, 32, 0, 0, 0, 0, 0, len(body))
    return hdr + body


def test_access_string_deeper_than_libbpf_allows() -> None:
    b = BtfBuilder()
    i = b.int("int", 4, signed=True)
    b.struct("s", 4, [("a", i, 0)])
    sec = b.s("kprobe/x")
    deep = b.s(":".join(["0"] * 65))
    ok = b.s(":".join(["0"] * 64))
    local = Spec(b.encode())
    ext = _ext([(0, 2, ok, 0)], sec)
    assert parse_btf_ext(ext, 0, len(ext), local).core_relos[0].access.count(":") == 63
    ext = _ext([(0, 2, deep, 0)], sec)
    with pytest.raises(ObjectError, match="65 levels, more than libbpf's 64") as ei:
        parse_btf_ext(ext, 0, len(ext), local)
    assert ei.value.offset == 32 + 12
    with pytest.raises(CoreError, match="deeper than 64"):
        resolve_records(local, [RecordInput("kprobe/x", 0, 2, ":".join(["0"] * 65), 0)], local)


def test_btf_ext_truncated_block() -> None:
    b = BtfBuilder()
    b.int("int", 4)
    sec = b.s("kprobe/x")
    local = Spec(b.encode())
    ext = bytearray(_ext([(0, 1, 0, 8), (8, 1, 0, 8)], sec))
    struct.pack_into("<I", ext, 32 + 8, 5)  # claims 5 records, holds 2
    with pytest.raises(ObjectError, match="runs past the subsection"):
        parse_btf_ext(bytes(ext), 0, len(ext), local)
    struct.pack_into("<I", ext, 32 + 8, 0)
    with pytest.raises(ObjectError, match="no records"):
        parse_btf_ext(bytes(ext), 0, len(ext), local)
    struct.pack_into("<I", ext, 32, 6)  # record size not a multiple of 4
    with pytest.raises(ObjectError, match="record size"):
        parse_btf_ext(bytes(ext), 0, len(ext), local)


def test_records_entry_point_rejects_bad_records() -> None:
    b = BtfBuilder()
    b.int("int", 4)
    local = Spec(b.encode())
    with pytest.raises(CoreError, match=r"type \[7\]"):
        resolve_records(local, [RecordInput("s", 0, 7, "0", 8)], local)
    with pytest.raises(CoreError, match="multiple of 8"):
        resolve_records(local, [RecordInput("s", 3, 1, "0", 8)], local)
    # Semantically bad but well-formed: a per-record error, like libbpf's.
    r = resolve_records(local, [RecordInput("a", 0, 1, "0:1", 0), RecordInput("b", 8, 1, "x", 8),
                                RecordInput("c", 16, 1, "0", 13), RecordInput("c", 24, 1, "0", 6)],
                        local).records
    assert [x.status for x in r] == ["error", "error", "error", "skipped"]
    assert "unknown relocation kind 13" in (r[2].error or "")


def test_random_corruption_never_escapes_the_error_hierarchy() -> None:
    rng = random.Random(4)
    e, n = find_section(OBJ, ".BTF.ext")
    b0, bn = find_section(OBJ, ".BTF")
    tgt = target()
    outcomes = {"ok": 0, "error": 0}
    for i in range(400):
        data = bytearray(OBJ)
        lo, hi = ((e, e + n), (b0, b0 + bn), (0, len(OBJ)))[i % 3]
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(lo, hi)] = rng.randrange(256)
        try:
            resolve_object(bytes(data), tgt, want_patched=True)
            outcomes["ok"] += 1
        except BTFError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0


def test_btf_ext_flags_and_empty_body_are_refused_like_libbpf() -> None:
    # libbpf's btf_ext_parse_hdr(): nonzero flags -> -ENOTSUP, a header with nothing after
    # it -> "BTF.ext has no data" (-EINVAL).
    e = ext_off()
    with pytest.raises(ObjectError, match=r"\.BTF\.ext: unsupported flags 0x1") as ei:
        resolve_object(patched(OBJ, e + 3, "<B", 1), target())
    assert ei.value.offset == 3
    b = BtfBuilder()
    b.int("int", 4)
    local = Spec(b.encode())
    hdr = struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, 32, 0, 0, 0, 0, 0, 0)
    with pytest.raises(ObjectError, match=r"\.BTF\.ext: the section is only its 32-byte header") as ei:
        parse_btf_ext(hdr, 0, len(hdr), local)
    assert ei.value.offset == 4
    # The same header with a (valid, empty) body after it is fine.
    assert parse_btf_ext(hdr + bytes(4), 0, len(hdr) + 4, local).core_relos == []


def test_misaligned_record_says_so() -> None:
    bad = patched(OBJ, _first_relo_offset(), "<I", 4)
    with pytest.raises(ObjectError, match=r"insn_off 4 is not a multiple of 8") as ei:
        resolve_object(bad, target())
    assert "outside" not in str(ei.value) and "kprobe/c_ty_exists" in str(ei.value)


def test_btf_errors_name_the_offset_once() -> None:
    b0, _ = find_section(OBJ, ".BTF")
    # .BTF header's str_len (at +20) far past the section.
    bad = patched(OBJ, b0 + 20, "<I", 0x100000)
    with pytest.raises(ObjectError, match=r"^\.BTF: ") as ei:
        resolve_object(bad, target())
    assert str(ei.value).count("at offset") == 1, str(ei.value)
    assert "in .BTF" in str(ei.value)
    bad = patched(OBJ, _first_relo_offset() + 8, "<I", 0x7FFFFFF0)
    with pytest.raises(ObjectError) as ei:
        resolve_object(bad, target())
    assert str(ei.value).count("at offset") == 1, str(ei.value)


def test_truncated_file_names_what_is_missing() -> None:
    e, _ = find_section(OBJ, ".BTF.ext")
    with pytest.raises(ObjectError, match=r"truncated file: the ELF section header table") as ei:
        resolve_object(OBJ[: e + 20], target())
    assert "ELFParseError" not in str(ei.value)
