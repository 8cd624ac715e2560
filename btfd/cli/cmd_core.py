"""``btfctl core OBJ [--target FILE [--base FILE] | --spec NAME | --all-specs] [--format json]``.

With ``--target`` the object is resolved locally (no daemon); without it the daemon answers
(``ResolveCore``). Either way the records are printed by :func:`print_records`: one JSON
object per relocation in ``.BTF.ext`` order with ``--format json``, else a table; a local
record goes through the wire message the daemon would send, so both modes print the same
rows. Exit 0 when no record is ``error`` (``--fail-on poison``: nor ``poison``), 1 otherwise,
2 for bad input (a malformed object, or one whose byte order
is not the target's), 3 when the daemon is unreachable.

A record's ``status`` (:data:`STATUS_HELP`, also in ``btfctl core --help``):

- ``ok``: the instruction is patched with ``new_val`` (and its load/store size changed when
  ``mem_size`` says so);
- ``poison``: nothing in the target matches (or the load/store size may not change); libbpf
  replaces the instruction with an invalid call and still loads the program: the verifier
  rejects it only if that instruction is reachable (guard it with bpf_core_field_exists() etc.);
- ``error``: libbpf refuses this relocation, so the program, and with libbpf the whole object,
  does not load; ``error`` says why;
- ``skipped``: not examined: after an error libbpf aborts the whole object; btfd marks the
  failing program's remaining records skipped and keeps resolving the other programs (also:
  an instruction no function symbol holds, which libbpf never looks at).

``--all-specs`` (:func:`print_matrix`) prints the fleet view: each relocation's verdict on every
kernel the daemon serves, rows marked ``*`` where kernels disagree, then one verdict per kernel:
loads cleanly / loads with N poisoned relocations (each named) / fails (each error and why).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from . import CORE_STATUS_HELP, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from ._output import output

__all__ = [
    "run", "run_local", "run_remote", "print_records", "print_matrix", "exit_code", "record_from_message",
    "STATUS_HELP", "kernel_verdicts",
]

#: What each record status means (the text ``btfctl core --help`` shows; this module imports
#: nothing heavy at load time so that the parser can take it from here).
STATUS_HELP = CORE_STATUS_HELP


def record_from_message(m: Any) -> dict[str, Any]:
    """A ``btfd.v1.CoreRelocation`` message as the record dict of docs/JSON.md."""
    from ._json import record_json

    return record_json(m)


def _record(r: Any) -> dict[str, Any]:
    """Any form of a record as the one dict both modes print: a local
    :class:`btfd.core.CoreRecord` goes through the wire message the daemon would have sent
    (:func:`btfd.convert.core_record_to_pb`), a message is converted, a dict is kept."""
    if isinstance(r, dict):
        return r
    if hasattr(r, "to_dict"):
        from ..convert import core_record_to_pb

        r = core_record_to_pb(r)
    return record_from_message(r)


def _records_as_dicts(records: Iterable[Any]) -> list[Mapping[str, Any]]:
    return [_record(r) for r in records]


def exit_code(records: Iterable[Mapping[str, Any]], fail_on: str = "error") -> int:
    """1 when a record has status ``error`` (``fail_on="poison"``: or ``poison``), else 0."""
    bad = ("error", "poison") if fail_on == "poison" else ("error",)
    return EXIT_NOT_FOUND if any(r.get("status") in bad for r in records) else EXIT_OK


def _val(v: Any) -> str:
    """A value in full: decimal up to 0xffff, hex above (never cut)."""
    if v is None:
        return "-"
    if isinstance(v, int) and v > 0xFFFF:
        return f"{v:#x}"
    return str(v)


def print_records(records: Iterable[Any], *, as_json: bool, out: TextIO | None = None,
                  fail_on: str = "error") -> int:
    """Print records (CoreRecord objects, CoreRelocation messages or record dicts) in the one
    row format of both modes; returns the exit code."""
    out = out or sys.stdout
    recs = _records_as_dicts(records)
    if as_json:
        for r in recs:
            out.write(json.dumps(r) + "\n")
        return exit_code(recs, fail_on)
    if not recs:
        out.write("no CO-RE relocations\n")
        return EXIT_OK
    rows = []
    for r in recs:
        where = f"{r.get('prog') or r.get('sec')}+{r.get('insn')}"
        local = f"[{r.get('type_id')}] {r.get('type_name')} {r.get('access')}"
        st = r.get("status", "")
        if st == "ok":
            what = f"= {_val(r.get('new_val'))}"
            ms = r.get("mem_size")
            if ms:
                what += f"  (size {ms.get('from')} -> {ms.get('to')})"
            tt = r.get("target_type_id")
            if tt:
                what += "  <- " + " ".join(x for x in (f"[{tt}]", r.get("target_access") or "") if x)
        elif st == "poison":
            what = ("poisoned (load/store size may not change)" if r.get("target_type_id")
                    else "poisoned (no match)")
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
    return exit_code(recs, fail_on)


def run_local(obj_path: str, target: str, base: str | None, as_json: bool, *,
              out: TextIO | None = None, fail_on: str = "error") -> int:
    """Resolve ``obj_path`` against the target file locally and print the records."""
    from ..btf import BTFError
    from ..core import resolve_object
    from ._local import local_spec, read_file

    try:
        with local_spec(target, base) as spec:
            result = resolve_object(read_file(obj_path), spec)
        return print_records(result.records, as_json=as_json, out=out, fail_on=fail_on)
    except BTFError as e:
        print(f"btfctl core: {e}", file=sys.stderr)
        return EXIT_USAGE


def run_remote(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Ask the daemon (ResolveCore) against ``--spec``, or every served spec with --all-specs.

    With --all-specs, a kernel that cannot take the object at all (its byte order is not the
    object's) comes back ``refused`` and is reported as failing, with the reason."""
    from ._local import read_file
    from ._rpc import client, guard

    obj = guard(args, lambda: read_file(args.object))
    mods = bool(getattr(args, "include_modules", False))
    c = client(args)
    try:
        specs = [args.spec]
        if args.all_specs:
            specs = [s.name for s in guard(args, c.get_info).specs if not s.name.startswith("module/")]
        resp = guard(args, lambda: c.resolve_core(obj, specs=specs, include_modules=mods))
    finally:
        c.close()
    as_json = args.format == "json"
    if not args.all_specs:
        return print_records(resp.results[0].relocations, as_json=as_json, out=out, fail_on=args.fail_on)
    refused = {r.spec: r.refused for r in resp.results if r.refused}
    results = [(r.spec, [record_from_message(m) for m in r.relocations])
               for r in resp.results if not r.refused]
    return print_matrix(results, as_json=as_json, refused=refused, out=out, fail_on=args.fail_on)


