"""btfctl's local path to the daemon: its spec over the fd socket, read in this process.

With ``--via auto`` (the default) ``lookup``, ``list``, ``dump`` and ``raw`` map the spec the
daemon hands out (blob and index: nothing is built here) and format it with the same library
code the daemon runs, so the output is byte-identical to the gRPC path's, without importing
grpc. When the fd socket cannot be used (missing, not on its allow list, a spec held in
memory), they ask over gRPC instead. ``--via fd`` insists on the fd socket, ``--via grpc``
never uses it.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ._rpc import fd_retry_budget, fd_socket, guard

if TYPE_CHECKING:
    from ..shared import SharedSpec

__all__ = ["shared_spec", "VIA_CHOICES"]

VIA_CHOICES = ("auto", "fd", "grpc")


def shared_spec(args: argparse.Namespace) -> SharedSpec | None:
    """The daemon's ``--spec`` mapped here, or None when the command should use gRPC."""
    via = getattr(args, "via", "auto")
    if via == "grpc":
        return None
    from ..fdproto import FdError
    from ..shared import open_shared

    if via == "fd":
        path = fd_socket(args)  # may ask the daemon where its fd socket is
        return guard(args, lambda: open_shared(args.spec, fd_socket=path, timeout=args.timeout,
                                                 retry_budget=fd_retry_budget(args)), path)
    # auto: only an fd socket named or beside the gRPC socket; anything else is gRPC's to say.
    path = args.fd_socket or os.environ.get("BTFD_FD_SOCKET") or f"{args.socket}.fd"
    if not os.path.exists(path):
        return None
    try:
        return open_shared(args.spec, fd_socket=path, timeout=args.timeout, retry_budget=0)
    except (OSError, FdError):
        return None
