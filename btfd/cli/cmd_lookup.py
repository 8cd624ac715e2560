"""``btfctl lookup NAME|--id N``: a type as C (bpftool's text), JSON or a pahole-style tree.

With ``--depth N`` the C format prints declarations (structs, unions, enums, typedefs, forward
declarations) of the type and of what it refers to, in the dependency order bpftool's
``btf_dump__dump_type`` gives, each once; other kinds (pointers, ints, arrays) have no
declaration of their own and are not printed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any

from . import EXIT_OK, EXIT_USAGE
from ._rpc import client, fd_retry_budget, fd_socket, guard, kind_number

__all__ = ["run", "c_with_deps"]


def c_with_deps(spec: Any, ids: Iterable[int]) -> str:
    """C declarations for ``ids`` and what they need, bpftool's order, each block once."""
    from ..btf import Kind
    from ..btf.format_c import CDumper, format_type_c

    d = CDumper(spec, whole_dump=False)
    out: list[str] = []
    for tid in ids:
        k = spec.type(tid).kind
        if k in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.TYPEDEF, Kind.FWD):
            d.dump_type(tid)
            out.append(d.take())
        elif k in (Kind.FUNC, Kind.VAR):
            out.append(format_type_c(spec, tid) + "\n")
    return "".join(out)


def _local(args: argparse.Namespace) -> int:
    from ..btf import BTFNotFoundError, Kind
    from ._local import local_spec

    with local_spec(args.file, args.base) as spec:
        if args.id is not None:
            spec.type(args.id)
            ids = [args.id]
        else:
            ids = spec.find_ids(args.name, Kind(kind_number(args.kind)) if args.kind else None)
            if not ids:
                raise BTFNotFoundError(f"no type named {args.name!r} in {args.file}")
        _print_local(args, spec, ids)
    return EXIT_OK


def _print_local(args: argparse.Namespace, spec: Any, ids: list[int]) -> None:
    from ..btf.format_c import format_type_c
    from ._convert import type_to_json
    from ._render import tree

    if args.format == "c" and args.depth:
        sys.stdout.write(c_with_deps(spec, _with_refs(spec, ids, args.depth)))
        return
    for tid in ids:
        if args.format == "c":
            sys.stdout.write(format_type_c(spec, tid))
        elif args.format == "tree":
            sys.stdout.write(tree(spec, tid))
        else:
            print(json.dumps(type_to_json(spec, spec.type(tid))))


def _with_refs(spec: Any, ids: list[int], depth: int) -> list[int]:
    """``ids`` then the types they refer to, breadth first, up to ``depth`` levels."""
    seen = set(ids)
    order = list(ids)
    level = list(ids)
    for _ in range(depth):
        nxt = []
        for tid in level:
            t = spec.type(tid)
            refs = [m.type for m in getattr(t, "members", ())]
            for attr in ("type", "return_type", "index_type"):
                v = getattr(t, attr, None)
                if isinstance(v, int):
                    refs.append(v)
            refs += [p.type for p in getattr(t, "params", ())]
            refs += [v.type for v in getattr(t, "vars", ())]
            for r in refs:
                if r and r not in seen:
                    seen.add(r)
                    order.append(r)
                    nxt.append(r)
        level = nxt
    return order


def run(args: argparse.Namespace) -> int:
    if (args.name is None) == (args.id is None):
        print("btfctl lookup: give a type NAME or --id N (not both)", file=sys.stderr)
        return EXIT_USAGE
    if args.id is not None and args.kind:
        print("btfctl lookup: --kind applies to a NAME, not to --id", file=sys.stderr)
        return EXIT_USAGE
    if args.file:
        return guard(args, lambda: _local(args))
    if args.base:
        print("btfctl lookup: --base needs --file", file=sys.stderr)
        return EXIT_USAGE
    c = client(args)
    try:
        resp = guard(args, lambda: c.lookup_type(args.name, id=args.id, kind=kind_number(args.kind),
                                                 spec=args.spec, depth=args.depth))
    finally:
        c.close()
    if args.format == "c" and not args.depth:
        for t in resp.types:
            sys.stdout.write(t.c_decl)
    elif args.format == "json":
        from google.protobuf.json_format import MessageToDict

        for t in list(resp.types) + list(resp.referenced):
            print(json.dumps(MessageToDict(t, preserving_proto_field_name=True)))
    else:
        # Declarations in dependency order and layouts need the whole type graph: read it
        # in-process over the shared mapping instead of asking the daemon type by type.
        from ..client import open_shared
        from ._render import tree

        path = fd_socket(args)
        shared = guard(args, lambda: open_shared(args.spec, fd_socket=path, timeout=args.timeout,
                                                   retry_budget=fd_retry_budget(args)), path)
        try:
            if args.format == "c":
                ids = [t.id for t in resp.types] + [t.id for t in resp.referenced]
                sys.stdout.write(guard(args, lambda: c_with_deps(shared.spec, ids)))
            else:
                for t in resp.types:
                    sys.stdout.write(tree(shared.spec, t.id))
        finally:
            shared.close()
    return EXIT_OK
