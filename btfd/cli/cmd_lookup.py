"""``btfctl lookup NAME|--id N``: a type as C (bpftool's text), JSON or a pahole-style tree.

With ``--depth N`` the C format prints declarations (structs, unions, enums, typedefs, forward
declarations) of the type and of what it refers to, in the dependency order bpftool's
``btf_dump__dump_type`` gives, each once; other kinds (pointers, ints, arrays) have no
declaration of their own and are not printed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from . import EXIT_OK, EXIT_USAGE
from ._output import output
from ._rpc import client, fd_retry_budget, fd_socket, guard, kind_number
from ._shared import shared_spec

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


def _find(args: argparse.Namespace, spec: Any, where: str) -> list[int]:
    """The ids ``lookup`` shows: ``--id``, or every type named NAME (of ``--kind``), with the
    daemon's NOT_FOUND wording."""
    from ..btf import BTFNotFoundError, Kind

    if args.id is not None:
        if args.id >= spec.next_id:
            raise BTFNotFoundError(f"spec {where} has no type id {args.id} (last is {spec.next_id - 1})")
        return [args.id]
    kind = Kind[args.kind.upper()] if args.kind else None
    ids: list[int] = spec.find_ids(args.name, kind)
    if not ids:
        what = f"{kind.name.lower()} " if kind is not None else ""
        raise BTFNotFoundError(f"no {what}type named {args.name!r} in {where}")
    return ids


def _shared(args: argparse.Namespace, spec: Any) -> int:
    """The daemon's spec read in-process (fd socket): what the gRPC path prints, formatted
    here by the same code the daemon runs."""
    ids = _find(args, spec, spec.name)
    with output(args) as out:
        _print_local(args, spec, ids, out)
    return EXIT_OK


def _local(args: argparse.Namespace, out: TextIO) -> int:
    from ._local import local_spec

    with local_spec(args.file, args.base) as spec:
        _print_local(args, spec, _find(args, spec, args.file), out)
    return EXIT_OK


def _print_local(args: argparse.Namespace, spec: Any, ids: list[int], out: TextIO) -> None:
    from ..btf.format_c import format_type_c
    from ._render import tree

    if args.format == "json":
        from ..convert import type_to_pb
        from ._json import type_json, write_lines

        all_ids = _with_refs(spec, ids, args.depth) if args.depth else ids
        write_lines((type_json(type_to_pb(spec, spec.type(t), spec.name, format_type_c))
                     for t in all_ids), out)
        return
    if args.format == "c" and args.depth:
        out.write(c_with_deps(spec, _with_refs(spec, ids, args.depth)))
        return
    for tid in ids:
        if args.format == "c":
            out.write(format_type_c(spec, tid))
        else:
            out.write(tree(spec, tid))


def run(args: argparse.Namespace) -> int:
    if (args.name is None) == (args.id is None):
        print("btfctl lookup: give a type NAME or --id N (not both)", file=sys.stderr)
        return EXIT_USAGE
    if args.id is not None and args.kind:
        print("btfctl lookup: --kind applies to a NAME, not to --id", file=sys.stderr)
        return EXIT_USAGE
    if args.file:
        with output(args) as out:
            return guard(args, lambda: _local(args, out))
    if args.base:
        print("btfctl lookup: --base needs --file", file=sys.stderr)
        return EXIT_USAGE
    if args.name == "":
        print("btfctl lookup: empty type name", file=sys.stderr)
        return EXIT_USAGE
    shared = shared_spec(args)
    if shared is not None:
        try:
            return guard(args, lambda: _shared(args, shared.spec))
        finally:
            shared.close()
    c = client(args)
    try:
        resp = guard(args, lambda: c.lookup_type(args.name, id=args.id, kind=kind_number(args.kind),
                                                 spec=args.spec, depth=args.depth))
    finally:
        c.close()
    with output(args) as out:
        _print_remote(args, resp, out)
    return EXIT_OK


def _print_remote(args: argparse.Namespace, resp: Any, out: TextIO) -> None:
    if args.format == "c" and not args.depth:
        for t in resp.types:
            out.write(t.c_decl)
    elif args.format == "json":
        from ._json import type_json, write_lines

        write_lines((type_json(t) for t in list(resp.types) + list(resp.referenced)), out)
    else:
        # Declarations in dependency order and layouts need the whole type graph: read it
        # in-process over the shared mapping instead of asking the daemon type by type.
        from ..shared import open_shared
        from ._render import tree

        path = fd_socket(args)
        shared = guard(args, lambda: open_shared(args.spec, fd_socket=path, timeout=args.timeout,
                                                   retry_budget=fd_retry_budget(args)), path)
        try:
            if args.format == "c":
                ids = [t.id for t in resp.types] + [t.id for t in resp.referenced]
                out.write(guard(args, lambda: c_with_deps(shared.spec, ids)))
            else:
                for t in resp.types:
                    out.write(tree(shared.spec, t.id))
        finally:
            shared.close()


def _with_refs(spec: Any, ids: list[int], depth: int) -> list[int]:
    """``ids`` then the types they refer to, breadth first, each once: the daemon's walk
    (:func:`btfd.btf.query.walk_refs`) with its default bounds, so both paths print the same."""
    from ..btf import query as Q

    found = Q.walk_refs([(spec, t) for t in ids], min(depth, Q.MAX_DEPTH), most=Q.MAX_REFERENCED)
    return list(ids) + [t for _, t in found]
