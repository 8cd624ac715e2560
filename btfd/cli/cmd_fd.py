"""``btfctl fd [--format text|json]``: receive a spec's fd over SCM_RIGHTS, map it, check it,
say what it got."""

from __future__ import annotations

import argparse
import fcntl
import json
import os

from . import EXIT_OK
from ._output import output
from ._rpc import fd_retry_budget, fd_socket, guard

__all__ = ["run"]

_SEALS = {fcntl.F_SEAL_WRITE: "write", fcntl.F_SEAL_GROW: "grow", fcntl.F_SEAL_SHRINK: "shrink",
          fcntl.F_SEAL_SEAL: "seal"}


def run(args: argparse.Namespace) -> int:
    from ..shared import open_shared

    path = fd_socket(args)
    shared = guard(args, lambda: open_shared(args.spec, fd_socket=path, timeout=args.timeout,
                                                   retry_budget=fd_retry_budget(args)), path)
    try:
        s, a = shared.spec, shared.answer
        h = s.header
        fd = shared.fd
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = "?"
        try:
            bits = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            seals: list[str] | None = [n for b, n in _SEALS.items() if bits & b]
        except OSError:
            seals = None  # not a memfd: a kernel file, opened read-only
        acc = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        d = {"fd_socket": path, "spec": a["spec"], "size": a["size"], "mode": a["mode"],
             "base": a["base"] or "", "version": h.version, "byte_order": s.byte_order,
             "hdr_len": h.hdr_len, "types_bytes": h.types_end - h.types_start,
             "strings_bytes": h.strs_end - h.strs_start, "type_count": s.count,
             "start_id": s.start_id, "fd": fd, "fd_target": target, "seals": seals,
             "read_only": acc == os.O_RDONLY}
    finally:
        shared.close()
    with output(args) as out:
        if args.format == "json":
            out.write(json.dumps(d) + "\n")
            return EXIT_OK
        out.write(f"fd socket {path}\n")
        out.write(f"spec {d['spec']}: {d['size']} bytes, mode {d['mode']}, base {d['base'] or '-'}\n")
        out.write(f"header ok: BTF v{d['version']}, {d['byte_order']}-endian, hdr_len {d['hdr_len']}, "
                  f"types {d['types_bytes']} bytes, strings {d['strings_bytes']} bytes\n")
        out.write(f"types: {d['type_count']} from [{d['start_id']}]\n")
        out.write(f"fd {fd}: {target}\n")
        out.write("seals: " + (", ".join(seals) or "none" if seals is not None
                               else "not a memfd (kernel file, read-only)") + "\n")
        out.write("opened read-only\n" if d["read_only"] else f"opened with access mode {acc}\n")
    return EXIT_OK
