"""``btfctl list [--kind K] [--match GLOB]``: JSON lines in pipes, aligned columns on a tty.
Rows are printed as the daemon's pages arrive."""

from __future__ import annotations

import argparse
import json
import sys

from . import EXIT_NOT_FOUND, EXIT_OK
from ._progress import Progress
from ._rpc import client, guard, kind_number

__all__ = ["run"]

_GLOB = set("*?[")


def run(args: argparse.Namespace) -> int:
    from ..v1 import btfd_pb2 as pb

    if args.match is None:
        match, pattern = pb.NAME_MATCH_ANY, ""
    elif _GLOB & set(args.match):
        match, pattern = pb.NAME_MATCH_GLOB, args.match
    else:
        match, pattern = pb.NAME_MATCH_EXACT, args.match
    tty = sys.stdout.isatty()
    kinds = {v: k.removeprefix("KIND_").lower() for k, v in pb.Kind.items()}
    progress = Progress("list")
    c = client(args)
    n = 0
    try:
        rows = guard(args, lambda: c.list_types(kind=kind_number(args.kind), name=pattern,
                                                 match=match, spec=args.spec, limit=args.limit))
        it = iter(rows)
        while True:
            t = guard(args, lambda: next(it, None))
            if t is None:
                break
            kind = kinds.get(t.kind, str(t.kind))
            if tty:
                sys.stdout.write(f"[{t.id:>6}] {kind:<10} {t.name or '(anon)':<40} {t.size or ''}\n")
            else:
                row = {"id": t.id, "kind": kind, "name": t.name, "size": t.size}
                sys.stdout.write(json.dumps(row) + "\n")
            n += 1
            if n % 512 == 0:
                progress.tick(f"{n} types")
    finally:
        progress.done()
        c.close()
    return EXIT_OK if n or args.match is None else EXIT_NOT_FOUND
