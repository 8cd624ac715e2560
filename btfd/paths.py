"""Where btfd's socket is: the one place the daemon, btfctl and the clients look it up.

No heavy imports here (the client distribution ships this module; it imports neither grpc nor
the BTF library).

The daemon listens on ``--socket``, else on :func:`listen_socket` (the system path as root,
else the per-user path). A client (``btfctl``, ``btfd_client.Client()``, ``open_shared()``)
uses the first of :data:`DISCOVERY_ORDER` that applies:

1. ``--socket`` (btfctl) or the ``socket_path=`` argument (clients);
2. ``$BTFD_SOCKET``;
3. the system path ``/run/btfd/btfd.sock`` (the packaged unit, the DaemonSet), if it exists;
4. the per-user path ``$XDG_RUNTIME_DIR/btfd.sock``, if it exists;
5. the working tree's ``run/btfd.sock`` (what ``make run`` serves), if btfd runs from a
   checkout and that socket exists.

When none of 3-5 exists, the answer is the path the daemon itself would listen on (3 as root,
else 4): error messages name it, and :func:`candidates` lists every place looked at.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SYSTEM_SOCKET", "DISCOVERY_ORDER", "default_socket", "listen_socket", "candidates",
           "user_socket", "tree_socket"]

SYSTEM_SOCKET = "/run/btfd/btfd.sock"

#: The discovery order, as btfctl's help and the docs print it.
DISCOVERY_ORDER = ("--socket", "$BTFD_SOCKET", SYSTEM_SOCKET, "$XDG_RUNTIME_DIR/btfd.sock",
                   "<checkout>/run/btfd.sock")


def user_socket() -> str | None:
    """``$XDG_RUNTIME_DIR/btfd.sock``, or None without ``$XDG_RUNTIME_DIR``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "btfd.sock") if xdg else None


def tree_socket() -> str | None:
    """``run/btfd.sock`` of the checkout this package runs from (``make run``'s socket), or
    None when btfd is installed from a wheel (no checkout around it)."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "Makefile").is_file():
        return str(root / "run" / "btfd.sock")
    return None


def listen_socket() -> str:
    """Where the daemon listens without ``--socket``: the system path as root (or without
    ``$XDG_RUNTIME_DIR``), else the per-user path."""
    user = user_socket()
    if os.geteuid() != 0 and user:
        return user
    return SYSTEM_SOCKET


def candidates() -> list[str]:
    """The paths of steps 3-5 of the discovery order that apply here, in order."""
    out = [SYSTEM_SOCKET]
    for p in (user_socket(), tree_socket()):
        if p and p not in out:
            out.append(p)
    return out


def default_socket(*, from_env: bool = True) -> str:
    """The socket a client uses when given none (steps 2-5 of the discovery order);
    ``from_env=False``: the daemon's listening default (:func:`listen_socket`)."""
    if not from_env:
        return listen_socket()
    if os.environ.get("BTFD_SOCKET"):
        return os.environ["BTFD_SOCKET"]
    for p in candidates():
        if os.path.exists(p):
            return p
    return listen_socket()
