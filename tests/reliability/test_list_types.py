"""ListTypes against a plain library listing (every own type, decoded, filtered in Python),
for every match mode, with kinds, paging, limits and start ids, on vmlinux and on a split
module spec (names in the base's string section too)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import pytest

from btfd.btf import Spec
from btfd.v1 import btfd_pb2 as pb
from tests.conftest import blob
from tests.server.conftest import BtfdProcess

MATCH: dict[int, Callable[[str, str], bool]] = {
    pb.NAME_MATCH_ANY: lambda n, p: True,
    pb.NAME_MATCH_EXACT: lambda n, p: n == p,
    pb.NAME_MATCH_PREFIX: lambda n, p: n.startswith(p),
    pb.NAME_MATCH_GLOB: lambda n, p: fnmatch.fnmatchcase(n, p),
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("lt")
    sysfs = d / "sys"
    sysfs.mkdir()
    (sysfs / "vmlinux").write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    (sysfs / "btrfs").write_bytes(blob("btrfs-6.1.0-56-amd64"))
    with BtfdProcess(d / "run", "--sysfs-btf-dir", str(sysfs), "--metrics-address", "off") as proc:
        yield proc


@pytest.fixture(scope="module")
def specs() -> dict[str, Spec]:
    vm = Spec(blob("vmlinux-6.1.0-56-amd64"))
    return {"vmlinux": vm, "module/btrfs": Spec(blob("btrfs-6.1.0-56-amd64"), base=vm)}


def library_listing(spec: Spec, kind: int, match: int, pat: str, start: int) -> list[tuple[int, int, str]]:
    out = []
    for t in spec.types():
        if t.id < start or (kind and t.kind != kind):
            continue
        if MATCH[match](t.name, pat):
            out.append((t.id, int(t.kind), t.name))
    return out


CASES = [
    (pb.NAME_MATCH_EXACT, "list_head", 0),
    (pb.NAME_MATCH_EXACT, "list_head", pb.KIND_STRUCT),
    (pb.NAME_MATCH_EXACT, "btrfs_fs_info", 0),
    (pb.NAME_MATCH_EXACT, "no_such_type_at_all", 0),
    (pb.NAME_MATCH_PREFIX, "tcp_", 0),
    (pb.NAME_MATCH_PREFIX, "btrfs_", pb.KIND_STRUCT),
    (pb.NAME_MATCH_PREFIX, "s", pb.KIND_TYPEDEF),
    (pb.NAME_MATCH_PREFIX, "u32", 0),  # also a suffix inside longer names (__u32): not a match
    (pb.NAME_MATCH_PREFIX, "zzzz_nothing", 0),
    (pb.NAME_MATCH_PREFIX, "list_head", 0),  # matches in the base's strings for the module
    (pb.NAME_MATCH_GLOB, "bpf_*map*", pb.KIND_STRUCT),
    (pb.NAME_MATCH_GLOB, "*_ops", 0),
    (pb.NAME_MATCH_GLOB, "?pu_*", 0),
    (pb.NAME_MATCH_GLOB, "btrfs_[a-c]*", pb.KIND_FUNC),
    (pb.NAME_MATCH_ANY, "", pb.KIND_ENUM),
    (pb.NAME_MATCH_ANY, "", 0),
]


def listing(daemon: BtfdProcess, spec: str, kind: int, match: int, pat: str, start: int = 0,
            page: int = 0, limit: int = 0) -> tuple[list[tuple[int, int, str]], list[pb.ListTypesResponse]]:
    pages = list(daemon.stub().ListTypes(pb.ListTypesRequest(
        spec=spec, kind=kind, name=pat, match=match, start_id=start, page_size=page, limit=limit), timeout=60))
    return [(t.id, t.kind, t.name) for p in pages for t in p.types], pages


@pytest.mark.parametrize("spec", ["vmlinux", "module/btrfs"])
@pytest.mark.parametrize("match,pat,kind", CASES)
def test_list_types_equals_the_library_listing(daemon, specs: dict[str, Spec], spec: str, match: int,
                                               pat: str, kind: int) -> None:
    want = library_listing(specs[spec], kind, match, pat, 0)
    got, pages = listing(daemon, spec, kind, match, pat)
    assert got == want
    assert pages[-1].next_start_id == 0
    # Paged, and resumed from a start id in the middle.
    got7, pages7 = listing(daemon, spec, kind, match, pat, page=7, limit=40)
    assert got7 == want[:40]
    assert all(len(p.types) <= 7 for p in pages7)
    assert (pages7[-1].next_start_id != 0) == (len(want) > 40)
    for p in pages7[:-1]:
        assert p.next_start_id == p.types[-1].id + 1
    if len(want) > 3:
        mid = want[len(want) // 2][0]
        got_mid, _ = listing(daemon, spec, kind, match, pat, start=mid, page=50)
        assert got_mid == library_listing(specs[spec], kind, match, pat, mid)


def test_a_prefix_with_a_nul_matches_nothing(daemon, specs: dict[str, Spec]) -> None:
    """Names hold no NUL, even where the string section has the prefix: a struct's name, its
    NUL and the first byte of the string after it."""
    vm = specs["vmlinux"]
    t = next(t for t in vm.types() if t.kind == pb.KIND_STRUCT and t.name == "task_struct")
    name_off = vm.raw(t.id)[0]
    after = vm.string(name_off + len(t.name.encode()) + 1)
    pat = f"{t.name}\0{after[:1]}"
    for match in (pb.NAME_MATCH_PREFIX, pb.NAME_MATCH_GLOB):
        assert listing(daemon, "vmlinux", 0, match, pat + ("*" if match == pb.NAME_MATCH_GLOB else ""))[0] == []


def test_sizes_are_the_library_sizes(daemon, specs: dict[str, Spec]) -> None:
    got, _ = listing(daemon, "vmlinux", pb.KIND_STRUCT, pb.NAME_MATCH_PREFIX, "sk_")
    sizes = {t.id: t.size for p in daemon.stub().ListTypes(pb.ListTypesRequest(
        kind=pb.KIND_STRUCT, name="sk_", match=pb.NAME_MATCH_PREFIX)) for t in p.types}
    vm = specs["vmlinux"]
    assert got and all(sizes[i] == vm.type(i).size for i, _, _ in got)  # type: ignore[attr-defined]


def test_list_types_of_a_cancelled_stream_keeps_serving(daemon) -> None:
    """A stream dropped after its first page (its next page may be in a thread) leaves the
    daemon serving, the spec usable."""
    for _ in range(20):
        it = daemon.stub().ListTypes(pb.ListTypesRequest(page_size=10, kind=pb.KIND_FUNC), timeout=60)
        next(it)
        it.cancel()  # type: ignore[attr-defined]
    got, _ = listing(daemon, "module/btrfs", 0, pb.NAME_MATCH_EXACT, "btrfs_fs_info")
    assert got and got[0][2] == "btrfs_fs_info"
    assert "Traceback" not in daemon.log()


def test_unknown_match_mode_is_invalid_argument(daemon) -> None:
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        listing(daemon, "vmlinux", 0, 9, "x")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


