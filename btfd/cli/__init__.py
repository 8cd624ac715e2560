"""btfctl: the operator's and agent author's command line for btfd.

Argument parsing lives here and imports nothing heavy; each subcommand's code lives in its own
module (``btfd.cli.cmd_<name>``) and is imported only when that subcommand runs, so
``btfctl --help`` and ``btfctl lookup`` start fast.

Global options (``--socket``, ``--fd-socket``, ``--timeout``, ``--wait``) are accepted before
or after the subcommand. Every command that prints data takes ``--format`` (``json`` is the
schema of docs/JSON.md) and ``-o FILE``.

Exit codes: 0 ok, 1 not found (also: a CO-RE relocation error, or the daemon failed the
request, which the message then says), 2 usage, 3 daemon unreachable (not running, permission
denied, or no answer in time: the message says which); 141 when stdout was closed early
(``btfctl list | head``), quietly, as a tool killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..paths import DISCOVERY_ORDER, default_socket

__all__ = ["main", "build_parser", "default_socket", "EXIT_OK", "EXIT_NOT_FOUND", "EXIT_USAGE",
           "EXIT_UNREACHABLE", "EXIT_PIPE"]

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_PIPE = 128 + 13  # stdout closed by the reader: what a shell reports for SIGPIPE

#: Kind names for --kind, bpftool's spelling in lower case (``struct``, ``func_proto``).
KIND_CHOICES = (
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


_SOCKET_HELP = ("btfd gRPC socket (default: the first of " + ", ".join(DISCOVERY_ORDER[1:])
                + " that exists)")


def _globals(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The global options; on subcommands without defaults (``SUPPRESS``), so that a value
    given before the subcommand is not reset by the subcommand's parser."""
    def d(v: object) -> object:
        return v if defaults else argparse.SUPPRESS

    g = p.add_argument_group("global options (before or after the command)")
    g.add_argument("--socket", default=d(None), help=_SOCKET_HELP)
    g.add_argument("--fd-socket", default=d(None), help="btfd fd-passing socket (default: "
                   "$BTFD_FD_SOCKET, else SOCKET.fd, else the one the daemon advertises)")
    g.add_argument("--timeout", type=_seconds, default=d(10.0), help="seconds per call (default 10)")
    g.add_argument("--wait", action="store_true", default=d(False), help="wait up to --timeout for "
                   "a daemon that is not up yet (default: fail at once when the socket does not exist)")
    g.add_argument("--via", choices=("auto", "fd", "grpc"), default=d("auto"),
                   help="how lookup, list, dump and raw reach the daemon: auto (default): read its "
                   "spec in this process over the fd socket when it lets you in, else gRPC; fd: "
                   "the fd socket only; grpc: gRPC only (the same output either way; the limits "
                   "that protect the daemon do not apply to work done in your own process)")


def _add_output(s: argparse.ArgumentParser, what: str = "the output") -> None:
    s.add_argument("-o", "--output", metavar="FILE",
                   help=f"write {what} to FILE (written whole or not at all; '-': stdout)")


