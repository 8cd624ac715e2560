"""``btfctl lookup NAME|--id N``: a type as C (bpftool's text), JSON or a pahole-style tree."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import EXIT_OK, EXIT_USAGE
from ._rpc import client, guard, kind_number

__all__ = ["run"]


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
    from ..server.convert import type_to_pb
    from ._render import tree

    for tid in ids:
        if args.format == "c":
            sys.stdout.write(format_type_c(spec, tid))
        elif args.format == "tree":
            sys.stdout.write(tree(spec, tid))
        else:
            from google.protobuf.json_format import MessageToDict

            m = type_to_pb(spec, spec.type(tid), spec.name, format_type_c)
            print(json.dumps(MessageToDict(m, preserving_proto_field_name=True)))


def run(args: argparse.Namespace) -> int:
    if (args.name is None) == (args.id is None):
        print("btfctl lookup: give a type NAME or --id N (not both)", file=sys.stderr)
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
        if args.format == "c":
            for t in resp.types:
                sys.stdout.write(t.c_decl)
            for t in resp.referenced:
                if t.c_decl:
                    sys.stdout.write(t.c_decl)
        elif args.format == "json":
            from google.protobuf.json_format import MessageToDict

            for t in list(resp.types) + list(resp.referenced):
                print(json.dumps(MessageToDict(t, preserving_proto_field_name=True)))
        else:
            # The layout needs sizes of every member type: read them in-process over the
            # shared mapping instead of asking the daemon type by type.
            from ..client import open_shared
            from ._render import tree

            shared = guard(args, lambda: open_shared(args.spec, socket_path=args.socket,
                                                     timeout=args.timeout))
            try:
                for t in resp.types:
                    sys.stdout.write(tree(shared.spec, t.id))
            finally:
                shared.close()
    finally:
        c.close()
    return EXIT_OK


