"""``btfctl dump``: a whole spec as C (bpftool's ``format c``), raw text (bpftool's default)
or JSON lines. ``--file F [--base B]`` works locally. From the daemon, C comes rendered
(``DumpC``: rendered once per spec and kept there); other formats, and C from a daemon without
``DumpC``, read the spec over the fd socket (mapped, not copied) and format it here."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from . import EXIT_OK, EXIT_UNREACHABLE
from ._rpc import CliExit, fd_retry_budget, fd_socket, guard

__all__ = ["run", "render"]


def render(spec: Any, fmt: str) -> Iterator[str]:
    """The dump text of ``spec`` in pieces."""
    if fmt == "c":
        from ..btf.format_c import dump_c

        return dump_c(spec)
    if fmt == "raw":
        from ..btf.format_raw import dump_raw

        return dump_raw(spec)
    from ..btf.format_raw import type_to_dict

    return (json.dumps(type_to_dict(spec, t)) + "\n" for t in spec.types())


def _write(spec: Any, fmt: str) -> None:
    out = sys.stdout
    progress = sys.stderr.isatty()
    t0 = time.monotonic()
    shown = False
    for i, piece in enumerate(render(spec, fmt)):
        out.write(piece)
        if progress and i % 256 == 0 and time.monotonic() - t0 > 1.0:
            sys.stderr.write(f"\rbtfctl dump: {spec.name}: {time.monotonic() - t0:.0f}s")
            shown = True
    out.flush()
    if shown:
        sys.stderr.write("\n")


def _local(args: argparse.Namespace) -> int:
    from ._local import local_spec

    with local_spec(args.file, args.base) as spec:
        _write(spec, args.format)
    return EXIT_OK


def _rendered_c(args: argparse.Namespace) -> bool:
    """Copy the daemon's rendered C header to stdout. False when the daemon has no DumpC (an
    older btfd): the caller formats it here instead."""
    import grpc

    from ..v1 import btfd_pb2 as pb
    from ._rpc import client

    c = client(args)
    try:
        out = sys.stdout.buffer
        try:
            for chunk in c.stub.DumpC(pb.DumpCRequest(spec=args.spec), timeout=args.timeout):
                out.write(chunk.data)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return False
            raise
        out.flush()
        return True
    finally:
        c.close()


def run(args: argparse.Namespace) -> int:
    if args.file:
        return guard(args, lambda: _local(args))
    if args.base:
        print("btfctl dump: --base needs --file", file=sys.stderr)
        return 2
    if args.format == "c":
        try:
            if guard(args, lambda: _rendered_c(args)):
                return EXIT_OK
        except CliExit as exc:
            if exc.code != EXIT_UNREACHABLE:
                raise
            # gRPC socket unusable (e.g. only the fd socket is open to this user): format here.
    from ..client import open_shared

    path = fd_socket(args)
    shared = guard(args, lambda: open_shared(args.spec, fd_socket=path, timeout=args.timeout,
                                                   retry_budget=fd_retry_budget(args)), path)
    try:
        _write(shared.spec, args.format)
    finally:
        shared.close()
    return EXIT_OK
