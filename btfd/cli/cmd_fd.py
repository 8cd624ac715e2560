"""``btfctl fd``: receive a spec's fd over SCM_RIGHTS, map it, check it, say what it got."""

from __future__ import annotations

import argparse
import fcntl
import os

from . import EXIT_OK
from ._rpc import fd_retry_budget, fd_socket, guard

__all__ = ["run"]

_SEALS = {fcntl.F_SEAL_WRITE: "write", fcntl.F_SEAL_GROW: "grow", fcntl.F_SEAL_SHRINK: "shrink",
          fcntl.F_SEAL_SEAL: "seal"}


def run(args: argparse.Namespace) -> int:
    from ..client import open_shared

    path = fd_socket(args)
    shared = guard(args, lambda: open_shared(args.spec, fd_socket=path, timeout=args.timeout,
                                                   retry_budget=fd_retry_budget(args)), path)
    try:
        s, a = shared.spec, shared.answer
        h = s.header
        print(f"fd socket {path}")
        print(f"spec {a['spec']}: {a['size']} bytes, mode {a['mode']}, base {a['base'] or '-'}")
        print(f"header ok: BTF v{h.version}, {s.byte_order}-endian, hdr_len {h.hdr_len}, "
              f"types {h.types_end - h.types_start} bytes, strings {h.strs_end - h.strs_start} bytes")
        print(f"types: {s.count} from [{s.start_id}]")
        fd = shared.fd
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = "?"
        print(f"fd {fd}: {target}")
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            print("seals: " + (", ".join(n for b, n in _SEALS.items() if seals & b) or "none"))
        except OSError:
            print("seals: not a memfd (kernel file, read-only)")
        acc = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        print("opened read-only" if acc == os.O_RDONLY else f"opened with access mode {acc}")
    finally:
        shared.close()
    return EXIT_OK
