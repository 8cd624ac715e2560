"""``btfctl specs``: the names of the specs the daemon serves, one a line."""

from __future__ import annotations

import argparse

from . import EXIT_OK
from ._rpc import client, guard

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    c = client(args)
    try:
        info = guard(args, c.get_info)
    finally:
        c.close()
    for s in info.specs:
        print(s.name)
    return EXIT_OK
