"""btfctl: the operator's and agent author's command line for btfd.

Argument parsing lives here and imports nothing heavy; each subcommand's code lives in its own
module (``btfd.cli.cmd_<name>``) and is imported only when that subcommand runs, so
``btfctl --help`` and ``btfctl lookup`` start fast.

Exit codes: 0 ok, 1 not found (also: a CO-RE relocation error, or the daemon failed the
request, which the message then says), 2 usage, 3 daemon unreachable (not running, permission
denied, or no answer in time: the message says which).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_NOT_FOUND", "EXIT_USAGE", "EXIT_UNREACHABLE"]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


from ..paths import default_socket  # noqa: E402  (re-exported: btfctl's default socket)

_KINDS = (
    "int ptr array struct union enum fwd typedef volatile const restrict func func_proto var "
    "datasec float decl_tag type_tag enum64"
).split()


def _nonneg(text: str, limit: int) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {n}")
    if n > limit:
        raise argparse.ArgumentTypeError(f"too large (at most {limit}): {n}")
    return n


def _count(text: str) -> int:
    """argparse type: an integer 0..2**32-1 (ids, depths, limits: uint32 on the wire)."""
    return _nonneg(text, 0xFFFFFFFF)


def _offset(text: str) -> int:
    """argparse type: a byte offset or length 0..2**63-1 (uint64 on the wire)."""
    return _nonneg(text, (1 << 63) - 1)


def _seconds(text: str) -> float:
    """argparse type: a positive number of seconds."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="btfctl",
        description="Query kernel BTF served by btfd, or read BTF files locally.",
        epilog=(
            "examples:\n"
            "  btfctl lookup task_struct            C declaration, as bpftool prints it\n"
            "  btfctl lookup --id 42 --format json  one type, structured\n"
            "  btfctl list --kind struct --match 'bpf_*'\n"
            "  btfctl dump --file vmlinux.btf --format raw   (no daemon needed)\n"
            "  btfctl core prog.bpf.o --target vmlinux.btf --json\n"
            "exit codes: 0 ok; 1 not found (or the daemon failed the request: the message says\n"
            "  which); 2 usage; 3 daemon unreachable (not running, permission denied on the\n"
            "  socket, or no answer within --timeout: the message says which)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--socket", default=None, help="btfd gRPC socket (default: $BTFD_SOCKET, "
                   "else /run/btfd/btfd.sock, or $XDG_RUNTIME_DIR/btfd.sock when not root)")
    p.add_argument("--fd-socket", default=None, help="btfd fd-passing socket (default: "
                   "$BTFD_FD_SOCKET, else SOCKET.fd, else the one the daemon advertises)")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per call (default 10)")
    p.add_argument("--wait", action="store_true", help="wait up to --timeout for a daemon that "
                   "is not up yet (default: fail at once when the socket does not exist)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help)

    s = add("lookup", "look a type up by name or id")
    s.add_argument("name", nargs="?", help="type name (exact)")
    s.add_argument("--id", type=_count, help="type id instead of a name")
    s.add_argument("--kind", choices=_KINDS, help="only types of this kind")
    s.add_argument("--spec", default="vmlinux", help="spec to search (default vmlinux)")
    s.add_argument("--format", choices=("c", "json", "tree"), default="c")
    s.add_argument("--depth", type=_count, default=0, help="also show referenced types, N levels")
    s.add_argument("--file", help="read this BTF file locally instead of asking the daemon")
    s.add_argument("--base", help="base BTF for a split --file")

    s = add("list", "list types (JSON lines when not a terminal)")
    s.add_argument("--kind", choices=_KINDS)
    s.add_argument("--match", help="glob on the name (e.g. 'bpf_*')")
    s.add_argument("--spec", default="vmlinux")
    s.add_argument("--limit", type=_count, default=0, help="at most N types (0: all)")

    s = add("dump", "dump a whole spec as C or raw text (like bpftool btf dump)")
    s.add_argument("--format", choices=("c", "raw", "json"), default="raw")
    s.add_argument("--spec", default="vmlinux", help="spec on the daemon")
    s.add_argument("--file", help="dump this BTF file locally (raw BTF or ELF with .BTF)")
    s.add_argument("--base", help="base BTF for a split --file")

    s = add("raw", "read a byte range of a spec's blob")
    s.add_argument("--offset", type=_offset, required=True)
    s.add_argument("--length", type=_offset, required=True)
    s.add_argument("--spec", default="vmlinux")
    s.add_argument("-o", "--output", help="write to this file (stdout only when not a terminal; "
                   "'-' forces stdout)")

    add("info", "daemon version, kernel and specs")
    add("specs", "the specs the daemon serves, one a line")

    s = add("fd", "receive a spec's fd over SCM_RIGHTS, map it and check it")
    s.add_argument("--spec", default="vmlinux")
    s.add_argument("--fd-socket", default=argparse.SUPPRESS, help="same as the global --fd-socket")

    s = add("core", "CO-RE relocations of a BPF object against a target")
    s.add_argument("object", help="BPF ELF object (clang -target bpf -g)")
    s.add_argument("--target", help="target BTF file: work locally, no daemon")
    s.add_argument("--base", help="base BTF when --target is split (module) BTF")
    s.add_argument("--spec", default="vmlinux", help="spec on the daemon (without --target)")
    s.add_argument("--all-specs", action="store_true",
                   help="the fleet view: each relocation on every served kernel, and per kernel: "
                        "loads cleanly / loads with N poisoned relocations / fails")
    s.add_argument("--include-modules", action="store_true",
                   help="also look for candidates in module BTF (module/<name> specs), as libbpf does")
    s.add_argument("--json", action="store_true", help="one JSON object per relocation")
    from .cmd_core import STATUS_HELP

    s.epilog, s.formatter_class = STATUS_HELP, argparse.RawDescriptionHelpFormatter

    s = add("min-btf", "minimal BTF for a set of objects' CO-RE relocations")
    s.add_argument("objects", nargs="+")
    s.add_argument("--target", help="target BTF file: work locally")
    s.add_argument("--base", help="base BTF when --target is split BTF")
    s.add_argument("--spec", default="vmlinux")
    s.add_argument("-o", "--output", required=True)

    add("health", "exit 0 when btfd is serving (for probes)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.socket is None:
        args.socket = default_socket()
    if args.fd_socket is None:
        args.fd_socket = os.environ.get("BTFD_FD_SOCKET") or None
    mod = importlib.import_module(f"btfd.cli.cmd_{args.command.replace('-', '_')}")
    from ._rpc import CliExit

    try:
        rc: int = mod.run(args)
    except CliExit as exc:
        print(f"btfctl {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
