"""The one place where library errors become gRPC status codes."""

from __future__ import annotations

import grpc

from ..btf import BTFError

__all__ = ["status_for", "RequestError"]


class RequestError(BTFError):
    """A request that is malformed on its face (missing key, bad pattern, ...)."""


def status_for(exc: BaseException) -> grpc.StatusCode:
    """BTFError carries a status name hint (``NOT_FOUND``, ``OUT_OF_RANGE``, ...)."""
    if isinstance(exc, BTFError):
        return getattr(grpc.StatusCode, exc.status, grpc.StatusCode.INVALID_ARGUMENT)
    return grpc.StatusCode.INTERNAL
