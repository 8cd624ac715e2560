"""The index of one BTF blob -- offset checkpoints and a name hash -- as a value of its own.

A :class:`~btfd.btf.Spec` needs two things besides the blob to answer quickly:

- **checkpoints**: the word offset (from the start of the type section) of every
  ``CHECKPOINT``-th type, so that id -> record walks at most ``CHECKPOINT - 1`` records;
- **names**: a hash of each named type's *essential* name (``foo___v2`` -> ``foo``) into a
  power-of-two bucket directory, with the named types' word offsets grouped by bucket
  (:class:`NameIndex`). A blob sorted by name (anonymous types first, then by name) needs no
  hash: lookups binary-search it, and the index only records the first named id.

Both are sequences of unsigned 32-bit integers and work over any buffer: ``array('I')`` built
in this process, or a ``memoryview`` of a mapping another process made. The second case is how
btfd shares the work: the daemon builds the index once, :func:`encode` writes it in the
versioned, position-independent format below (``docs/PROTOCOL.md`` describes it byte by byte
for C and Go readers), the fd socket hands the sealed memfd holding it to agents beside the
blob, and :func:`decode` reads it in place, checking every bound it relies on.

Format, version 1, in the byte order of the host that made it (the magic tells; an index is
made and used on one node). All fields are unsigned 32-bit integers unless said otherwise::

    0   magic        0x58465442 ("BTFX" when read little-endian)
    4   version      u16: 1
    6   hdr_len      u16: 64
    8   flags        bit 0: the blob is name-sorted (no hash: nbuckets = nnamed = 0)
    12  blob_size    bytes of the blob this index belongs to
    16  blob_crc     CRC-32 (IEEE, as zlib) of the blob's first and last 64 KiB (see blob_crc32)
    20  start_id     the blob's first own type id (1, or the base's next id for split BTF)
    24  count        the blob's own types
    28  interval     types between checkpoints (16)
    32  ncheckpoints ceil(count / interval)
    36  nbuckets     a power of two, or 0
    40  nnamed       named types in the hash
    44  first_named  the first named type's id in a name-sorted blob, else 0
    48  hash         1: bucket = CRC-32 of the essential name & (nbuckets - 1)
    52  index_crc    CRC-32 of the whole index with this field read as 0
    56  reserved     8 bytes of 0
    64  checkpoints  u32[ncheckpoints]: word offsets into the type section
    ..  directory    u32[nbuckets + 1]: bucket b's entries are entries[dir[b]:dir[b + 1]]
    ..  entries      u32[nnamed]: word offsets into the type section of named types
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import BTFFormatError
from .wire import CHECKPOINT

if TYPE_CHECKING:
    from .strings import Strings
    from .wire import Records

__all__ = [
    "CHECKPOINT",
    "INDEX_MAGIC",
    "INDEX_VERSION",
    "IndexError_",
    "NameIndex",
    "SharedIndex",
    "blob_crc32",
    "build_names",
    "bucket_of",
    "decode",
    "encode",
    "essential",
]

INDEX_MAGIC = 0x58465442
INDEX_VERSION = 1
HASH_CRC32 = 1
FLAG_NAME_SORTED = 1
_HEADER = struct.Struct("=IHHIIIIIIIIIIII8x")
HEADER_LEN = _HEADER.size  # 64
#: Bytes at each end of the blob covered by :func:`blob_crc32`.
BLOB_SAMPLE = 64 * 1024


class IndexError_(BTFFormatError):  # noqa: N801 - "IndexError" is a builtin
    """An index that does not belong to its blob, is truncated, or breaks a bound."""


def essential(name: bytes) -> bytes:
    """libbpf's bpf_core_essential_name_len(): cut at the last ``X___Y`` where X and Y are
    not ``_`` (``task_struct___old`` -> ``task_struct``; ``a____b`` stays)."""
    if b"___" not in name:
        return name
    for i in range(len(name) - 5, -1, -1):
        if name[i] != 0x5F and name[i + 1 : i + 4] == b"___" and name[i + 4] != 0x5F:
            return name[: i + 1]
    return name


def bucket_of(ess: bytes, nbuckets: int) -> int:
    """The bucket of an essential name: stable across processes and languages (CRC-32, as
    zlib's crc32, Go's hash/crc32.ChecksumIEEE)."""
    return zlib.crc32(ess) & (nbuckets - 1)


def blob_crc32(data: Any, start: int = 0, end: int | None = None) -> int:
    """The identity of the blob ``data[start:end]`` as the index records it: CRC-32 of its
    first and last 64 KiB (all of it when smaller). With the size it tells a stale index
    (another kernel's, another module build's) without touching every page of a 5 MB mapping."""
    end = len(data) if end is None else end
    with memoryview(data) as view:  # no copies: 128 KiB of bytes would stay in malloc's heap
        if end - start <= 2 * BLOB_SAMPLE:
            return zlib.crc32(view[start:end])
        return zlib.crc32(view[end - BLOB_SAMPLE : end], zlib.crc32(view[start : start + BLOB_SAMPLE]))


@dataclass(frozen=True, slots=True)
class NameIndex:
    """Named types by essential name. Either ``first_named`` is set (a name-sorted blob: no
    hash) or ``directory`` (``nbuckets + 1`` entries) and ``entries`` (word offsets of named
    records, grouped by bucket) are. Sequences of u32: arrays or memoryviews."""

    first_named: int | None
    directory: Sequence[int] | None
    entries: Sequence[int] | None

    @property
    def nbytes(self) -> int:
        """Bytes the hash holds (0 for a name-sorted blob)."""
        if self.directory is None or self.entries is None:
            return 0
        return 4 * (len(self.directory) + len(self.entries))

    def bucket(self, ess: bytes, nwords: int) -> Sequence[int]:
        """Word offsets of the named records in ``ess``'s bucket, each checked to lie inside
        a type section of ``nwords`` words (a hostile shared index gives a BTFError)."""
        d, ent = self.directory, self.entries
        assert d is not None and ent is not None
        b = bucket_of(ess, len(d) - 1)
        lo, hi = d[b], d[b + 1]
        if not lo <= hi <= len(ent):
            raise IndexError_(f"name index bucket {b} spans [{lo}, {hi}) of {len(ent)} entries")
        out = ent[lo:hi]
        for w in out:
            if w + 3 > nwords:
                raise IndexError_(f"name index entry {w} is past the type section ({nwords} words)")
        return out


def build_names(records: Records, strings: Strings, start_id: int, count: int) -> NameIndex:
    """One walk over the names: detect name-sorted blobs, else bucket every named type.

    Transient memory is one bucket number per type (an ``array('H')``, 2 bytes, allocated
    once at its final size) -- no list of Python ints, no second array of offsets or
    positions: a second, name-free walk places the offsets, advancing the directory's own
    entries, which are shifted back afterwards. Every large array is allocated whole, never
    grown, so the allocator can hand the transient one back instead of keeping its pages.
    """
    data, strs, crc32 = records.data, strings.bytes_at, zlib.crc32
    nb = 1
    while nb * 4 < count:
        nb <<= 1
    mask = nb - 1
    code = "H" if nb <= 1 << 16 else "I"
    buckets: array[int] = array(code, bytes(array(code).itemsize * count))
    named = 0
    counts: array[int] = array("I", bytes(4 * (nb + 1)))
    sorted_ok = True
    prev = b""
    first_named: int | None = None
    fixed, elem, vmask = records.fixed, records.elem, records.vlen_mask
    # Own strings are read inline (the common case); base strings through strings.bytes_at.
    find, sbase, ss, se = data.find, strings.start, strings.begin, strings.end
    native = records.byte_order == sys.byteorder
    words: Any = records.native_words()
    u32 = records.u32
    ts = records.ts
    nwords = records.nwords
    i = 0
    tid = start_id
    try:
        while i < nwords:
            if native:
                name_off = words[i]
                info = words[i + 1]
            else:
                name_off, info = u32(data, ts + 4 * i)[0], u32(data, ts + 4 * i + 4)[0]
            if name_off:
                if name_off >= sbase and (a := ss + name_off - sbase) < se:
                    e = find(b"\0", a, se)
                    nm = data[a:e] if e >= 0 else strs(name_off)
                else:
                    nm = strs(name_off)
                if first_named is None:
                    first_named = tid
                elif sorted_ok and nm < prev:
                    sorted_ok = False
                prev = nm
                b = crc32(nm if b"___" not in nm else essential(nm)) & mask
                buckets[named] = b
                named += 1
                counts[b + 1] += 1
            elif first_named is not None:
                sorted_ok = False
            k = (info >> 24) & 0x7F  # kind_of(), inlined: hot loop
            i += fixed[k] + (info & vmask) * elem[k]
            tid += 1
    finally:
        if words is not None:
            words.release()
    if sorted_ok and first_named is not None and named > 1:
        return NameIndex(first_named, None, None)
    for b in range(nb):
        counts[b + 1] += counts[b]
    ent: array[int] = array("I", bytes(4 * named))
    pos = counts  # bucket b's next free slot; afterwards, the start of bucket b + 1
    # Second walk: no strings, just each record's name_off and length.
    words = records.native_words()
    i = n = 0
    try:
        while i < nwords:
            if native:
                name_off, info = words[i], words[i + 1]
            else:
                name_off, info = u32(data, ts + 4 * i)[0], u32(data, ts + 4 * i + 4)[0]
            if name_off:
                b = buckets[n]
                ent[pos[b]] = i
                pos[b] += 1
                n += 1
            k = (info >> 24) & 0x7F  # kind_of(), inlined: hot loop
            i += fixed[k] + (info & vmask) * elem[k]
    finally:
        if words is not None:
            words.release()
    del buckets
    # pos[b] now holds the end of bucket b (= the start of b + 1): shift back by one.
    counts.insert(0, 0)
    counts.pop()
    return NameIndex(None, counts, ent)



@dataclass(frozen=True, slots=True)
class SharedIndex:
    """A decoded index: what :class:`~btfd.btf.Spec` takes as ``index=``."""

    blob_size: int
    blob_crc: int
    start_id: int
    count: int
    checkpoints: Sequence[int]
    names: NameIndex
    nbytes: int


def encode(*, blob: tuple[Any, int, int], start_id: int, count: int, checkpoints: array[int],
           names: NameIndex) -> bytes:
    """The index in the shared format (see the module docstring)."""
    sorted_blob = names.first_named is not None
    d = array("I") if sorted_blob or names.directory is None else array("I", names.directory)
    ent = array("I") if sorted_blob or names.entries is None else array("I", names.entries)
    ck = array("I", checkpoints)
    nb = len(d) - 1 if len(d) else 0
    fields = [INDEX_MAGIC, INDEX_VERSION, HEADER_LEN, FLAG_NAME_SORTED if sorted_blob else 0,
              blob[2] - blob[1], blob_crc32(*blob), start_id, count, CHECKPOINT, len(ck), nb, len(ent),
              names.first_named or 0, HASH_CRC32, 0]
    body = ck.tobytes() + d.tobytes() + ent.tobytes()
    crc = zlib.crc32(body, zlib.crc32(_HEADER.pack(*fields)))
    fields[-1] = crc
    return _HEADER.pack(*fields) + body


def decode(buf: Any, blob: tuple[Any, int, int], *, start_id: int) -> SharedIndex:
    """Read an index in place (``buf``: bytes or a mapping; nothing is copied) and check that
    it belongs to ``blob`` (``(data, start, end)``: size and :func:`blob_crc32`) with
    ``start_id``, that it is whole (its CRC), and every bound a lookup relies on that can be
    checked without walking the blob. Entries and buckets are bounds-checked again when
    used. :class:`IndexError_` (a :class:`~btfd.btf.BTFFormatError`) on anything wrong."""
    n = len(buf)
    if n < HEADER_LEN:
        raise IndexError_(f"index of {n} bytes is shorter than its {HEADER_LEN}-byte header")
    (magic, version, hdr_len, flags, blob_size, bcrc, sid, count, interval, nck, nb, nnamed,
     first_named, hash_id, icrc) = _HEADER.unpack_from(buf, 0)
    if magic != INDEX_MAGIC:
        if magic == int.from_bytes(INDEX_MAGIC.to_bytes(4, sys.byteorder)[::-1], sys.byteorder):
            raise IndexError_("index was made on a host of the other byte order")
        raise IndexError_(f"not a btfd index (magic {magic:#x})")
    if version != INDEX_VERSION or hdr_len != HEADER_LEN:
        raise IndexError_(f"index version {version} (header {hdr_len} bytes) is not supported; "
                          f"this reader knows version {INDEX_VERSION}")
    if hash_id != HASH_CRC32 or interval != CHECKPOINT:
        raise IndexError_(f"index uses hash {hash_id} / interval {interval}, not {HASH_CRC32} / {CHECKPOINT}")
    size, crc = blob[2] - blob[1], blob_crc32(*blob)
    if blob_size != size or bcrc != crc:
        raise IndexError_(f"index belongs to another blob ({blob_size} bytes, crc {bcrc:#010x}; "
                          f"this one: {size} bytes, crc {crc:#010x})")
    if sid != start_id:
        raise IndexError_(f"index starts at type id {sid}, the blob at {start_id}")
    sorted_blob = bool(flags & FLAG_NAME_SORTED)
    if nck != (count + CHECKPOINT - 1) // CHECKPOINT:
        raise IndexError_(f"{nck} checkpoints for {count} types")
    if sorted_blob and (nb or nnamed or not start_id <= first_named < start_id + count):
        raise IndexError_("name-sorted index with a hash or a first named id out of range")
    if not sorted_blob and (nb & (nb - 1) or nb == 0 or first_named):
        raise IndexError_(f"{nb} buckets is not a power of two")
    want = HEADER_LEN + 4 * (nck + (nb + 1 if nb else 0) + nnamed)
    if n != want:
        raise IndexError_(f"index is {n} bytes; its header says {want}")
    view = memoryview(buf)
    try:
        hdr = bytearray(view[:HEADER_LEN])
        struct.pack_into("=I", hdr, 52, 0)
        if zlib.crc32(view[HEADER_LEN:], zlib.crc32(hdr)) != icrc:
            raise IndexError_("index checksum does not match (truncated or damaged)")
        words = view[HEADER_LEN:].cast("I")
    finally:
        view.release()
    ck = words[:nck]
    prev = -1
    for w in ck:  # 8k checkpoints on vmlinux: ~0.3 ms, and id -> offset trusts them
        if w <= prev:
            raise IndexError_("index checkpoints are not increasing")
        prev = w
    if sorted_blob:
        names = NameIndex(first_named, None, None)
    else:
        d = words[nck : nck + nb + 1]
        if d[0] != 0 or d[nb] != nnamed:
            raise IndexError_("name index directory does not cover its entries")
        names = NameIndex(None, d, words[nck + nb + 1 :])
    return SharedIndex(blob_size, bcrc, sid, count, ck, names, n)
