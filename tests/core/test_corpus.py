"""Every corpus object against every target: btfd agrees with libbpf v1.7 on each record.

expected/*.jsonl.xz hold libbpf's own verdicts (bpf_object__prepare() with btf_custom_path);
the comparison covers the verdict (status, value, load size) and what libbpf's log shows
about how it got there (local and target specs, chosen candidate, instruction bytes).
"""

from __future__ import annotations

import functools
import json
import lzma

import pytest

from btfd.btf import Spec, load_spec
from btfd.core import resolve_object
from tests.conftest import CORE_DATA, blob

TARGETS = {
    "custom-a": None,
    "custom-b": None,
    "custom-c": None,
    "vmlinux-6.18": "vmlinux-6.18-amd64",
    "vmlinux-6.1.0-56": "vmlinux-6.1.0-56-amd64",
}
OBJECTS = sorted(p.name for p in (CORE_DATA / "objs").glob("*.bpf.o"))
COMPARED = [
    "sec", "prog", "insn", "sec_insn", "relo_idx", "order", "kind", "kind_id", "type_id",
    "type_kind", "type_name", "access", "status", "new_val", "insn_class", "orig_insn",
    "new_insn", "orig_val", "local_spec", "target_spec", "target_type_id", "target_type_name",
    "target_access", "target_bit_offset",
]


@functools.cache
def target(name: str) -> Spec:
    b = TARGETS[name]
    data = (CORE_DATA / "targets" / f"{name}.btf").read_bytes() if b is None else blob(b)
    return load_spec(data, name=name)


@functools.cache
def expected(name: str) -> list[dict[str, object]]:
    with lzma.open(CORE_DATA / "expected" / f"{name}.jsonl.xz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def _mem_to(m: object) -> object:
    if not isinstance(m, dict) or m.get("from") == m.get("to"):
        return None
    return m.get("to")


def test_corpus_is_complete() -> None:
    assert len(OBJECTS) == 13
    for t in TARGETS:
        assert len(expected(t)) == 421


@pytest.mark.parametrize("tname", list(TARGETS))
@pytest.mark.parametrize("obj", OBJECTS)
def test_agrees_with_libbpf(tname: str, obj: str) -> None:
    exp = [e for e in expected(tname) if e["obj"] == obj]
    res = resolve_object((CORE_DATA / "objs" / obj).read_bytes(), target(tname))
    # One record per .BTF.ext record, in .BTF.ext order.
    assert [(r.prog, r.insn) for r in res.records] == [(e["prog"], e["insn"]) for e in exp]
    for r, e in zip(res.records, exp, strict=True):
        got = r.to_dict()
        where = f"{tname} {obj} {e['prog']}+{e['insn']} {e['kind']} {e['type_name']} {e['access']}"
        for f in COMPARED:
            assert got[f] == e[f], f"{where}: {f} {got[f]!r} != libbpf's {e[f]!r}"
        assert _mem_to(got["mem_size"]) == _mem_to(e["mem_size"]), where
        if e["status"] == "error":
            assert got["error"] == str(e["error"]).split(" | ")[0], where
    assert res.errors == sum(1 for e in exp if e["status"] == "error")


def test_totals_match_the_checker() -> None:
    passed = failed = 0
    for tname in TARGETS:
        exp = expected(tname)
        for obj in OBJECTS:
            recs = {(r.prog, r.insn): r for r in
                    resolve_object((CORE_DATA / "objs" / obj).read_bytes(), target(tname)).records}
            for e in (e for e in exp if e["obj"] == obj):
                r = recs.get((e["prog"], e["insn"]))
                ok = r is not None and r.status == e["status"] and (
                    e["status"] != "ok"
                    or (r.new_val == e["new_val"] and _mem_to(r.mem_size) == _mem_to(e["mem_size"]))
                )
                passed, failed = passed + ok, failed + (not ok)
    assert (passed, failed) == (2105, 0)


@pytest.mark.parametrize("tname", list(TARGETS))
def test_patched_programs_hold_libbpfs_instructions(tname: str) -> None:
    exp = expected(tname)
    for obj in OBJECTS:
        res = resolve_object((CORE_DATA / "objs" / obj).read_bytes(), target(tname), want_patched=True)
        failed = {(e["sec"], e["prog"]) for e in exp if e["obj"] == obj and e["status"] == "error"}
        assert failed.isdisjoint(res.programs)
        for e in (e for e in exp if e["obj"] == obj and e["new_insn"]):
            insns = res.programs[(str(e["sec"]), str(e["prog"]))]
            want = bytes.fromhex(str(e["new_insn"]))
            at = 8 * int(str(e["insn"]))
            assert insns[at : at + len(want)] == want, (tname, obj, e["prog"], e["insn"])
