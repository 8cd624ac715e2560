"""Default socket locations, shared by the daemon and its clients (no heavy imports here)."""

from __future__ import annotations

import os

__all__ = ["default_socket"]


def default_socket(*, from_env: bool = True) -> str:
    """Clients: ``$BTFD_SOCKET`` first (``from_env``). Then ``/run/btfd/btfd.sock`` for root
    (or without ``$XDG_RUNTIME_DIR``), else ``$XDG_RUNTIME_DIR/btfd.sock``."""
    if from_env and os.environ.get("BTFD_SOCKET"):
        return os.environ["BTFD_SOCKET"]
    if os.geteuid() != 0 and os.environ.get("XDG_RUNTIME_DIR"):
        return os.path.join(os.environ["XDG_RUNTIME_DIR"], "btfd.sock")
    return "/run/btfd/btfd.sock"
