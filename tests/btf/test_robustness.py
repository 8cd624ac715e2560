"""Header validation, new formats and a property test: malformed BTF fails cleanly."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btfd.btf import (
    BTFCycleError,
    BTFError,
    BTFFormatError,
    BTFNotFoundError,
    BTFUnsupportedError,
    Kind,
    Spec,
)
from btfd.btf import (
    types as T,
)
from btfd.btf.format_c import dump_c, format_type_c
from btfd.btf.format_raw import dump_raw
from btfd.btf.writer import encode_btf, sort_by_name
from tests.conftest import blob

HDR = struct.Struct("<HBBIIIII")


def _hdr(data: bytes, **kw: int) -> bytes:
    f = dict(zip(("magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off", "str_len"),
                 HDR.unpack_from(data), strict=True))
    f.update(kw)
    return HDR.pack(*f.values()) + data[HDR.size:]


SMALL = blob("synthetic-layout")


@pytest.mark.parametrize("change,message", [
    (dict(magic=0x1234), "bad BTF magic"),
    (dict(version=2), "unsupported BTF version"),
    (dict(hdr_len=8), "shorter than"),
    (dict(hdr_len=1 << 20), "runs past"),
    (dict(type_len=1 << 20), "type section"),
    (dict(str_len=1 << 20), "string section"),
    (dict(type_off=2), "not 4-byte aligned"),
    (dict(type_len=6), "multiple of 4"),
    (dict(str_off=0), "strings must follow the types"),
])
def test_header_checks(change: dict[str, int], message: str) -> None:
    with pytest.raises(BTFFormatError, match=message):
        Spec(_hdr(SMALL, **change))


def test_truncated_and_unterminated() -> None:
    for n in (0, 3, 23, 100, len(SMALL) - 1):
        with pytest.raises(BTFFormatError):
            Spec(SMALL[:n])
    with pytest.raises(BTFFormatError, match="NUL-terminated"):
        Spec(SMALL[:-1] + b"x")


def test_longer_header_zero_extra_is_accepted_nonzero_refused() -> None:
    hdr_len = HDR.unpack_from(SMALL)[3]
    body = SMALL[hdr_len:]
    longer = _hdr(SMALL[:24], hdr_len=40) + b"\0" * 16 + body
    assert list(Spec(longer).types()) == list(Spec(SMALL).types())
    bad = _hdr(SMALL[:24], hdr_len=40) + b"\0" * 12 + b"\1\0\0\0" + body
    with pytest.raises(BTFFormatError, match="unknown non-zero"):
        Spec(bad)


def test_big_endian_matches_little_endian_reencoding() -> None:
    be = Spec(blob("vmlinux-6.12.95+deb12-s390x"))
    assert be.byte_order == "big"
    le = Spec(encode_btf(list(be.types()), byte_order="little"))
    for name in ("task_struct", "sk_buff", "list_head"):
        a, b = be.find_one(name, Kind.STRUCT), le.find_one(name, Kind.STRUCT)
        assert a == b and be.size_of(a.id) == le.size_of(b.id) and be.align_of(a.id) == le.align_of(b.id)


def test_kind_layout_header_steps_over_unknown_kinds() -> None:
    """Kernels >= 7.1: a 32-byte header with a layout section. A kind this code does not
    know (25 here) is stepped over thanks to the layout; only decoding it fails."""
    base = Spec(SMALL)
    types = list(base.types())
    payload = struct.pack("<II", 7, 9) * 3
    data = encode_btf(types, kind_layout=True, extra_kinds=[(25, 3, 0, payload)])
    spec = Spec(data)
    assert spec.header.hdr_len == 32 and spec.header.layout is not None
    assert spec.count == len(types) + 1
    assert [spec.type(i) for i in range(1, len(types) + 1)] == types
    with pytest.raises(BTFUnsupportedError):
        spec.type(spec.next_id - 1)
    # Without the layout section the same records are an error at open.
    _, _, _, _, _, type_len, str_off, str_len = HDR.unpack_from(data)
    plain = (HDR.pack(0xEB9F, 1, 0, 24, 0, type_len, type_len, str_len) + data[32 : 32 + type_len]
             + data[32 + str_off : 32 + str_off + str_len])
    with pytest.raises(BTFUnsupportedError, match="unknown kind 25"):
        Spec(plain)


def test_name_sorted_blob_needs_no_index() -> None:
    spec = Spec(blob("vmlinux-6.1.0-56-amd64"))
    data, m = sort_by_name(spec)
    ss = Spec(data)
    assert ss.find_ids("task_struct", Kind.STRUCT) == [m[spec.find_ids("task_struct", Kind.STRUCT)[0]]]
    assert ss.name_sorted is True and ss.index_bytes()["names"] == 0
    assert spec.name_sorted is False and spec.index_bytes()["names"] > 0
    names = sorted({spec.type_name(t) for t in spec.ids()} - {""})[::211]
    for n in names + ["nope_not_here", "a", "zzzz"]:
        assert ss.find_ids(n) == sorted(m[t] for t in spec.find_ids(n)), n
    # Flavored names resolve by essential name in both layouts.
    assert sorted(m[t] for t in spec.find_essential("task_struct", {Kind.STRUCT})) == \
        ss.find_essential("task_struct___flavor", {Kind.STRUCT})


def test_reference_cycles_are_detected() -> None:
    i = T.Int(1, "int", 4, 1, 0, 32)
    loop = [i, T.Typedef(2, "a", 3), T.Const(3, "", 2), T.Ptr(4, "", 2)]
    spec = Spec(encode_btf(loop))
    with pytest.raises(BTFCycleError):
        spec.skip_mods(2)
    with pytest.raises(BTFCycleError):
        spec.size_of(2)
    self_embed = [i, T.Struct(2, "s", 8, (T.Member("x", 2, 0, 0),))]
    spec = Spec(encode_btf(self_embed))
    with pytest.raises(BTFError):
        spec.align_of(2)
    with pytest.raises(BTFError):
        "".join(dump_c(spec))


def test_bad_references_and_ids() -> None:
    spec = Spec(encode_btf([T.Ptr(1, "", 99)]))
    with pytest.raises(BTFFormatError, match="reference to type id 99"):
        spec.type(1)
    with pytest.raises(BTFNotFoundError):
        spec.type(2)


# ------------------------------------------------------------------ property test

def _seeds() -> list[tuple[str, bytes, bytes | None]]:
    """(label, blob, base blob or None): real corpus blobs and the newer or rarer layouts
    made from them -- big-endian, split over a base, kind-layout, name-sorted."""
    plain = [(n, blob(n), None) for n in ("synthetic-layout", "synthetic-funcs", "synthetic-tags",
                                          "synthetic-enums", "synthetic-bpf_prog")]
    layout = Spec(blob("synthetic-layout"))
    funcs = list(Spec(blob("synthetic-funcs")).types())
    n = layout.next_id
    split_types: list[T.Type] = [
        T.Ptr(n, "", 1), T.Typedef(n + 1, "split_t", n), T.Const(n + 2, "", n + 1),
        T.Struct(n + 3, "split_s", 16, (T.Member("a", n, 0, 0), T.Member("b", 1, 64, 3),
                                        T.Member("c", n + 2, 96, 0))),
        T.FuncProto(n + 4, "", n + 3, (T.Param("x", n + 1),)), T.Func(n + 5, "split_fn", n + 4, 1),
    ]
    unknown = (25, 2, 7, struct.pack("<II", 1, 2) * 2)
    return plain + [
        ("big-endian", encode_btf(funcs, byte_order="big"), None),
        ("split", encode_btf(split_types, base=layout), blob("synthetic-layout")),
        ("kind-layout", encode_btf(list(layout.types()), kind_layout=True, extra_kinds=[unknown]), None),
        ("name-sorted", sort_by_name(Spec(blob("synthetic-funcs")))[0], None),
    ]


SEEDS = _seeds()


def _ignore(op: Callable[[], object]) -> None:
    try:
        op()
    except BTFError:
        pass


def _exercise(data: bytes, base_data: bytes | None = None) -> bool:
    """Open and use a blob the way the daemon would; only BTFError may come out. Returns
    whether the blob opened and every type decoded: then the raw dump (bpftool's text, which
    needs nothing but decoding and names) must succeed too -- a blob whose types all decode
    cannot fail as a whole (cilium/ebpf's property: what parses can be formatted)."""
    try:
        base = Spec(base_data) if base_data is not None else None
        spec = Spec(data, base=base)
    except BTFError:
        return False
    decoded = True
    for t in spec.ids():
        try:
            spec.type(t)
        except BTFError:
            decoded = False
        for op in (spec.resolve, spec.skip_mods, spec.size_of, spec.align_of, spec.refs):
            _ignore(lambda op=op, t=t: op(t))  # type: ignore[misc]
        _ignore(lambda t=t: format_type_c(spec, t))  # type: ignore[misc]
    for name in ("int", "ops", "tagged", "x", "split_s", "split_t___v2"):
        _ignore(lambda name=name: spec.find_ids(name))  # type: ignore[misc]
        _ignore(lambda name=name: spec.find_essential(name, {Kind.STRUCT, Kind.TYPEDEF}))  # type: ignore[misc]
    _ignore(lambda: "".join(dump_c(spec)))
    if decoded:
        "".join(dump_raw(spec))  # strict: no BTFError allowed here
    else:
        _ignore(lambda: "".join(dump_raw(spec)))
    return decoded


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bytes | None]:
    _label, seed, base = draw(st.sampled_from(SEEDS))
    data = bytearray(seed)
    u32 = "<I" if data[:2] == b"\x9f\xeb" else ">I"  # the blob's own byte order
    hdr_len = struct.unpack_from(u32, data, 4)[0]
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["flip", "u32", "truncate", "vlen", "ref", "name", "header"]))
        if how == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
            continue
        if len(data) < hdr_len + 16:
            break
        if how == "header":  # any header field, to a boundary-ish value
            pos = draw(st.integers(0, hdr_len - 4)) & ~3
            val = draw(st.sampled_from([0, 1, 2, 4, 24, 32, hdr_len, len(data), len(data) - hdr_len,
                                        len(data) - hdr_len - 4, 1 << 31, 2**32 - 1])
                       | st.integers(0, 2**32 - 1))
            if pos == 0:  # magic, version, flags: one byte at a time
                data[draw(st.integers(0, 3))] = val & 0xFF
            else:
                struct.pack_into(u32, data, pos, val)
            continue
        pos = draw(st.integers(hdr_len, len(data) - 4)) & ~3
        if how == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif how == "u32":
            struct.pack_into(u32, data, pos, draw(st.integers(0, 2**32 - 1)))
        elif how == "vlen":
            struct.pack_into(u32, data, pos, (draw(st.integers(1, 26)) << 24) | draw(st.integers(0, 0xFFFF)))
        elif how == "ref":
            struct.pack_into(u32, data, pos, draw(st.integers(0, 200)))
        elif how == "name":
            struct.pack_into(u32, data, pos, draw(st.integers(0, 5000)))
    return bytes(data), base


