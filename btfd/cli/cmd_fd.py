"""``btfctl fd``: receive a spec's fd over SCM_RIGHTS, map it, check it, say what it got."""

from __future__ import annotations

import argparse
import fcntl
import os

from . import EXIT_OK
from ._rpc import guard

__all__ = ["run"]

_SEALS = {fcntl.F_SEAL_WRITE: "write", fcntl.F_SEAL_GROW: "grow", fcntl.F_SEAL_SHRINK: "shrink",
          fcntl.F_SEAL_SEAL: "seal"}


def run(args: argparse.Namespace) -> int:
    from ..client import open_shared

    path = args.fd_socket or args.socket + ".fd"
    shared = guard(args, lambda: open_shared(args.spec, fd_socket=path, timeout=args.timeout))
    try:
        s, a = shared.spec, shared.answer
        h = s.header
        print(f"spec {a['spec']}: {a['size']} bytes, mode {a['mode']}, base {a['base'] or '-'}")
        print(f"header ok: BTF v{h.version}, {s.byte_order}-endian, hdr_len {h.hdr_len}, "
              f"types {h.types_end - h.types_start} bytes, strings {h.strs_end - h.strs_start} bytes")
        print(f"types: {s.count} from [{s.start_id}]")
        fd = _fd_of(shared)
        if fd is not None:
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


def _fd_of(shared: object) -> int | None:
    data = getattr(getattr(shared, "spec", None), "data", None)
    # The mapping does not expose its fd; look the mapped file up through /proc instead.
    del data
    for name in sorted(os.listdir("/proc/self/fd"), key=int, reverse=True):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("/memfd:") or target.startswith("/sys/kernel/btf/"):
            return int(name)
    return None