_ROW_KEYS = ("sec", "prog", "insn", "kind", "type_name", "access")


def _cell(r: Mapping[str, Any]) -> str:
    st = r.get("status")
    if st == "ok":
        ms = r.get("mem_size")
        return _val(r.get("new_val")) + (f" ({ms['from']}->{ms['to']}B)" if ms else "")
    return str(st)


def _verdict_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r.get("status"), r.get("new_val"), json.dumps(r.get("mem_size"), sort_keys=True))


def _where(r: Mapping[str, Any]) -> str:
    at = f"{r.get('prog') or r.get('sec')}+{r.get('insn')}"
    return f"{at} {r.get('kind')} {r.get('type_name') or '<anon>'} {r.get('access')}"


def kernel_verdicts(records: Sequence[Mapping[str, Any]], refused: str | None = None) -> dict[str, Any]:
    """One kernel's verdict on an object: ``loads`` (cleanly), ``loads-with-poison`` (libbpf
    loads it; the verifier rejects a poisoned instruction only if it is reachable) or
    ``fails`` (some relocation is an error, or the kernel cannot take the object at all)."""
    def ref(r: Mapping[str, Any], with_error: bool) -> dict[str, Any]:
        d = {k: r.get(k) for k in _ROW_KEYS}
        if with_error:
            d["error"] = r.get("error")
        return d

    poisoned = [ref(r, False) for r in records if r.get("status") == "poison"]
    errors = [ref(r, True) for r in records if r.get("status") == "error"]
    if refused is not None:
        verdict = "fails"
    elif errors:
        verdict = "fails"
    elif poisoned:
        verdict = "loads-with-poison"
    else:
        verdict = "loads"
    counts = {s: sum(1 for r in records if r.get("status") == s)
              for s in ("ok", "poison", "error", "skipped")}
    return {"verdict": verdict, "refused": refused, **counts, "poisoned": poisoned, "errors": errors}


