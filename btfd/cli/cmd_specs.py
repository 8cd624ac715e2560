"""``btfctl specs [--format text|json]``: the names of the specs the daemon serves, one a line
(JSON: one ``{"name", "loaded"}`` object a line)."""

from __future__ import annotations

import argparse
import json

from . import EXIT_OK
from ._output import output
from ._rpc import client, guard

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    c = client(args)
    try:
        info = guard(args, c.get_info)
    finally:
        c.close()
    with output(args) as out:
        for s in info.specs:
            out.write(json.dumps({"name": s.name, "loaded": s.loaded}) + "\n" if args.format == "json"
                      else s.name + "\n")
    return EXIT_OK
