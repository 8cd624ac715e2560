"""``btfctl min-btf OBJ... [--target FILE [--base FILE] | --spec NAME] -o OUT.btf``.

Writes the minimal BTF holding what the objects' CO-RE relocations need from the target
(like ``bpftool gen min_core_btf``); a loader takes it as custom BTF. With ``--target`` the
work is local; without it the daemon answers (``MinimizeBtf``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..btf import BTFError
from . import EXIT_OK, EXIT_USAGE

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
    from ..source import open_source
    from .cmd_core import load_target

    sources: list[Any] = []
    try:
        spec, sources = load_target(target, base)
        blobs = []
        for path in objects:
            src = open_source(path)
            sources.append(src)
            blobs.append(bytes(src.data))
        m = minimize(blobs, spec)
        spec.close()
        if spec.base is not None:
            spec.base.close()
    except BTFError as e:
        hint = ""
        if "string section does not start" in str(e) and not base:
            hint = " (is the target split BTF, e.g. a module's? pass its --base)"
        print(f"btfctl min-btf: {e}{hint}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for s in reversed(sources):
            try:
                s.close()
            except BufferError:
                pass
    return write_output(output, m.btf, len(m.types))


def run_remote(args: argparse.Namespace) -> int:
    """Ask the daemon (MinimizeBtf) against ``--spec``."""
    from ._rpc import client, guard

    objs = []
    for path in args.objects:
        try:
            with open(path, "rb") as f:
                objs.append(f.read())
        except OSError as e:
            print(f"btfctl min-btf: cannot read {path}: {e.strerror}", file=sys.stderr)
            return EXIT_USAGE
    c = client(args)
    try:
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