#: ``btfctl core --help``'s epilog (here, not in cmd_core: building the parser imports nothing).
CORE_STATUS_HELP = (
    "status: ok = patched with new_val; poison = nothing in the target matches: libbpf replaces the\n"
    "instruction with an invalid call and still loads the program (the verifier rejects it only if\n"
    "it is reachable); error = libbpf refuses the relocation, the program does not load (see\n"
    "'error'); skipped = not examined: after an error libbpf aborts the whole object; btfd marks\n"
    "the failing program's remaining records skipped and keeps resolving the other programs.\n"
    "--all-specs: per kernel, loads cleanly / loads with N poisoned relocations / fails.\n"
    "exit codes: 0 no error, 1 some relocation is an error (--fail-on poison: or poisoned),\n"
    "2 bad input (malformed object, object byte order not the target's), 3 daemon unreachable"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="btfctl",
        description="Query kernel BTF served by btfd, or read BTF files locally.",
        epilog=(
            "examples:\n"
            "  btfctl lookup task_struct            C declaration, as bpftool prints it\n"
            "  btfctl lookup --id 42 --format json  one type, structured (docs/JSON.md)\n"
            "  btfctl list --kind struct --match 'bpf_*'\n"
            "  btfctl dump --file vmlinux.btf --format raw   (no daemon needed)\n"
            "  btfctl core prog.bpf.o --target vmlinux.btf --format json\n"
            "socket discovery: --socket, $BTFD_SOCKET, /run/btfd/btfd.sock, $XDG_RUNTIME_DIR/btfd.sock,\n"
            "  the checkout's run/btfd.sock (make run): the first that exists\n"
            "exit codes: 0 ok; 1 not found (or the daemon failed the request: the message says\n"
            "  which); 2 usage; 3 daemon unreachable (not running, permission denied on the\n"
            "  socket, or no answer within --timeout: the message says which)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"btfctl {__version__}")
    _globals(p, True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help)
        _globals(s, False)
        return s

    s = add("lookup", "look a type up by name or id")
    s.add_argument("name", nargs="?", help="type name (exact)")
    s.add_argument("--id", type=_count, help="type id instead of a name")
    s.add_argument("--kind", choices=KIND_CHOICES, help="only types of this kind")
    s.add_argument("--spec", default="vmlinux", help="spec to search (default vmlinux)")
    s.add_argument("--format", choices=("c", "json", "tree"), default="c",
                   help="c: as bpftool prints it; json: docs/JSON.md; tree: pahole-style layout")
    s.add_argument("--depth", type=_count, default=0, help="also show referenced types, N levels")
    s.add_argument("--file", help="read this BTF file locally instead of asking the daemon")
    s.add_argument("--base", help="base BTF for a split --file")
    _add_output(s)

    s = add("list", "list types (columns on a terminal, JSON lines otherwise)")
    s.add_argument("--kind", choices=KIND_CHOICES)
    s.add_argument("--match", help="glob on the name (e.g. 'bpf_*')")
    s.add_argument("--spec", default="vmlinux")
    s.add_argument("--limit", type=_count, default=0, help="at most N types (0: all)")
    s.add_argument("--format", choices=("auto", "json", "columns"), default="auto",
                   help="auto (default): columns on a terminal, JSON lines otherwise")
    _add_output(s)

    s = add("dump", "dump a whole spec as C, raw text (like bpftool btf dump) or JSON lines")
    s.add_argument("--format", choices=("c", "raw", "json"), default="raw")
    s.add_argument("--spec", default="vmlinux", help="spec on the daemon")
    s.add_argument("--file", help="dump this BTF file locally (raw BTF or ELF with .BTF)")
    s.add_argument("--base", help="base BTF for a split --file")
    _add_output(s, "the dump (e.g. -o vmlinux.h)")

    s = add("raw", "read a byte range of a spec's blob")
    s.add_argument("--offset", type=_offset, required=True)
    s.add_argument("--length", type=_offset, required=True)
    s.add_argument("--spec", default="vmlinux")
    s.add_argument("-o", "--output", metavar="FILE", help="write to this file (stdout only when "
                   "not a terminal; '-' forces stdout)")

    s = add("info", "daemon version, kernel and specs")
    s.add_argument("--format", choices=("text", "json"), default="text")
    _add_output(s)
    s = add("specs", "the specs the daemon serves, one a line")
    s.add_argument("--format", choices=("text", "json"), default="text")
    _add_output(s)

    s = add("fd", "receive a spec's fd over SCM_RIGHTS, map it and check it")
    s.add_argument("--spec", default="vmlinux")
    s.add_argument("--format", choices=("text", "json"), default="text")
    _add_output(s)

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
    s.add_argument("--format", choices=("table", "json"), default="table",
                   help="table (default) or JSON lines: one object per relocation")
    s.add_argument("--json", action="store_const", const="json", dest="format",
                   help="same as --format json")
    s.add_argument("--fail-on", choices=("error", "poison"), default="error",
                   help="exit 1 when a relocation is an error (default), or also when one is "
                   "poisoned (for CI: the program would load, but a reachable poisoned "
                   "instruction fails verification)")
    _add_output(s)
    s.epilog, s.formatter_class = CORE_STATUS_HELP, argparse.RawDescriptionHelpFormatter

    s = add("min-btf", "minimal BTF for a set of objects' CO-RE relocations")
    s.add_argument("objects", nargs="+")
    s.add_argument("--target", help="target BTF file: work locally")
    s.add_argument("--base", help="base BTF when --target is split BTF")
    s.add_argument("--spec", default="vmlinux")
    s.add_argument("-o", "--output", metavar="FILE", required=True, help="the BTF file to write")

    s = add("health", "exit 0 when btfd is serving (for probes)")
    s.add_argument("--format", choices=("text", "json"), default="text")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.socket is None:
        args.socket = default_socket()
        args.socket_from = "default"
    else:
        args.socket_from = "--socket"
    if args.fd_socket is None:
        args.fd_socket = os.environ.get("BTFD_FD_SOCKET") or None
    mod = importlib.import_module(f"btfd.cli.cmd_{args.command.replace('-', '_')}")
    from ._rpc import CliExit, stdout_closed

    try:
        rc: int = mod.run(args)
        sys.stdout.flush()
    except CliExit as exc:
        print(f"btfctl {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        if not stdout_closed():
            raise
        # Output piped into `head` and closed: stop quietly, as tools killed by SIGPIPE do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
