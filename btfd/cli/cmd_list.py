"""``btfctl list [--kind K] [--match GLOB]``: JSON lines in pipes, aligned columns on a tty."""

from __future__ import annotations

import argparse
import json
import sys

from . import EXIT_NOT_FOUND, EXIT_OK
from ._rpc import client, guard, kind_number

__all__ = ["run"]

_GLOB = set("*?[")


def run(args: argparse.Namespace) -> int:
    from ..btf.kinds import KIND_NAMES
    from ..v1 import btfd_pb2 as pb

    if args.match is None:
        match, pattern = pb.NAME_MATCH_ANY, ""
    elif _GLOB & set(args.match):
        match, pattern = pb.NAME_MATCH_GLOB, args.match
    else:
        match, pattern = pb.NAME_MATCH_EXACT, args.match
    tty = sys.stdout.isatty()
    c = client(args)
    n = 0
    try:
        for t in guard(args, lambda: list(c.list_types(kind=kind_number(args.kind), name=pattern,
                                                       match=match, spec=args.spec, limit=args.limit))):
            kind = KIND_NAMES.get(t.kind, str(t.kind)).lower()
            if tty:
                print(f"[{t.id:>6}] {kind:<10} {t.name or '(anon)':<40} {t.size or ''}")
            else:
                print(json.dumps({"id": t.id, "kind": kind, "name": t.name, "size": t.size}))
            n += 1
    finally:
        c.close()
    return EXIT_OK if n or args.match is None else EXIT_NOT_FOUND
