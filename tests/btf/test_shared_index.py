"""The shared index format (btfd.btf.index): a spec reading an exported index answers exactly
like one that built its own, and an index that is stale, truncated, damaged or hostile gives a
BTFError, never a crash or an answer about another type."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btfd.btf import BTFError, Kind, Spec
from btfd.btf.index import HEADER_LEN, INDEX_MAGIC, IndexError_, bucket_of, decode
from btfd.btf.writer import sort_by_name
from tests.conftest import BASE_BLOBS, SPLIT_BASES, SYNTHETIC_BLOBS, blob


def _sample_names(spec: Spec, step: int) -> list[str]:
    names = {spec.type_name(t) for t in range(spec.start_id, spec.next_id, step)}
    return sorted(n for n in names if n) + ["task_struct", "task_struct___v2", "no_such_type", "int"]


def _same_answers(a: Spec, b: Spec, step: int) -> None:
    assert (a.count, a.start_id, a.next_id) == (b.count, b.start_id, b.next_id)
    for n in _sample_names(a, step):
        assert a.find_ids(n) == b.find_ids(n), n
        assert a.find_essential(n) == b.find_essential(n), n
    for t in range(a.start_id, a.next_id, max(1, step // 3)):
        assert a.type(t) == b.type(t)


@pytest.mark.parametrize("name", BASE_BLOBS + SYNTHETIC_BLOBS)
def test_exported_index_answers_like_a_built_one(name: str) -> None:
    own = Spec(blob(name))
    shared = Spec(blob(name), index=own.export_index())
    assert shared.index_bytes()["shared"] > 0
    assert shared.index_bytes()["names"] == shared.index_bytes()["offsets"] == 0
    _same_answers(own, shared, 53)


@pytest.mark.parametrize("name", sorted(SPLIT_BASES))
def test_split_blob_index_over_a_shared_base(name: str) -> None:
    base_own = Spec(blob(SPLIT_BASES[name]))
    base = Spec(blob(SPLIT_BASES[name]), index=base_own.export_index())
    own = Spec(blob(name), base=base_own)
    shared = Spec(blob(name), base=base, index=own.export_index())
    assert shared.start_id == base.next_id
    _same_answers(own, shared, 7)
    # The module's index names its own first id: it cannot be read over another base.
    # (The corpus has one big-endian base: its module is checked over a re-based copy.)
    other = next((o for o in map(Spec, map(blob, BASE_BLOBS + SYNTHETIC_BLOBS))
                  if o.byte_order == base.byte_order and o.next_id != base.next_id), None)
    if other is not None:
        with pytest.raises(IndexError_, match="starts at type id"):
            Spec(blob(name), base=other, index=own.export_index())
    else:
        with pytest.raises(IndexError_, match="starts at type id"):
            decode(own.export_index(), (blob(name), 0, len(blob(name))), start_id=shared.start_id + 1)


def test_name_sorted_blob_index_records_only_the_first_named_id() -> None:
    data, _ = sort_by_name(Spec(blob("vmlinux-6.1.0-56-amd64")))
    own = Spec(data)
    idx = own.export_index()
    assert own.name_sorted is True
    shared = Spec(data, index=idx)
    assert shared.name_sorted is True and len(idx) == HEADER_LEN + 4 * len(range(0, own.count, 16))
    _same_answers(own, shared, 211)


def test_bucket_is_crc32_of_the_essential_name() -> None:
    # The documented hash, so C and Go readers can find a bucket: zlib's CRC-32.
    assert bucket_of(b"task_struct", 1 << 15) == zlib.crc32(b"task_struct") & 0x7FFF
    spec = Spec(blob("vmlinux-6.18-amd64"))
    idx = decode(spec.export_index(), (spec.data, 0, spec.size), start_id=1)
    d, ent = idx.names.directory, idx.names.entries
    assert d is not None and ent is not None
    b = zlib.crc32(b"task_struct") & (len(d) - 2)
    offsets = {spec.header.types_start + 4 * w for w in ent[d[b] : d[b + 1]]}
    (tid,) = spec.find_ids("task_struct", Kind.STRUCT)
    assert spec.record_span(tid)[1] in offsets


def test_stale_index_of_another_blob_is_refused() -> None:
    a, b = Spec(blob("vmlinux-6.1.0-56-amd64")), blob("vmlinux-6.1.0-56-arm64")
    with pytest.raises(IndexError_, match="belongs to another blob"):
        Spec(b, index=a.export_index())


def test_index_of_the_other_byte_order_is_refused() -> None:
    idx = bytearray(Spec(blob("vmlinux-6.18-amd64")).export_index())
    idx[0:4] = idx[0:4][::-1]
    with pytest.raises(IndexError_, match="other byte order"):
        Spec(blob("vmlinux-6.18-amd64"), index=bytes(idx))


def test_every_truncation_is_refused() -> None:
    data = blob("synthetic-funcs")
    idx = Spec(data).export_index()
    for n in range(len(idx)):
        with pytest.raises(IndexError_):
            Spec(data, index=idx[:n])
    with pytest.raises(IndexError_):
        Spec(data, index=idx + b"\0\0\0\0")


def test_any_damaged_byte_is_caught_by_the_checksum() -> None:
    data = blob("synthetic-bpf_prog")
    idx = Spec(data).export_index()
    for i in range(len(idx)):
        bad = bytearray(idx)
        bad[i] ^= 0x5A
        with pytest.raises(IndexError_):
            Spec(data, index=bytes(bad))


def _recrc(idx: bytearray) -> bytes:
    struct.pack_into("=I", idx, 52, 0)
    struct.pack_into("=I", idx, 52, zlib.crc32(bytes(idx)))
    return bytes(idx)


_VM = "vmlinux-6.18-amd64"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 0xFFFFFFFF)), min_size=1, max_size=6))
def test_hostile_index_with_a_valid_checksum(edits: list[tuple[int, int]]) -> None:
    """A hostile daemon can recompute the checksum: the index then must still only ever give
    a BTFError or answers about types that really have the asked name."""
    data = blob(_VM)
    ref = _reference()
    idx = bytearray(_reference_index())
    for pos, value in edits:
        at = (pos % ((len(idx) - 8) // 4)) * 4 + 8  # keep the magic and version: reach the rest
        struct.pack_into("=I", idx, at, value)
    try:
        spec = Spec(data, index=_recrc(idx))
        for n in ("task_struct", "sk_buff", "int", "list_head", "file_operations"):
            for t in spec.find_ids(n):
                assert ref.type_name(t) == n
            for t in spec.find_essential(n):
                assert ref.type_name(t) == n
    except BTFError:
        pass


_CACHE: dict[str, object] = {}


def _reference() -> Spec:
    if "spec" not in _CACHE:
        _CACHE["spec"] = Spec(blob(_VM))
    s = _CACHE["spec"]
    assert isinstance(s, Spec)
    return s


def _reference_index() -> bytes:
    if "idx" not in _CACHE:
        _CACHE["idx"] = _reference().export_index()
    i = _CACHE["idx"]
    assert isinstance(i, bytes)
    return i


def test_magic_and_layout_are_what_the_docs_say() -> None:
    spec = Spec(blob(_VM))
    idx = spec.export_index()
    magic, version, hdr_len = struct.unpack_from("=IHH", idx)
    assert (magic, version, hdr_len) == (INDEX_MAGIC, 1, 64)
    assert idx[:4] == b"BTFX"  # little-endian host: the magic reads as text
    fields = struct.unpack_from("=13I", idx, 8)
    assert fields[1] == spec.size and fields[3] == 1 and fields[4] == spec.count and fields[5] == 16


def test_closed_spec_releases_the_index_mapping() -> None:
    import mmap

    data = blob("synthetic-tags")
    idx = Spec(data).export_index()
    m = mmap.mmap(-1, len(idx))
    m.write(idx)
    spec = Spec(data, index=m)
    assert spec.find_ids("int") == Spec(data).find_ids("int")
    spec.close()
    m.close()  # BufferError if the spec still held views of it
