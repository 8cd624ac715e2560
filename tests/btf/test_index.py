"""The name index: publication under threads, name-sorted lookups, use after close."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from btfd.btf import BTFClosedError, BTFError, Kind, Spec
from btfd.btf import types as T
from btfd.btf.format_c import dump_c
from btfd.btf.writer import encode_btf, sort_by_name
from tests.conftest import SYNTHETIC_BLOBS, blob

QUERIES = ["task_struct", "sk_buff", "list_head", "int", "nope_not_here", "file", "u32"]


def _race_once(base: bytes, want: dict[str, list[int]], want_ess: list[int]) -> Spec:
    spec = Spec(base)
    errors: list[BaseException] = []
    got: list[dict[str, list[int]]] = []
    barrier = threading.Barrier(5)
    built = threading.Event()

    def lookups() -> None:
        got.append({q: spec.find_ids(q) for q in QUERIES})
        assert spec.find_essential("task_struct___x", {Kind.STRUCT}) == want_ess

    def builder() -> None:
        barrier.wait()
        try:
            spec.build_name_index()
        finally:
            built.set()

    def watcher() -> None:
        barrier.wait()
        while spec.name_sorted is None and not built.is_set():
            pass  # look up as soon as the index is announced
        lookups()

    def racer() -> None:
        barrier.wait()
        lookups()  # finds no index yet: builds one concurrently with the builder

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)
        return run

    threads = [threading.Thread(target=guarded(f)) for f in (builder, watcher, watcher, racer, racer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert got == [want] * 4
    return spec


def test_concurrent_build_and_lookups_agree() -> None:
    """Threads looking names up while another builds the index, from the moment the spec
    says the index exists (``name_sorted`` is no longer None), and threads racing to build
    it themselves, always get the answers of a spec whose index was built alone."""
    base = blob("vmlinux-6.1.0-56-amd64")
    ref = Spec(base)
    want = {q: ref.find_ids(q) for q in QUERIES}
    want_ess = ref.find_essential("task_struct___x", {Kind.STRUCT})
    for _ in range(6):
        spec = _race_once(base, want, want_ess)
        assert spec.index_bytes() == ref.index_bytes()


def _lookups(spec: Spec, names: list[str]) -> list[object]:
    out: list[object] = []
    for n in names:
        out.append(spec.find_ids(n))
        out.append(spec.find_ids(n, Kind.STRUCT))
        out.append(spec.find_essential(n))
        out.append(spec.find_essential(n + "___flavor", {Kind.STRUCT, Kind.UNION, Kind.TYPEDEF}))
    return out


def _probe_names(spec: Spec, every: int) -> list[str]:
    names = sorted({spec.type_name(t) for t in spec.ids()} - {""})
    picked = names[::every] + names[:3] + names[-3:]
    # misses around real names, before the first and after the last
    picked += [n + "0" for n in picked[:20]] + [n[:-1] for n in picked[:20] if len(n) > 1]
    return picked + ["", "\x01", "~~~~", "a", "zzzzzzzz", "_", "___"]


def _sorted_equal(spec: Spec, names: list[str]) -> None:
    data, m = sort_by_name(spec)
    ss = Spec(data)
    ss.build_name_index()
    assert ss.name_sorted is True
    for n, a, b in zip(
        [n for n in names for _ in range(4)], _lookups(spec, names), _lookups(ss, names), strict=True
    ):
        assert sorted(m[t] for t in a) == b, n  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", SYNTHETIC_BLOBS)
def test_sorted_lookups_match_hashed_index_synthetic(name: str) -> None:
    """Every name of small blobs (anonymous prefixes of any length, blocks of 16 cut
    anywhere), misses between names, flavors."""
    spec = Spec(blob(name))
    _sorted_equal(spec, _probe_names(spec, 1))


def test_sorted_lookups_match_hashed_index_vmlinux(sorted_vmlinux: tuple[Spec, Spec, dict[int, int]]) -> None:
    spec, ss, m = sorted_vmlinux
    names = _probe_names(spec, 97)
    for n, a, b in zip(
        [n for n in names for _ in range(4)], _lookups(spec, names), _lookups(ss, names), strict=True
    ):
        assert sorted(m[t] for t in a) == b, n  # type: ignore[attr-defined]
    assert ss.name_sorted is True and ss.index_bytes()["names"] == 0


def test_sorted_lookups_with_flavors() -> None:
    """Flavored names sort between the plain name and its successors; a query finds the
    plain name and every flavor by essential name, and only exact names by find_ids."""
    i = T.Int(1, "int", 4, 1, 0, 32)
    names = ["foo", "foo___a", "foo___b___c", "foo_bar", "foo____x", "foo___", "fo", "foo0", "food"]
    types: list[T.Type] = [i] + [T.Struct(2 + k, n, 4, (T.Member("x", 1, 0, 0),)) for k, n in enumerate(names)]
    types += [T.Ptr(2 + len(names) + k, "", 1) for k in range(21)]  # anonymous: not a multiple of 16
    spec = Spec(encode_btf(types))
    _sorted_equal(spec, names + ["foo___b", "foo___zz", "foo___a___q"])
    data, m = sort_by_name(spec)
    ss = Spec(data)
    inv = {v: k for k, v in m.items()}
    # libbpf cuts at the last "___": foo___b___c is a flavor of foo___b, not of foo
    assert sorted(ss.type_name(t) for t in ss.find_essential("foo")) == ["foo", "foo___a"]
    assert [ss.type_name(t) for t in ss.find_essential("foo___b___x")] == ["foo___b___c"]
    assert [spec.type_name(inv[t]) for t in ss.find_ids("foo___a")] == ["foo___a"]


def test_use_after_close_raises_btf_error() -> None:
    spec = Spec(blob("synthetic-funcs"), name="funcs")
    tid = spec.find_ids("int")[0]
    spec.close()
    spec.close()  # idempotent
    assert spec.closed
    for op in (
        lambda: spec.type(tid),
        lambda: spec.raw(tid),
        lambda: spec.refs(tid),
        lambda: spec.size_of(tid),
        lambda: spec.type_name(tid),
        lambda: spec.string(1),
        lambda: spec.find_ids("int"),
        lambda: spec.find_essential("int"),
        lambda: spec.build_name_index(),
        lambda: list(spec.types()),
        lambda: list(spec.iter_raw()),
        lambda: "".join(dump_c(spec)),
    ):
        with pytest.raises(BTFClosedError, match="spec funcs is closed"):
            op()
    assert issubclass(BTFClosedError, BTFError)


def test_split_over_closed_base() -> None:
    base = Spec(blob("vmlinux-6.1.0-56-amd64"))
    split = Spec(blob("veth-6.1.0-56-amd64"), base=base)
    base.close()
    with pytest.raises(BTFClosedError):
        split.type(1)
    with pytest.raises(BTFClosedError):
        split.find_ids("task_struct")
