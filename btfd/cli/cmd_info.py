"""``btfctl info``: daemon version, kernel and what each spec costs."""

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
    print(f"btfd {info.version} on kernel {info.kernel_release}")
    print(f"gRPC socket {args.socket}, fd socket {info.fd_socket}")
    for s in info.specs:
        if not s.loaded:
            print(f"  {s.name:<24} (not loaded yet) {s.path}")
            continue
        idx = ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sorted(s.index_bytes.items()))
        base = f", split over {s.base}" if s.base else ""
        print(f"  {s.name:<24} {s.type_count:>7} types from [{s.start_id}], {s.size / 1048576:.2f} MiB, "
              f"{s.mode}, {s.byte_order}-endian{base}; index {idx}; {s.path}")
    return EXIT_OK
