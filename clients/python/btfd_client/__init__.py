"""btfd_client: what an agent imports to use btfd.

>>> from btfd_client import Client, open_shared
>>> with Client() as c:                      # socket: argument, $BTFD_SOCKET, or discovery
...     t = c.lookup_type("task_struct").types[0]
>>> with open_shared("vmlinux") as spec:     # the daemon's mapping and index, read in-process
...     spec.find_one("task_struct").size

The implementation lives in the ``btfd`` package (:mod:`btfd.client`, :mod:`btfd.shared`,
:mod:`btfd.btf`; btfctl uses the same code); this package is the stable import path for agents
and pins the API. Names are imported on first use: ``open_shared``, ``Spec`` and ``Kind`` need
the standard library only; ``Client``/``AsyncClient`` import grpc (the ``grpc`` extra:
``pip install 'btfd-client[grpc]'``), and only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from btfd.btf import Kind, Spec
    from btfd.client import RETRYABLE, AsyncClient, Client
    from btfd.paths import default_socket
    from btfd.shared import FdError, SharedSpec, open_shared, request_fd

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

_WHERE = {
    "Kind": "btfd.btf", "Spec": "btfd.btf",
    "FdError": "btfd.shared", "SharedSpec": "btfd.shared", "open_shared": "btfd.shared",
    "request_fd": "btfd.shared",
    "default_socket": "btfd.paths",
    "Client": "btfd.client", "AsyncClient": "btfd.client", "RETRYABLE": "btfd.client",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(mod), name)
    except ModuleNotFoundError as exc:
        if exc.name in ("grpc", "google", "google.protobuf", "grpc_health"):
            raise ImportError(f"btfd_client.{name} is the gRPC client: it needs grpcio and protobuf "
                              "(pip install 'btfd-client[grpc]'); open_shared() does not") from exc
        raise
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
