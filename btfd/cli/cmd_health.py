"""``btfctl health [--format text|json]``: exit 0 when btfd answers SERVING (readiness and
liveness probes)."""

from __future__ import annotations

import argparse
import json

from . import EXIT_OK, EXIT_UNREACHABLE
from ._rpc import client, guard

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    c = client(args)
    try:
        ok = guard(args, c.health)
    finally:
        c.close()
    status = "SERVING" if ok else "NOT_SERVING"
    print(json.dumps({"status": status, "socket": args.socket}) if args.format == "json" else status)
    return EXIT_OK if ok else EXIT_UNREACHABLE