def test_seeds_are_valid() -> None:
    """The unmutated seeds open and dump (else the property test would test little)."""
    for label, data, base in SEEDS:
        spec = Spec(data, base=Spec(base) if base is not None else None)
        assert "".join(dump_raw(spec)) and "".join(dump_c(spec)), label
    assert Spec(SEEDS[-4][1]).byte_order == "big"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(mutated())
def test_mutated_blobs_fail_cleanly(case: tuple[bytes, bytes | None]) -> None:
    _exercise(*case)


@settings(max_examples=200, deadline=2000, derandomize=True)
@given(st.binary(max_size=300))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    _exercise(b"\x9f\xeb\x01\x00\x18\x00\x00\x00" + data)


def test_mutations_reach_past_the_header() -> None:
    """The property above is not vacuous: a fixed sample of small mutations (one word or bit
    in the type or string sections) leaves many blobs that open and decode fully, and those
    must dump; the rest fail with BTFError."""
    import random

    rnd = random.Random(1)
    full = 0
    tries = 120
    for i in range(tries):
        _label, seed, base = SEEDS[i % len(SEEDS)]
        data = bytearray(seed)
        u32 = "<I" if data[:2] == b"\x9f\xeb" else ">I"
        hdr_len = struct.unpack_from(u32, data, 4)[0]
        pos = rnd.randrange(hdr_len, len(data) - 4) & ~3
        if rnd.random() < 0.5:
            data[pos] ^= 1 << rnd.randrange(8)
        else:
            struct.pack_into(u32, data, pos, rnd.randrange(0, 64))
        full += _exercise(bytes(data), base)
    assert full >= tries // 2, f"only {full} of {tries} mutated blobs decoded fully"


