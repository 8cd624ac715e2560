"""``btfctl raw --offset N --length M [-o FILE]``: bytes of a spec's blob."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from . import EXIT_OK, EXIT_USAGE
from ._rpc import client, guard
from ._shared import shared_spec

__all__ = ["run"]


def _read(spec: Any, offset: int, length: int) -> bytes:
    """Bytes of the blob, as ReadRaw gives them: the range must lie inside it."""
    from ..btf import BTFRangeError

    end = offset + length
    size = len(spec.data)
    if offset > size or end > size:  # the daemon's ReadRaw check and words
        raise BTFRangeError(f"range [{offset}, {end}) is outside {spec.name}'s {size} bytes")
    return bytes(spec.data[offset:end])


def run(args: argparse.Namespace) -> int:
    to_stdout = args.output in (None, "-")
    if args.output is None and sys.stdout.isatty():
        # Like curl: binary bytes would garble the terminal.
        print("btfctl raw: refusing to write binary data to a terminal; use -o FILE "
              "(or -o - to insist, or pipe it: | xxd)", file=sys.stderr)
        return EXIT_USAGE
    f = None
    ok = False
    if not to_stdout:
        try:
            f = open(args.output, "wb")
        except OSError as e:
            print(f"btfctl raw: cannot write {args.output}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    try:
        shared = shared_spec(args)
        if shared is not None:
            try:
                data = guard(args, lambda: _read(shared.spec, args.offset, args.length))
            finally:
                shared.close()
        else:
            c = client(args)
            try:
                data = guard(args, lambda: c.read_raw(args.offset, args.length, spec=args.spec))
            finally:
                c.close()
        if f is not None:
            try:
                f.write(data)
            except OSError as e:
                print(f"btfctl raw: cannot write {args.output}: {e.strerror}", file=sys.stderr)
                return EXIT_USAGE
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        ok = True
    finally:
        if f is not None:
            f.close()
            if not ok:  # no daemon, bad range: leave no empty file behind
                try:
                    os.unlink(args.output)
                except OSError:
                    pass
    return EXIT_OK
