"""One error hierarchy for everything that reads BTF.

Each error carries a ``status`` hint (a gRPC status code name) so the server edge can map
library errors to status codes in exactly one place without importing grpc here.
"""

from __future__ import annotations

__all__ = [
    "BTFError",
    "BTFFormatError",
    "BTFNotFoundError",
    "BTFCycleError",
    "BTFRangeError",
    "BTFUnsupportedError",
    "BTFClosedError",
]


class BTFError(Exception):
    """Base of every error raised by :mod:`btfd.btf` (and :mod:`btfd.core`).

    ``offset`` is the byte offset in the blob (or section) the problem was found at, when
    one applies; ``status`` is the gRPC status code name the server should answer with.
    """

    status = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.offset = offset
        if offset is not None:
            message = f"{message} (at offset {offset:#x})"
        super().__init__(message)


class BTFFormatError(BTFError):
    """The bytes are not well-formed BTF (bad header, truncated record, bad offset...)."""


class BTFCycleError(BTFFormatError):
    """Following type references looped back (a typedef or pointer-free cycle)."""


class BTFNotFoundError(BTFError, LookupError):
    """A type id, name or spec that does not exist."""

    status = "NOT_FOUND"


class BTFRangeError(BTFError):
    """A byte range outside the blob."""

    status = "OUT_OF_RANGE"


class BTFUnsupportedError(BTFError):
    """Well-formed input using something this code cannot handle (an unknown kind with no
    layout information, for instance)."""

    status = "UNIMPLEMENTED"


class BTFClosedError(BTFError):
    """The spec was closed (its buffer released) and cannot be read any more."""

    status = "FAILED_PRECONDITION"
