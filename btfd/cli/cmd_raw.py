"""``btfctl raw --offset N --length M [-o FILE]``: bytes of a spec's blob."""

from __future__ import annotations

import argparse
import sys

from . import EXIT_OK, EXIT_USAGE
from ._rpc import client, guard

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    if args.offset < 0 or args.length < 0:
        print("btfctl raw: --offset and --length must not be negative", file=sys.stderr)
        return EXIT_USAGE
    c = client(args)
    try:
        data = guard(args, lambda: c.read_raw(args.offset, args.length, spec=args.spec))
    finally:
        c.close()
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return EXIT_OK
