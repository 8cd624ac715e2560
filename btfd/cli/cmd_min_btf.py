"""``btfctl min-btf OBJ... [--target FILE [--base FILE] | --spec NAME] -o OUT.btf``.

Writes the minimal BTF holding what the objects' CO-RE relocations need from the target
(like ``bpftool gen min_core_btf``); a loader takes it as custom BTF. With ``--target`` the
work is local; without it the daemon answers (``MinimizeBtf``).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..btf import BTFError
from . import EXIT_OK, EXIT_USAGE
from ._progress import Elapsed

__all__ = ["run", "run_local", "run_remote", "write_output"]


def write_output(path: str, blob: bytes, type_count: int) -> int:
    """Write the BTF blob (atomically: temp file + rename) and say what was written."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except OSError as e:
        print(f"btfctl min-btf: cannot write {path}: {e.strerror}", file=sys.stderr)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return EXIT_USAGE
    print(f"wrote {path}: {type_count} types, {len(blob)} bytes", file=sys.stderr)
    return EXIT_OK


def run_local(objects: list[str], target: str, base: str | None, output: str) -> int:
    from ..core.minimize import minimize
    from ._local import local_spec, read_file

    try:
        with local_spec(target, base) as spec, Elapsed("min-btf", f"minimising against {target}"):
            m = minimize([read_file(p) for p in objects], spec)
    except BTFError as e:
        print(f"btfctl min-btf: {e}", file=sys.stderr)
        return EXIT_USAGE
    return write_output(output, m.btf, len(m.types))


def run_remote(args: argparse.Namespace) -> int:
    """Ask the daemon (MinimizeBtf) against ``--spec``."""
    from ._local import read_file
    from ._rpc import client, guard

    objs = guard(args, lambda: [read_file(p) for p in args.objects])
    c = client(args)
    try:
        with Elapsed("min-btf", f"waiting for btfd ({args.spec})"):
            resp = guard(args, lambda: c.minimize_btf(objs, spec=args.spec))
    finally:
        c.close()
    return write_output(args.output, resp.btf, resp.type_count)


def run(args: argparse.Namespace) -> int:
    if args.target:
        return run_local(args.objects, args.target, args.base, args.output)
    if args.base:
        print("btfctl min-btf: --base needs --target", file=sys.stderr)
        return EXIT_USAGE
    return run_remote(args)
