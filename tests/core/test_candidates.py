"""Candidate search by essential name (Spec.find_essential / btfd.core.find_candidates)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from btfd.btf import Kind, Spec
from btfd.core import find_candidates
from tests.core.btfgen import BtfBuilder


def _edge_spec() -> Spec:
    b = BtfBuilder()
    i = b.int("int", 4, signed=True)
    for name in ("oracle_edge____x", "oracle_edge", "oracle_edge___a", "oracle_edge___a___c"):
        b.struct(name, 4, [("a", i, 0)])
    return Spec(b.encode())


def test_flavored_name_is_not_a_candidate_for_its_own_essential_prefix() -> None:
    # libbpf bpf_core_essential_name_len(): "oracle_edge___a___b" -> "oracle_edge___a", while
    # "oracle_edge___a" itself -> "oracle_edge". So only "..___a___c" is a candidate.
    s = _edge_spec()
    names = [s.type_name(t) for t in s.find_essential("oracle_edge___a___b", {Kind.STRUCT})]
    assert names == ["oracle_edge___a___c"]
    names = [s.type_name(t) for t in s.find_essential("oracle_edge", {Kind.STRUCT})]
    assert names == ["oracle_edge", "oracle_edge___a"]
    # Four underscores are no separator.
    names = [s.type_name(t) for t in s.find_essential("oracle_edge____x", {Kind.STRUCT})]
    assert names == ["oracle_edge____x"]
    assert s.find_ids("oracle_edge___a") == [4]


@pytest.mark.parametrize("seed", ["0", "1", "36", "40", "12345"])
def test_candidates_do_not_depend_on_the_hash_seed(seed: str) -> None:
    # The name index buckets by hash(); a wrong essential-name comparison only showed when two
    # names collided, i.e. for some PYTHONHASHSEED values. Run the check under several.
    code = (
        "from tests.core.test_candidates import _edge_spec\n"
        "from btfd.btf import Kind\n"
        "s = _edge_spec()\n"
        "print([s.type_name(t) for t in s.find_essential('oracle_edge___a___b', {Kind.STRUCT})])\n"
    )
    env = dict(os.environ, PYTHONHASHSEED=seed)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "['oracle_edge___a___c']"


def test_find_candidates_enum_matches_enum64_and_split_prefers_base() -> None:
    b = BtfBuilder()
    b.enum("color", 4, [("RED", 0)])
    b.enum64("color___x", 8, [("RED", 1 << 40)])
    base = Spec(b.encode())
    local_b = BtfBuilder()
    local_b.enum("color", 4, [("RED", 0)])
    local = Spec(local_b.encode())
    assert find_candidates(local, 1, base) == [1, 2]
    sb = BtfBuilder(base=base)
    sb.enum("color", 4, [("RED", 3)])
    sb.struct("only_in_module", 4, [])
    split = Spec(sb.encode(), base=base)
    # libbpf looks at module BTF only when vmlinux has no candidate.
    assert find_candidates(local, 1, split) == [1, 2]
    lb2 = BtfBuilder()
    lb2.struct("only_in_module", 4, [])
    assert find_candidates(Spec(lb2.encode()), 1, split) == [4]
