"""``btfctl dump``: a whole spec as C (bpftool's ``format c``), raw text (bpftool's default)
or JSON lines (docs/JSON.md). ``--file F [--base B]`` works locally. From the daemon, C comes
rendered (rendered once per spec and kept there); other formats, and C from a daemon that
does not render, read the spec over the fd socket (mapped, not copied) and format it here.
``-o FILE`` writes it whole or not at all."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from . import EXIT_OK, EXIT_UNREACHABLE
from ._output import output
from ._progress import Progress
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
    return _json_lines(spec)


def _json_lines(spec: Any) -> Iterator[str]:
    """Each type as the JSON type object (without ``spec`` and ``c_decl``): the library type
    goes through the wire message and the one JSON converter, like the daemon's answers."""
    from ..convert import type_to_pb
    from ._json import type_json

    batch: list[str] = []
    for t in spec.types():
        batch.append(json.dumps(type_json(type_to_pb(spec, t, spec.name, None), extras=False)))
        if len(batch) == 256:
            yield "\n".join(batch) + "\n"
            batch.clear()
    if batch:
        yield "\n".join(batch) + "\n"


def _write(spec: Any, fmt: str, out: TextIO) -> None:
    progress = Progress("dump")
    total = spec.start_id + spec.count
    pos = 0
    try:
        for piece in render(spec, fmt):
            out.write(piece)
            pos += 1
            if pos % 64 == 0 and progress.on:
                # the formatters yield batches in id order; the id written last tells how far
                last = piece.rfind("\n[", 0, len(piece) - 1)
                progress.tick(f"{spec.name}", _last_id(piece, last), total - 1)
        out.flush()
    finally:
        progress.done()


def _last_id(piece: str, at: int) -> int | None:
    """The type id of the last ``[N] `` (raw) or ``{"id": N`` (json) line of a piece."""
    if at >= 0:
        end = piece.find("]", at)
        try:
            return int(piece[at + 2:end])
        except ValueError:
            return None
    at = piece.rfind('{"id": ')
    if at >= 0:
        end = piece.find(",", at)
        try:
            return int(piece[at + 7:end])
        except ValueError:
            return None
    return None


def _local(args: argparse.Namespace) -> int:
    from ._local import local_spec

    with local_spec(args.file, args.base) as spec, output(args) as out:
        _write(spec, args.format, out)
    return EXIT_OK


def _rendered_c_fd(args: argparse.Namespace) -> bool:
    """Copy the daemon's rendered C header to the output from the fd the fd socket hands out
    (``+c``: no gRPC, the kernel copies it). False when the fd socket cannot be used here or
    this daemon does not render: the caller tries gRPC, then formats here."""
    if getattr(args, "via", "auto") == "grpc":
        return False
    from ..fdproto import FdError
    from ..shared import request

    path = args.fd_socket or os.environ.get("BTFD_FD_SOCKET") or f"{args.socket}.fd"
    try:
        answer, fds = request(path, args.spec, c=True, timeout=args.timeout,
                              retry_budget=fd_retry_budget(args))
    except (OSError, FdError) as exc:
        cannot_render = isinstance(exc, FdError) and exc.status in ("INVALID_ARGUMENT", "FAILED_PRECONDITION")
        if getattr(args, "via", "auto") == "fd" and not cannot_render:
            raise
        return False
    try:
        with output(args) as out:
            out.flush()
            dst, off, size = out.fileno(), 0, answer.c_size
            while off < size:
                n = os.sendfile(dst, fds[-1], off, size - off)
                if n == 0:
                    raise OSError(errno.EIO, "the rendered header ended early")
                off += n
    finally:
        for fd in fds:
            os.close(fd)
    return True


def _rendered_c(args: argparse.Namespace) -> bool:
    """Copy the daemon's rendered C header to the output. False when the daemon has no
    ``DumpC`` (an older btfd): the caller formats it here instead."""
    import grpc

    from ..v1 import btfd_pb2 as pb
    from ._rpc import client

    c = client(args)
    try:
        with output(args) as out:
            raw = out.buffer
            try:
                for chunk in c.stub.DumpC(pb.DumpCRequest(spec=args.spec), timeout=args.timeout):
                    raw.write(chunk.data)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return False
                raise
            raw.flush()
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
        if guard(args, lambda: _rendered_c_fd(args)):
            return EXIT_OK
    if args.format == "c" and getattr(args, "via", "auto") != "fd":
        try:
            if guard(args, lambda: _rendered_c(args)):
                return EXIT_OK
        except CliExit as exc:
            if exc.code != EXIT_UNREACHABLE:
                raise
            # gRPC socket unusable (e.g. only the fd socket is open to this user): format here.
    from ..shared import open_shared

    path = fd_socket(args)
    shared = guard(args, lambda: open_shared(args.spec, fd_socket=path, timeout=args.timeout,
                                                   retry_budget=fd_retry_budget(args)), path)
    try:
        with output(args) as out:
            _write(shared.spec, args.format, out)
    finally:
        shared.close()
    return EXIT_OK
