"""``btfctl list [--kind K] [--match GLOB] [--format auto|json|columns]``: aligned columns on a
tty, JSON lines (docs/JSON.md) otherwise or with ``--format json``. Rows are printed as the
daemon's pages arrive."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from . import EXIT_NOT_FOUND, EXIT_OK
from ._output import output
from ._progress import Progress
from ._rpc import client, guard, kind_number
from ._shared import shared_spec

__all__ = ["run"]

_GLOB = set("*?[")


def run(args: argparse.Namespace) -> int:
    shared = shared_spec(args)
    if shared is not None:
        try:
            return _run_shared(args, shared.spec)
        finally:
            shared.close()
    from ..v1 import btfd_pb2 as pb

    if args.match is None:
        match, pattern = pb.NAME_MATCH_ANY, ""
    elif _GLOB & set(args.match):
        match, pattern = pb.NAME_MATCH_GLOB, args.match
    else:
        match, pattern = pb.NAME_MATCH_EXACT, args.match
    c = client(args)
    try:
        total = args.limit or None
        if total is None and match == pb.NAME_MATCH_ANY and not args.kind:
            # every type: the spec's count is the total (one GetInfo)
            info = guard(args, c.get_info)
            total = next((s.type_count for s in info.specs if s.name == args.spec), None)
        rows = guard(args, lambda: c.list_types(kind=kind_number(args.kind), name=pattern,
                                                 match=match, spec=args.spec, limit=args.limit))
        n = _print(args, iter(rows), total)
    finally:
        c.close()
    return EXIT_OK if n or args.match is None else EXIT_NOT_FOUND


def _run_shared(args: argparse.Namespace, spec: Any) -> int:
    """The listing computed here over the daemon's spec (fd socket): the daemon's query code
    (btfd.btf.query), the same rows in the same order."""
    from itertools import islice

    from ..btf import Kind
    from ..btf import query as Q

    if args.match is None:
        match, pattern = Q.Match.ANY, ""
    elif _GLOB & set(args.match):
        match, pattern = Q.Match.GLOB, args.match
    else:
        match, pattern = Q.Match.EXACT, args.match
    kind = Kind[args.kind.upper()] if args.kind else None
    rows = Q.matching(spec, pattern, match, kind=kind)
    if args.limit:
        rows = islice(rows, args.limit)
    total = args.limit or (spec.count if match == Q.Match.ANY and kind is None else None)
    n = guard(args, lambda: _print(args, rows, total))
    return EXIT_OK if n or args.match is None else EXIT_NOT_FOUND


def _print(args: argparse.Namespace, it: Iterator[Any], total: int | None) -> int:
    """Print summaries (TypeSummary messages or btfd.btf.query.Summary) as they come."""
    from ._json import summary_json

    progress = Progress("list")
    n = 0
    try:
        with output(args) as out:
            columns = args.format == "columns" or (args.format == "auto" and out.isatty())
            while True:
                t = guard(args, lambda: next(it, None))
                if t is None:
                    break
                row = summary_json(t)
                if columns:
                    out.write(f"[{row['id']:>6}] {row['kind']:<10} {row['name']:<40} {row['size'] or ''}\n")
                else:
                    out.write(json.dumps(row) + "\n")
                n += 1
                if n % 512 == 0:
                    progress.tick("types", n, total)
    finally:
        progress.done()
    return n
