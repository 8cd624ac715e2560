"""What every daemon-talking subcommand shares: a client, and failures as exit codes with a
message that says what to do (never a traceback).

Unreachable (exit 3) is told apart: no daemon (no socket, or nothing listening), permission
denied on the socket (which owner, group and mode it has), a path that is not a socket, and a
daemon that did not answer within ``--timeout``.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import stat
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from . import EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE

__all__ = ["CliExit", "client", "guard", "kind_number", "fd_socket", "fd_retry_budget", "diagnose", "warn",
           "stdout_closed", "not_found_anywhere"]

T = TypeVar("T")


class CliExit(Exception):
    """Leave btfctl with ``code`` after printing ``message`` to stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _owner(st: os.stat_result) -> str:
    import grp
    import pwd

    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"owner {user}:{group}, mode {stat.S_IMODE(st.st_mode):04o}"


def unreachable(path: str, exc: OSError | None, timeout: float | None = None) -> CliExit:
    """The message for a socket at ``path`` that could not be used (``exc`` from connecting)."""
    start = f"start it with: btfd --socket {path.removesuffix('.fd')}"
    if isinstance(exc, TimeoutError) or (exc is None and timeout is not None):
        within = f" within {timeout:g} s" if timeout is not None else " in time"
        return CliExit(EXIT_UNREACHABLE, f"btfd at {path} did not answer{within} "
                                         "(busy or hung? see its log, or raise --timeout)")
    if isinstance(exc, PermissionError):
        try:
            how = f" ({_owner(os.stat(path))})"
        except OSError:
            how = f" (its directory {os.path.dirname(path) or '.'} is not searchable for you)"
        return CliExit(EXIT_UNREACHABLE, f"cannot connect to {path}: permission denied{how}; "
                                         f"add your user to the socket's group (ls -l {path})")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return CliExit(EXIT_UNREACHABLE, f"btfd is not running at {path} (no such socket); {start}")
    except OSError as e:
        return CliExit(EXIT_UNREACHABLE, f"cannot use {path}: {e.strerror}")
    if not stat.S_ISSOCK(st.st_mode):
        return CliExit(EXIT_UNREACHABLE, f"{path} is not a socket; is --socket right? "
                                         "(btfd's default is /run/btfd/btfd.sock)")
    if isinstance(exc, ConnectionRefusedError) or exc is None:
        return CliExit(EXIT_UNREACHABLE, f"btfd is not running at {path} (connection refused: "
                                         f"a stale socket); {start}")
    return CliExit(EXIT_UNREACHABLE, f"cannot connect to {path}: {exc.strerror or exc}")


def stdout_closed() -> bool:
    """True when whoever reads our stdout has gone (``| head`` done): a BrokenPipeError is
    then about stdout, not about a socket."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (ValueError, OSError):
        return True
    p = select.poll()
    p.register(fd, select.POLLOUT)
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))


def not_found_anywhere(args: argparse.Namespace) -> CliExit | None:
    """When no --socket and no $BTFD_SOCKET was given and no socket exists at any place of the
    discovery order: a message naming every place looked at, and how to start a daemon."""
    if getattr(args, "socket_from", "") != "default" or os.environ.get("BTFD_SOCKET"):
        return None
    from ..paths import candidates, tree_socket

    looked = candidates()
    if any(os.path.exists(p) for p in looked):
        return None
    tree = tree_socket()
    how = (f"start one with `make run` in the checkout (serves {tree})" if tree
           else f"start one with: btfd --socket {args.socket}")
    return CliExit(EXIT_UNREACHABLE, "btfd is not running: no socket at " + ", ".join(looked)
                   + f" (nor --socket, $BTFD_SOCKET); {how}, or pass --socket")


def diagnose(path: str, timeout: float = 2.0) -> CliExit | None:
    """Connect to ``path`` once (no gRPC): None when something accepts, else what is wrong."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return CliExit(EXIT_USAGE, f"socket path too long: {path}")
        return unreachable(path, exc, timeout)
    return None


def client(args: argparse.Namespace) -> Any:
    """A :class:`btfd.client.Client` on ``--socket``. Without ``--wait`` a socket that cannot be
    connected to fails at once (no retries); with it, retries last up to ``--timeout``."""
    from ..client import Client

    if not args.wait:
        problem = not_found_anywhere(args) or diagnose(args.socket, args.timeout)
        if problem is not None:
            raise problem
    # A CLI should answer quickly: retry a restarting daemon only briefly (unless --wait).
    budget = args.timeout if args.wait else min(2.0, args.timeout)
    return Client(args.socket, timeout=args.timeout, retry_budget=budget)


