"""What every daemon-talking subcommand shares: a client, and gRPC errors as exit codes with
a message that says what to do (never a traceback)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from . import EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE

__all__ = ["CliExit", "client", "guard", "kind_number"]

T = TypeVar("T")


class CliExit(Exception):
    """Leave btfctl with ``code`` after printing ``message`` to stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def client(args: argparse.Namespace) -> Any:
    from ..client import Client

    # A CLI should answer quickly: retry a restarting daemon only briefly.
    return Client(args.socket, timeout=args.timeout, retry_budget=min(2.0, args.timeout))


def guard(args: argparse.Namespace, fn: Callable[[], T]) -> T:
    """Run ``fn``; turn gRPC and library errors into :class:`CliExit`."""
    import grpc

    from ..btf import BTFError

    try:
        return fn()
    except grpc.RpcError as exc:
        code = exc.code()
        details = exc.details() or code.name
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise CliExit(
                EXIT_UNREACHABLE,
                f"btfd is not running at {args.socket} ({code.name.lower()}); "
                f"start it with: btfd --socket {args.socket}",
            ) from None
        if code == grpc.StatusCode.NOT_FOUND:
            raise CliExit(EXIT_NOT_FOUND, details) from None
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
                    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION):
            raise CliExit(EXIT_USAGE, details) from None
        raise CliExit(EXIT_NOT_FOUND, f"{code.name}: {details}") from None
    except BTFError as exc:
        code_ = EXIT_NOT_FOUND if exc.status == "NOT_FOUND" else EXIT_USAGE
        raise CliExit(code_, str(exc)) from None
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise CliExit(
            EXIT_UNREACHABLE,
            f"btfd is not running at {args.socket} ({exc.strerror}); "
            f"start it with: btfd --socket {args.socket}",
        ) from None


def kind_number(name: str | None) -> int:
    if not name:
        return 0
    from ..btf.kinds import kind_from_name

    return int(kind_from_name(name))


def warn(msg: str) -> None:
    print(f"btfctl: {msg}", file=sys.stderr)
