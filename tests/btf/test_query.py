"""btfd.btf.query without a daemon: listings by exact name, prefix and glob against a plain
library listing (every own type decoded, filtered in Python) on vmlinux and on a split module
blob; the linear glob matcher against fnmatch; the reference walk; budgets that stop work."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btfd.btf import Kind, Spec
from btfd.btf import query as Q
from tests.conftest import blob

MATCH: dict[Q.Match, Callable[[str, str], bool]] = {
    Q.Match.ANY: lambda n, p: True,
    Q.Match.EXACT: lambda n, p: n == p,
    Q.Match.PREFIX: lambda n, p: n.startswith(p),
    Q.Match.GLOB: lambda n, p: fnmatch.fnmatchcase(n, p),
}


@pytest.fixture(scope="module")
def specs() -> dict[str, Spec]:
    vm = Spec(blob("vmlinux-6.1.0-56-amd64"))
    return {"vmlinux": vm, "btrfs": Spec(blob("btrfs-6.1.0-56-amd64"), base=vm)}


def plain(spec: Spec, pat: str, match: Q.Match, kind: Kind | None, start: int) -> list[tuple[int, int, str]]:
    return [(t.id, int(t.kind), t.name) for t in spec.types()
            if t.id >= start and (kind is None or t.kind == kind) and MATCH[match](t.name, pat)]


CASES = [
    ("vmlinux", Q.Match.EXACT, "list_head", None),
    ("vmlinux", Q.Match.EXACT, "list_head", Kind.STRUCT),
    ("vmlinux", Q.Match.EXACT, "no_such_type_at_all", None),
    ("vmlinux", Q.Match.PREFIX, "tcp_", None),
    ("vmlinux", Q.Match.PREFIX, "s", Kind.TYPEDEF),  # short, common: the record walk
    ("vmlinux", Q.Match.GLOB, "*_ops", Kind.STRUCT),
    ("vmlinux", Q.Match.GLOB, "sk_[a-c]*", None),
    ("vmlinux", Q.Match.GLOB, "[!a-z]*", None),
    ("vmlinux", Q.Match.GLOB, "task_struct", None),
    ("vmlinux", Q.Match.ANY, "", Kind.FLOAT),
    ("btrfs", Q.Match.EXACT, "btrfs_fs_info", None),
    ("btrfs", Q.Match.PREFIX, "btrfs_", Kind.STRUCT),
    ("btrfs", Q.Match.PREFIX, "list_", None),  # names in the base's string section
    ("btrfs", Q.Match.GLOB, "*extent*map*", None),
    ("btrfs", Q.Match.GLOB, "[[]*", None),
]


@pytest.mark.parametrize("which,match,pat,kind", CASES)
def test_matching_is_the_plain_listing(specs: dict[str, Spec], which: str, match: Q.Match, pat: str,
                                       kind: Kind | None) -> None:
    spec = specs[which]
    for start in (0, spec.start_id + spec.count // 2):
        got = [(s.id, s.kind, s.name) for s in Q.matching(spec, pat, match, kind=kind, start_id=start)]
        assert got == plain(spec, pat, match, kind, start)
    if match != Q.Match.EXACT or pat != "no_such_type_at_all":
        assert got or start  # the cases are chosen to find something


def test_summary_sizes(specs: dict[str, Spec]) -> None:
    [s] = list(Q.matching(specs["vmlinux"], "task_struct", Q.Match.EXACT, kind=Kind.STRUCT))
    assert s.size == specs["vmlinux"].type(s.id).size > 0  # type: ignore[attr-defined]
    ptrs = list(Q.matching(specs["vmlinux"], kind=Kind.PTR))
    assert ptrs and all(p.size == 0 for p in ptrs)


def test_a_prefix_with_a_nul_matches_nothing(specs: dict[str, Spec]) -> None:
    """Names hold no NUL, even where the string section holds the prefix: a name, its NUL
    and the first byte of the string after it."""
    spec = specs["vmlinux"]
    [t] = spec.find("task_struct", Kind.STRUCT)
    data, h = spec.data, spec.header
    at = h.strs_start + spec.raw(t.id)[0]
    after = bytes(data[at + len(t.name) + 1 : at + len(t.name) + 2]).decode()
    assert after  # the section has a string after this one
    pat = f"{t.name}\0{after}"
    assert Q.prefix_names(spec, pat.encode(), 100)  # the bytes are there...
    assert list(Q.matching(spec, pat, Q.Match.PREFIX)) == []  # ...but no name has them
    assert list(Q.matching(spec, pat + "*", Q.Match.GLOB)) == []


def test_refs_and_the_walk(specs: dict[str, Spec]) -> None:
    vm = specs["vmlinux"]
    [t] = vm.find("list_head", Kind.STRUCT)
    ptr = Q.refs(vm, t.id)
    assert len(ptr) == 2 and all(vm.kind(r) == Kind.PTR for r in ptr)
    walked = Q.walk_refs([(vm, t.id)], 3, most=100)
    assert walked == [(vm, ptr[0])]  # both members are the same pointer; it points back at t
    assert Q.walk_refs([(vm, t.id)], 0, most=100) == []
    [ts] = vm.find("task_struct", Kind.STRUCT)
    assert len(Q.walk_refs([(vm, ts.id)], 64, most=50)) == 50
    # A module type reached from a module start is reported with the module's spec.
    bt = specs["btrfs"]
    [fi] = bt.find("btrfs_fs_info", Kind.STRUCT)
    got = Q.walk_refs([(bt, fi.id)], 1, most=10_000)
    assert got and all(s is bt for s, _ in got)
    assert {r for _, r in got} == {r for r in bt.refs(fi.id) if r}


GLOB_CHARS = st.sampled_from(list("ab[]!-*?^\\c]"))


@settings(max_examples=3000, deadline=None)
@given(st.text(GLOB_CHARS, max_size=10), st.text(st.sampled_from(list("ab[]!-*?^\\c\n")), max_size=8))
def test_glob_is_fnmatch(pattern: str, name: str) -> None:
    assert Q.Glob(pattern).match(name) == fnmatch.fnmatchcase(name, pattern), (pattern, name)


def test_hostile_globs_compile_and_match_by_the_rules() -> None:
    g = Q.Glob("[" * 20_000)  # fnmatch.translate is quadratic on this one
    assert g.match("[" * 20_000) and not g.match("[" * 19_999)
    g = Q.Glob("*a" * 5_000)  # a backtracking matcher is exponential-ish on this one
    assert not g.match("a" * 4_999 + "b") and g.match("a" * 6_000)
    assert Q.Glob("[!]]x").match("ax") and not Q.Glob("[!]]x").match("]x")


def test_a_cancelled_or_expired_budget_stops_a_listing(specs: dict[str, Spec]) -> None:
    spec = specs["vmlinux"]
    b = Q.Budget()
    it = Q.matching(spec, "*z*", Q.Match.GLOB, budget=b)
    next(it)
    b.cancel()
    with pytest.raises(Q.BudgetError) as exc:
        list(it)
    assert exc.value.status == "CANCELLED"
    now = [0.0]
    b = Q.Budget(5.0, why="too long (--request-time-limit)", clock=lambda: now[0])
    it = Q.matching(spec, "*", Q.Match.GLOB, budget=b)
    first = [next(it) for _ in range(10)]
    assert len(first) == 10
    now[0] = 6.0
    with pytest.raises(Q.BudgetError, match="--request-time-limit") as exc:
        list(it)
    assert exc.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(Q.BudgetError):
        Q.walk_refs([(spec, 1)], 5, most=10, budget=b)