def print_matrix(results: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] | Any, *, as_json: bool,
                 out: TextIO | None = None, refused: Mapping[str, str] | None = None,
                 fail_on: str = "error") -> int:
    """The fleet view: every relocation's verdict on every spec (one column a kernel), rows
    where kernels disagree marked, then one verdict per kernel. ``results``: ``(spec name,
    records as dicts)`` pairs (or ``CoreResult`` messages); ``refused``: kernels that cannot
    take the object at all (byte order), by name, with the reason. Exit 1 when the object
    fails on some kernel, else 0."""
    out = out or sys.stdout
    refused = dict(refused or {})
    pairs: list[tuple[str, list[Mapping[str, Any]]]] = []
    for item in results:
        if isinstance(item, tuple):
            pairs.append((item[0], _records_as_dicts(item[1])))
        else:
            pairs.append((item.spec, [record_from_message(m) for m in item.relocations]))
    names = [n for n, _ in pairs]
    rows = [recs for _, recs in pairs]
    n_rows = len(rows[0]) if rows else 0
    if any(len(r) != n_rows for r in rows):
        raise ValueError("results of different lengths: not the same object")
    differs = [len({_verdict_key(rows[j][i]) for j in range(len(names))}) > 1 for i in range(n_rows)]
    summaries = {n: kernel_verdicts(rows[j]) for j, n in enumerate(names)}
    for n, why in refused.items():
        summaries[n] = kernel_verdicts([], refused=why)
    order = names + [n for n in refused if n not in names]
    if as_json:
        for i in range(n_rows):
            first = rows[0][i]
            verdicts: dict[str, Any] = {
                n: {k: rows[j][i].get(k) for k in ("status", "new_val", "mem_size", "error")}
                for j, n in enumerate(names)
            }
            for n, why in refused.items():
                verdicts[n] = {"status": "error", "new_val": None, "mem_size": None, "error": why}
            out.write(json.dumps({k: first.get(k) for k in _ROW_KEYS}
                                 | {"differs": differs[i], "verdicts": verdicts}) + "\n")
        for n in order:
            out.write(json.dumps({"spec": n, "summary": summaries[n]}) + "\n")
    else:
        _matrix_table(out, names, rows, differs)
        out.write("verdict per kernel:\n")
        w = max((len(n) for n in order), default=0)
        for n in order:
            sm = summaries[n]
            if sm["refused"]:
                out.write(f"  {n:<{w}}  fails: {sm['refused']}\n")
            elif sm["verdict"] == "fails":
                k = sm["error"]
                out.write(f"  {n:<{w}}  fails: {k} relocation error{'s' if k != 1 else ''}"
                          + (f", {sm['skipped']} skipped" if sm["skipped"] else "") + "\n")
                for e in sm["errors"]:
                    out.write(f"  {'':<{w}}    {_where(e)}: {e['error']}\n")
            elif sm["verdict"] == "loads-with-poison":
                k = sm["poison"]
                out.write(f"  {n:<{w}}  loads with {k} poisoned relocation{'s' if k != 1 else ''} "
                          "(the verifier rejects the program if one is reachable):\n")
                for p_ in sm["poisoned"]:
                    out.write(f"  {'':<{w}}    {_where(p_)}\n")
            else:
                out.write(f"  {n:<{w}}  loads cleanly\n")
    bad = ("fails", "loads-with-poison") if fail_on == "poison" else ("fails",)
    return EXIT_NOT_FOUND if any(summaries[n]["verdict"] in bad for n in order) else EXIT_OK


def _matrix_table(out: TextIO, names: list[str], rows: list[list[Mapping[str, Any]]],
                  differs: list[bool]) -> None:
    if not rows or not rows[0]:
        out.write("no CO-RE relocations\n")
        return
    heads = ["", "PROG+INSN", "KIND", "TYPE", "ACCESS", *names]
    table = []
    for i, first in enumerate(rows[0]):
        at = f"{first.get('prog') or first.get('sec')}+{first.get('insn')}"
        table.append(["*" if differs[i] else "", at, str(first.get("kind")),
                      str(first.get("type_name") or "<anon>"), str(first.get("access")),
                      *(_cell(rows[j][i]) for j in range(len(names)))])
    w = [max(len(heads[c]), *(len(row[c]) for row in table)) for c in range(len(heads))]
    fixed = 5

    def line(cells: list[str]) -> str:
        left = "  ".join(f"{c:<{w[k]}}" for k, c in enumerate(cells[:fixed]))
        right = "  ".join(f"{c:>{w[fixed + k]}}" for k, c in enumerate(cells[fixed:]))
        return (left + "  " + right).rstrip() + "\n"

    out.write(line(heads))
    for row in table:
        out.write(line(row))
    nd = sum(differs)
    out.write(f"{len(table)} relocations; {nd} marked * differ across kernels\n")


def run(args: argparse.Namespace) -> int:
    if args.target:
        if getattr(args, "include_modules", False) or args.all_specs:
            print("btfctl core: --include-modules and --all-specs ask the daemon; drop --target",
                  file=sys.stderr)
            return EXIT_USAGE
        with output(args) as out:
            return run_local(args.object, args.target, args.base, args.format == "json", out=out,
                             fail_on=args.fail_on)
    if args.base:
        print("btfctl core: --base needs --target", file=sys.stderr)
        return EXIT_USAGE
    with output(args) as out:
        return run_remote(args, out)