def _fuzz_blob(name: str) -> bytes:
    import lzma

    from tests.conftest import BTF_DATA

    return lzma.decompress((BTF_DATA / "fuzz" / f"{name}.btf.xz").read_bytes())


def _fuzz_names() -> list[str]:
    from tests.conftest import BTF_DATA

    return sorted(f.name.removesuffix(".btf.xz") for f in (BTF_DATA / "fuzz").glob("*.btf.xz"))


@pytest.mark.parametrize("name", _fuzz_names())
def test_fuzz_findings_stay_fixed(name: str) -> None:
    """Inputs the fuzzers and audits found: each must fail fast with a BTFError, from the
    per-type formatter (LookupType) or from a whole dump. slow-dump-c: a 799-byte blob
    claiming a 64 MiB struct; padbomb-32-members: 32 members each 1 MiB apart (every gap
    allowed alone, 4M `long: 64;` lines together); padbomb-many-types: 8 structs each
    within the per-type padding budget, over the per-dump one."""
    with pytest.raises(BTFError):
        _exercise_strict(_fuzz_blob(name))


def _exercise_strict(data: bytes) -> None:
    spec = Spec(data)
    for tid in spec.ids():
        format_type_c(spec, tid)
    "".join(dump_raw(spec))
    "".join(dump_c(spec))


def test_padding_budgets() -> None:
    """One type's padding and a whole dump's padding are both bounded."""
    spec = Spec(_fuzz_blob("padbomb-32-members"))
    with pytest.raises(BTFFormatError, match="padding of one type"):
        format_type_c(spec, 2)
    with pytest.raises(BTFFormatError, match="padding of one type"):
        "".join(dump_c(spec))
    many = Spec(_fuzz_blob("padbomb-many-types"))
    for tid in range(2, many.next_id):  # each type alone is within its budget...
        assert format_type_c(many, tid).count("long: 64;") == 30000
    with pytest.raises(BTFFormatError, match="whole dump"):  # ...all of them are not
        "".join(dump_c(many))
