"""btfd_client: what an agent imports to use btfd.

>>> from btfd_client import Client, open_shared
>>> with Client() as c:                      # socket: argument, $BTFD_SOCKET, or the default
...     t = c.lookup_type("task_struct").types[0]
>>> with open_shared("vmlinux") as spec:     # the daemon's mapping and index, read in-process
...     spec.find_one("task_struct").size

The implementation lives in :mod:`btfd.client` (gRPC) and :mod:`btfd.shared` (the fd path);
this package is the stable import path for agents and pins the API. The fd path never imports
grpc: the gRPC names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from btfd.btf import Kind, Spec
from btfd.paths import default_socket
from btfd.shared import FdError, SharedSpec, open_shared, request_fd

if TYPE_CHECKING:
    from btfd.client import RETRYABLE, AsyncClient, Client

__all__ = [
    "AsyncClient",
    "Client",
    "FdError",
    "Kind",
    "RETRYABLE",
    "SharedSpec",
    "Spec",
    "default_socket",
    "open_shared",
    "request_fd",
]

_GRPC = frozenset({"AsyncClient", "Client", "RETRYABLE"})


def __getattr__(name: str) -> Any:
    if name in _GRPC:
        from btfd import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
