"""``btfctl core OBJ [--target FILE [--base FILE] | --spec NAME] [--json]``.

With ``--target`` the object is resolved locally (no daemon); without it the daemon answers
(``ResolveCore``). Either way the records are printed by :func:`print_records`: one JSON
object per relocation in ``.BTF.ext`` order with ``--json``, else a table. Exit 0 when no
record is ``error``, 1 otherwise, 2 for bad input, 3 when the daemon is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from ..btf import BTFError
from . import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE

__all__ = [
    "run", "run_local", "run_remote", "print_records", "print_matrix", "exit_code", "record_from_message",
]


def record_from_message(m: Any) -> dict[str, Any]:
    """A ``btfd.v1.CoreRelocation`` message as the dict :func:`print_records` prints (the
    same keys as ``CoreRecord.to_dict()`` for the fields the RPC carries)."""
    st = m.status
    mem = {"from": m.mem_size_from, "to": m.mem_size_to} if m.mem_size_from or m.mem_size_to else None
    return {
        "sec": m.sec, "prog": m.prog, "insn": m.insn, "sec_insn": m.sec_insn, "kind": m.kind,
        "type_id": m.type_id, "type_name": m.type_name, "access": m.access, "status": st,
        "new_val": m.new_val if st == "ok" else None, "orig_val": m.orig_val if st == "ok" else None,
        "mem_size": mem, "target_type_id": m.target_type_id or None,
        "target_access": m.target_access or None, "error": m.error or None,
    }


def _records_as_dicts(records: Iterable[Any]) -> list[Mapping[str, Any]]:
    out = []
    for r in records:
        out.append(r.to_dict() if hasattr(r, "to_dict") else dict(r))
    return out


def exit_code(records: Iterable[Mapping[str, Any]]) -> int:
    """0 when no record has status ``error``, else 1."""
    return EXIT_NOT_FOUND if any(r.get("status") == "error" for r in records) else EXIT_OK


def _val(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, int) and v > 0xFFFF:
        return f"{v:#x}"
    return str(v)


def print_records(records: Iterable[Any], *, as_json: bool, out: TextIO | None = None) -> int:
    """Print records (CoreRecord objects or dicts with the same keys); returns the exit code.
    The daemon path calls this with the records it received, so both paths look alike."""
    out = out or sys.stdout
    recs = _records_as_dicts(records)
    if as_json:
        for r in recs:
            out.write(json.dumps(r, separators=(", ", ": ")) + "\n")
        return exit_code(recs)
    if not recs:
        out.write("no CO-RE relocations\n")
        return EXIT_OK
    rows = []
    for r in recs:
        where = f"{r.get('prog') or r.get('sec')}+{r.get('insn')}"
        name = r.get("type_name") or "<anon>"
        kind = r.get("type_kind")
        local = f"[{r.get('type_id')}] {kind + ' ' if kind else ''}{name} {r.get('access')}"
        st = r.get("status", "")
        if st == "ok":
            what = f"= {_val(r.get('new_val'))}"
            ms = r.get("mem_size")
            if ms:
                what += f"  (size {ms.get('from')} -> {ms.get('to')})"
            tt = r.get("target_type_id")
            if tt:
                tn, ta = r.get("target_type_name") or "", r.get("target_access") or ""
                what += "  <- " + " ".join(x for x in (f"[{tt}]", tn, ta) if x)
        elif st == "poison":
            what = "poisoned (no match)"
        else:
            what = r.get("error") or ""
        rows.append((where, str(r.get("kind", "")), local, st, what))
    heads = ("PROG+INSN", "KIND", "LOCAL", "STATUS")
    w = [max(len(heads[i]), *(len(row[i]) for row in rows)) for i in range(4)]
    out.write(f"{'PROG+INSN':<{w[0]}}  {'KIND':<{w[1]}}  {'LOCAL':<{w[2]}}  {'STATUS':<{w[3]}}  RESULT\n")
    for row in rows:
        out.write(f"{row[0]:<{w[0]}}  {row[1]:<{w[1]}}  {row[2]:<{w[2]}}  {row[3]:<{w[3]}}  {row[4]}\n")
    n = {s: sum(1 for r in recs if r.get("status") == s) for s in ("ok", "poison", "error", "skipped")}
    out.write(f"{len(recs)} relocations: {n['ok']} ok, {n['poison']} poisoned, {n['error']} errors"
              + (f", {n['skipped']} skipped" if n["skipped"] else "") + "\n")
    return exit_code(recs)


def run_local(obj_path: str, target: str, base: str | None, as_json: bool) -> int:
    """Resolve ``obj_path`` against the target file locally and print the records."""
    from ..core import resolve_object
    from ._local import local_spec, read_file, split_hint

    try:
        with local_spec(target, base) as spec:
            result = resolve_object(read_file(obj_path), spec)
        return print_records(result.records, as_json=as_json)
    except BTFError as e:
        print(f"btfctl core: {e}{split_hint(e, base)}", file=sys.stderr)
        return EXIT_USAGE


def run_remote(args: argparse.Namespace) -> int:
    """Ask the daemon (ResolveCore) against ``--spec``, or every served spec with --all-specs."""
    from ._local import read_file
    from ._rpc import client, guard

    obj = guard(args, lambda: read_file(args.object))
    c = client(args)
    try:
        specs = [args.spec]
        if args.all_specs:
            specs = [s.name for s in guard(args, c.get_info).specs if not s.name.startswith("module/")]
        resp = guard(args, lambda: c.resolve_core(obj, specs=specs))
    finally:
        c.close()
    if len(resp.results) == 1:
        return print_records([record_from_message(m) for m in resp.results[0].relocations], as_json=args.json)
    return print_matrix(resp.results, as_json=args.json)


def print_matrix(results: Any, *, as_json: bool, out: TextIO | None = None) -> int:
    """The fleet view: every relocation's verdict on every spec (one column a kernel)."""
    out = out or sys.stdout
    rows = [[record_from_message(m) for m in r.relocations] for r in results]
    names = [r.spec for r in results]
    if as_json:
        for i, first in enumerate(rows[0]):
            verdicts = {n: {k: rows[j][i][k] for k in ("status", "new_val", "error")}
                        for j, n in enumerate(names)}
            out.write(json.dumps({k: first[k] for k in ("sec", "prog", "insn", "kind", "type_name", "access")}
                                 | {"verdicts": verdicts}) + "\n")
    else:
        head = f"{'prog':<24} {'insn':>5} {'kind':<18} {'type':<20} {'access':<10} "
        out.write(head + " ".join(f"{n[:16]:>16}" for n in names) + "\n")
        for i, first in enumerate(rows[0]):
            cells = []
            for j in range(len(names)):
                r = rows[j][i]
                cells.append(f"{(str(r['new_val']) if r['status'] == 'ok' else r['status'])[:16]:>16}")
            out.write(f"{first['prog'][:24]:<24} {first['insn']:>5} {first['kind'][:18]:<18} "
                      f"{first['type_name'][:20]:<20} {first['access'][:10]:<10} " + " ".join(cells) + "\n")
        broken = [n for j, n in enumerate(names) if any(r["status"] == "error" for r in rows[j])]
        out.write(f"loads on: {', '.join(n for n in names if n not in broken) or 'none'}"
                  + (f"; fails on: {', '.join(broken)}" if broken else "") + "\n")
    return 1 if any(r.errors for r in results) else 0


def run(args: argparse.Namespace) -> int:
    if args.target:
        return run_local(args.object, args.target, args.base, args.json)
    if args.base:
        print("btfctl core: --base needs --target", file=sys.stderr)
        return EXIT_USAGE
    return run_remote(args)
