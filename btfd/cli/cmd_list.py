"""``btfctl list [--kind K] [--match GLOB] [--format auto|json|columns]``: aligned columns on a
tty, JSON lines (docs/JSON.md) otherwise or with ``--format json``. Rows are printed as the
daemon's pages arrive."""

from __future__ import annotations

import argparse
import json

from . import EXIT_NOT_FOUND, EXIT_OK
from ._output import output
from ._progress import Progress
from ._rpc import client, guard, kind_number

__all__ = ["run"]

_GLOB = set("*?[")


def run(args: argparse.Namespace) -> int:
    from ..v1 import btfd_pb2 as pb
    from ._json import summary_json

    if args.match is None:
        match, pattern = pb.NAME_MATCH_ANY, ""
    elif _GLOB & set(args.match):
        match, pattern = pb.NAME_MATCH_GLOB, args.match
    else:
        match, pattern = pb.NAME_MATCH_EXACT, args.match
    progress = Progress("list")
    c = client(args)
    n = 0
    try:
        total = args.limit or None
        if total is None and match == pb.NAME_MATCH_ANY and not args.kind:
            # every type: the spec's count is the total (one GetInfo)
            info = guard(args, c.get_info)
            total = next((s.type_count for s in info.specs if s.name == args.spec), None)
        rows = guard(args, lambda: c.list_types(kind=kind_number(args.kind), name=pattern,
                                                 match=match, spec=args.spec, limit=args.limit))
        it = iter(rows)
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
        c.close()
    return EXIT_OK if n or args.match is None else EXIT_NOT_FOUND
