#!/usr/bin/env python3
"""Coverage-guided fuzzing of the BTF parser, formatters and the BPF object reader with
atheris (pip install atheris). The property: any input either raises a BTFError or yields
types that can all be decoded and formatted. CI runs the bounded hypothesis version
(tests/btf/test_robustness.py); this runs as long as you like:

    .venv/bin/python bench/fuzz_btf.py -max_total_time=300 [-runs=N]

Seeds: the synthetic corpus blobs, earlier findings (tests/data/btf/fuzz) and the CO-RE
corpus objects. Operations: those of the daemon (decode, resolve, size, alignment, one
type's C, lookups by name and essential name, whole raw and C dumps).
"""

from __future__ import annotations

import fnmatch
import lzma
import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports():
    from btfd.btf import BTFError, Kind, Spec
    from btfd.btf.format_c import dump_c, format_type_c
    from btfd.btf.format_raw import dump_raw
    from btfd.btf.query import Glob, Match, matching
    from btfd.core import parse_object, resolve_object

TARGET = Spec(lzma.decompress((ROOT / "tests/data/btf/synthetic-layout.btf.xz").read_bytes()))


def one(data: bytes) -> None:
    # The linear glob matcher means what fnmatch means, on any pattern (issue 13's limits).
    pat = data[:48].decode("latin-1")
    for name in (pat, pat[::-1], "task_struct"):
        assert Glob(pat).match(name) == fnmatch.fnmatchcase(name, pat), (pat, name)
    if data[:4] == b"\x7fELF":
        try:
            obj = parse_object(data)
            resolve_object(obj, TARGET)
        except BTFError:
            pass
        return
    try:
        spec = Spec(data)
    except BTFError:
        return
    for t in spec.ids():
        for op in (spec.type, spec.resolve, spec.size_of, spec.align_of, spec.skip_mods):
            try:
                op(t)
            except BTFError:
                pass
        try:
            format_type_c(spec, t)
        except BTFError:
            pass
    for name in ("int", "ops", "x"):
        try:
            spec.find_ids(name)
            spec.find_essential(name + "___v2", {Kind.STRUCT, Kind.TYPEDEF})
        except BTFError:
            pass
    for pattern, match in (("a", Match.PREFIX), ("*a*", Match.GLOB), ("[!_]*", Match.GLOB)):
        try:
            for _ in matching(spec, pattern, match):
                pass
        except BTFError:
            pass
    for dump in (dump_raw, dump_c):
        try:
            "".join(dump(spec))
        except BTFError:
            pass


def main() -> None:
    seeds = ROOT / "build" / "fuzz-seeds"
    seeds.mkdir(parents=True, exist_ok=True)
    for f in [*(ROOT / "tests/data/btf").glob("synthetic-*.btf.xz"), *(ROOT / "tests/data/btf/fuzz").glob("*.btf.xz")]:
        (seeds / f.stem).write_bytes(lzma.decompress(f.read_bytes()))
    for f in (ROOT / "tests/data/core/objs").glob("*.o"):
        (seeds / f.name).write_bytes(f.read_bytes())
    atheris.Setup([sys.argv[0], *sys.argv[1:], str(seeds)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