def fd_retry_budget(args: argparse.Namespace) -> float:
    """Seconds open_shared may retry a restarting daemon: none unless --wait (then --timeout),
    so that an unreachable fd socket fails at once, like the gRPC path."""
    return float(args.timeout) if getattr(args, "wait", False) else 0.0


def fd_socket(args: argparse.Namespace) -> str:
    """The fd socket to use: ``--fd-socket``/``$BTFD_FD_SOCKET``, the default beside
    ``--socket``, or the one the daemon advertises."""
    from ..shared import fd_socket_for

    problem = None if args.fd_socket or args.wait else not_found_anywhere(args)
    if problem is not None:
        raise problem
    return guard(args, lambda: fd_socket_for(args.socket, args.fd_socket, timeout=args.timeout))


def guard(args: argparse.Namespace, fn: Callable[[], T], path: str | None = None) -> T:
    """Run ``fn``; turn gRPC, library and socket errors into :class:`CliExit`. ``path`` is the
    socket ``fn`` talks to (default ``--socket``)."""
    where = path or args.socket
    try:
        return fn()
    except CliExit:
        raise
    except BrokenPipeError:
        if stdout_closed():
            raise  # our reader went away (| head): main() exits quietly
        raise unreachable(where, BrokenPipeError(errno.EPIPE, "Broken pipe"), args.timeout) from None
    except OSError as exc:
        if exc.filename is not None and not isinstance(exc, (TimeoutError, ConnectionError)):
            # A file argument (input or output), not the socket.
            raise CliExit(EXIT_USAGE, f"{exc.filename}: {exc.strerror}") from None
        raise unreachable(where, exc, args.timeout) from None
    except Exception as exc:
        grpc = sys.modules.get("grpc")
        if grpc is not None and isinstance(exc, grpc.RpcError):
            raise _from_rpc(args, where, exc) from None
        # Only code that imported the BTF library can raise its errors.
        errors = sys.modules.get("btfd.btf.errors")
        if errors is not None and isinstance(exc, errors.BTFError):
            status = getattr(exc, "status", "")
            if status == "NOT_FOUND":
                raise CliExit(EXIT_NOT_FOUND, str(exc)) from None
            if status in ("PERMISSION_DENIED", "UNAVAILABLE"):
                raise CliExit(EXIT_UNREACHABLE, f"{where}: {exc}") from None
            if status in ("INTERNAL", "UNKNOWN"):
                raise CliExit(EXIT_NOT_FOUND, f"btfd failed the request ({status}): {exc}") from None
            raise CliExit(EXIT_USAGE, str(exc)) from None
        raise


def _from_rpc(args: argparse.Namespace, where: str, exc: Any) -> CliExit:
    import grpc

    code = exc.code()
    details = exc.details() or code.name
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return unreachable(where, None, args.timeout)
    if code == grpc.StatusCode.UNAVAILABLE:
        # Connect once more without gRPC to say why (gone, refused, permission, not a socket).
        problem = diagnose(where, args.timeout)
        if problem is None and "timed out" in details:  # accepts, never speaks HTTP/2
            problem = unreachable(where, None, args.timeout)
        return problem or CliExit(EXIT_UNREACHABLE, f"btfd at {where} is unavailable: {details}")
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return CliExit(EXIT_UNREACHABLE, f"btfd at {where} refused the request: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return CliExit(EXIT_NOT_FOUND, details)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION):
        return CliExit(EXIT_USAGE, details)
    # INTERNAL, UNKNOWN, UNIMPLEMENTED, ...: not "not found"; say what the daemon said.
    return CliExit(EXIT_NOT_FOUND, f"btfd failed the request ({code.name}): {details} "
                                   "(see the daemon's log)")


def kind_number(name: str | None) -> int:
    if not name:
        return 0
    from ..v1 import btfd_pb2 as pb  # not the BTF library: the gRPC path starts without it

    return int(pb.Kind.Value("KIND_" + name.upper()))


def warn(msg: str) -> None:
    print(f"btfctl: {msg}", file=sys.stderr)
