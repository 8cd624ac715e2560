"""The one place where errors become status codes (gRPC and the fd socket alike), and where
user input quoted in an error message is cut to a size a status trailer can carry."""

from __future__ import annotations

import logging

import grpc

from ..btf import BTFError

__all__ = ["RequestError", "describe", "quote", "MAX_MESSAGE", "MAX_QUOTED"]

log = logging.getLogger("btfd.errors")

MAX_QUOTED = 128  # characters of a request string echoed back in an error message
MAX_MESSAGE = 1024  # characters of any error message (gRPC metadata has an 8 KiB soft limit)


class RequestError(BTFError):
    """A request that is malformed on its face (missing key, bad pattern, ...)."""


def quote(value: str) -> str:
    """``repr(value)``, cut to :data:`MAX_QUOTED` characters with the full length noted."""
    if len(value) <= MAX_QUOTED:
        return repr(value)
    return f"{value[:MAX_QUOTED]!r}... ({len(value)} characters)"


def describe(exc: BaseException, what: str = "request") -> tuple[grpc.StatusCode, str]:
    """(status code, message) for an exception a request raised. Library errors carry their
    status name (``NOT_FOUND``, ``OUT_OF_RANGE``, ...; INVALID_ARGUMENT when it is not a gRPC
    code); anything else is a bug: INTERNAL, logged with its traceback."""
    if isinstance(exc, BTFError):
        code = getattr(grpc.StatusCode, exc.status, None)
        if not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.INVALID_ARGUMENT
        message = str(exc)
    elif isinstance(exc, MemoryError):
        log.warning("%s: out of memory", what)
        code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, "the daemon ran out of memory for this request"
    else:
        log.error("%s failed", what, exc_info=exc)
        code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return code, message
