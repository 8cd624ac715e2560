"""Header and section-layout validation against libbpf (bpftool run live), the kind-layout
section's order, and whole dumps of blobs carrying kinds this code does not know."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from btfd.btf import BTFFormatError, BTFUnsupportedError, Spec
from btfd.btf import types as T
from btfd.btf.format_c import dump_c, format_type_c
from btfd.btf.format_raw import dump_raw
from btfd.btf.writer import encode_btf
from tests.conftest import blob

HDR = struct.Struct("<HBBIIIII")
SMALL = blob("synthetic-layout")


def _fields(data: bytes) -> tuple[int, ...]:
    return HDR.unpack_from(data)


def _bpftool_ok(bpftool: str, tmp: Path, data: bytes, base: bytes | None = None) -> bool:
    f = tmp / "x.btf"
    f.write_bytes(data)
    cmd = [bpftool, "btf", "dump"]
    if base is not None:
        (tmp / "base.btf").write_bytes(base)
        cmd += ["-B", str(tmp / "base.btf")]
    r = subprocess.run([*cmd, "file", str(f)], capture_output=True, text=True)
    return r.returncode == 0


def _ours_ok(data: bytes, base: bytes | None = None) -> bool:
    try:
        spec = Spec(data, base=Spec(base) if base is not None else None)
        "".join(dump_raw(spec))
    except BTFFormatError:
        return False
    return True


def _strings_first(data: bytes) -> bytes:
    """The same sections, strings placed before types (offsets adjusted)."""
    _, _, _, hdr_len, type_off, type_len, str_off, str_len = _fields(data)
    body = data[hdr_len:]
    types, strs = body[type_off : type_off + type_len], body[str_off : str_off + str_len]
    pad = b"\0" * (-len(strs) % 4)
    return HDR.pack(0xEB9F, 1, 0, 24, len(strs) + len(pad), type_len, 0, str_len) + strs + pad + types


def _with(data: bytes, **kw: int) -> bytes:
    names = ("magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len")
    f = dict(zip(names, _fields(data), strict=True))
    f.update(kw)
    return HDR.pack(*f.values()) + data[HDR.size :]


def _mutations() -> dict[str, bytes]:
    _, _, _, _, _, type_len, str_off, str_len = _fields(SMALL)
    return {
        "original": SMALL,
        "strings-before-types": _strings_first(SMALL),
        "empty-strings": _with(SMALL, str_len=0),
        "strings-overlap-types-end": _with(SMALL, str_off=str_off - 4, str_len=str_len + 4),
        "strings-inside-types": _with(SMALL, str_off=8, str_len=4),
        "types-after-strings-gap": _with(SMALL, type_off=0, str_off=type_len + 8, str_len=str_len - 8),
    }


@pytest.mark.parametrize("name", list(_mutations()))
def test_section_layout_like_libbpf(name: str, bpftool: str, tmp_path: Path) -> None:
    """Every mutation of a real blob is accepted by btfd.btf exactly when bpftool (libbpf
    1.1's btf_parse_hdr / btf_parse_str_sec) accepts it."""
    data = _mutations()[name]
    assert _ours_ok(data) == _bpftool_ok(bpftool, tmp_path, data), name


def test_split_blob_may_have_no_strings(bpftool: str, tmp_path: Path) -> None:
    """libbpf allows str_len == 0 only over a base."""
    base = blob("vmlinux-6.1.0-56-amd64")
    body = encode_btf([T.Ptr(Spec(base).next_id, "", 1)], base=Spec(base))
    _, _, _, _, _, type_len, _, _ = _fields(body)
    no_strings = HDR.pack(0xEB9F, 1, 0, 24, 0, type_len, type_len, 0) + body[24 : 24 + type_len]
    assert _bpftool_ok(bpftool, tmp_path, no_strings, base)
    assert _ours_ok(no_strings, base)
    assert not _bpftool_ok(bpftool, tmp_path, no_strings) and not _ours_ok(no_strings)


def _layout_blob(**extra: object) -> bytes:
    return encode_btf(list(Spec(SMALL).types()), kind_layout=True, **extra)  # type: ignore[arg-type]


def test_writer_puts_layout_between_types_and_strings() -> None:
    """Upstream order (libbpf selftests: str_off == layout_off + layout_len)."""
    data = _layout_blob()
    _, _, _, hdr_len, type_off, type_len, str_off, str_len = _fields(data)
    layout_off, layout_len = struct.unpack_from("<II", data, 24)
    assert hdr_len == 32 and type_off == 0
    assert layout_off == type_off + type_len and layout_off % 4 == 0
    assert str_off == layout_off + layout_len and len(data) == hdr_len + str_off + str_len
    assert list(Spec(data).types()) == list(Spec(SMALL).types())


def _relayout(data: bytes, layout_off: int, str_off: int | None = None, body: bytes | None = None) -> bytes:
    f = list(_fields(data))
    if str_off is not None:
        f[6] = str_off
    _, layout_len = struct.unpack_from("<II", data, 24)
    return HDR.pack(*f) + struct.pack("<II", layout_off, layout_len) + (body if body is not None else data[32:])


def test_layout_section_checked_against_the_others() -> None:
    data = _layout_blob()
    _, _, _, _, _, type_len, str_off, str_len = _fields(data)
    layout_off, layout_len = struct.unpack_from("<II", data, 24)
    body = data[32:]
    types, lay, strs = body[:type_len], body[type_len:str_off], body[str_off:]
    # The older draft's order (types, strings, layout) is accepted too: no overlap.
    pad = b"\0" * (-(type_len + str_len) % 4)
    moved = _relayout(data, type_len + str_len + len(pad), type_len, types + strs + pad + lay)
    assert list(Spec(moved).types()) == list(Spec(data).types())
    for bad, message in [
        (_relayout(data, 0), "overlaps the type section"),
        (_relayout(data, str_off), "overlaps the string section"),
        (_relayout(data, type_len + 2, type_len + 2 + layout_len + 2, types + b"\0\0" + lay + b"\0\0" + strs),
         "misaligned"),
        (_relayout(moved, type_len + str_len + len(pad) + 4), "runs past"),
    ]:
        with pytest.raises(BTFFormatError, match=message):
            Spec(bad)


UNKNOWN = 25


def _with_unknown(refer: bool) -> tuple[Spec, list[T.Type]]:
    types = list(Spec(SMALL).types())
    if refer:  # a pointer to the unknown-kind type (which gets the last id)
        types.append(T.Ptr(len(types) + 1, "", len(types) + 2))
    payload = struct.pack("<II", 7, 9) * 3
    return Spec(encode_btf(types, kind_layout=True, extra_kinds=[(UNKNOWN, 3, 0, payload)])), types


def test_raw_dump_prints_a_placeholder_for_unknown_kinds(bpftool: str, tmp_path: Path) -> None:
    spec, types = _with_unknown(refer=False)
    raw = "".join(dump_raw(spec))
    known = _bpftool_raw(bpftool, tmp_path, SMALL)
    assert raw == known + f"[{len(types) + 1}] UNKNOWN '(anon)' kind={UNKNOWN} vlen=3 size_or_type=0\n"


def _bpftool_raw(bpftool: str, tmp: Path, data: bytes, *fmt: str) -> str:
    f = tmp / "k.btf"
    f.write_bytes(data)
    return subprocess.run([bpftool, "btf", "dump", "file", str(f), *fmt],
                          check=True, capture_output=True, text=True).stdout


def test_c_dump_skips_unknown_kinds(bpftool: str, tmp_path: Path) -> None:
    spec, _ = _with_unknown(refer=False)
    assert "".join(dump_c(spec)) == _bpftool_raw(bpftool, tmp_path, SMALL, "format", "c")


def test_c_dump_of_a_type_referring_to_an_unknown_kind() -> None:
    spec, types = _with_unknown(refer=True)
    ptr = len(types)
    with pytest.raises(BTFUnsupportedError, match=f"type \\[{ptr + 1}\\] has kind {UNKNOWN}"):
        "".join(dump_c(spec))
    with pytest.raises(BTFUnsupportedError):
        format_type_c(spec, ptr)
    # everything else still formats, and the raw dump is complete
    assert format_type_c(spec, 1) == format_type_c(Spec(SMALL), 1)
    assert "".join(dump_raw(spec)).count("\n[") + 1 == spec.count
