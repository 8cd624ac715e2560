"""btfd_client: what an agent imports to use btfd.

>>> from btfd_client import Client, open_shared
>>> with Client() as c:                      # socket: argument, $BTFD_SOCKET, or the default
...     t = c.lookup_type("task_struct").types[0]
>>> with open_shared("vmlinux") as spec:     # the daemon's mapping, parsed in-process
...     spec.find_one("task_struct").size

The implementation lives in :mod:`btfd.client` (btfctl uses the same code); this package is
the stable import path for agents and pins the API.
"""

from btfd.btf import Kind, Spec
from btfd.client import (
    RETRYABLE,
    AsyncClient,
    Client,
    FdError,
    SharedSpec,
    default_socket,
    open_shared,
    request_fd,
)

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
