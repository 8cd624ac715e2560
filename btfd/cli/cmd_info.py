"""``btfctl info [--format text|json]``: daemon version, kernel and what each spec costs."""

from __future__ import annotations

import argparse
import json

from . import EXIT_OK
from ._output import output
from ._rpc import client, guard

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    from ._json import info_json

    c = client(args)
    try:
        info = info_json(guard(args, c.get_info), args.socket)
    finally:
        c.close()
    with output(args) as out:
        if args.format == "json":
            out.write(json.dumps(info) + "\n")
            return EXIT_OK
        out.write(f"btfd {info['version']} on kernel {info['kernel_release']}\n")
        out.write(f"gRPC socket {info['socket']}, fd socket {info['fd_socket']}\n")
        for s in info["specs"]:
            if not s["loaded"]:
                out.write(f"  {s['name']:<24} (not loaded yet) {s['path']}\n")
                continue
            idx = ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in s["index_bytes"].items())
            base = f", split over {s['base']}" if s["base"] else ""
            out.write(f"  {s['name']:<24} {s['type_count']:>7} types from [{s['start_id']}], "
                      f"{s['size'] / 1048576:.2f} MiB, {s['mode']}, {s['byte_order']}-endian{base}; "
                      f"index {idx}; {s['path']}\n")
    return EXIT_OK
