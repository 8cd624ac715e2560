"""The zero-copy path of the client: a spec's fd from btfd's fd socket (SCM_RIGHTS), mapped
``PROT_READ``/``MAP_PRIVATE`` and parsed in place by the BTF library.

Kept apart from :mod:`btfd.client` so that gRPC-only users (``btfctl lookup``) do not import
the BTF library; :mod:`btfd.client` re-exports everything here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .btf import BTFError, Spec
from .paths import default_socket
from .retry import Backoff

__all__ = ["FdError", "SharedSpec", "fd_socket_for", "open_shared", "request_fd"]


class FdError(BTFError):
    """The fd socket answered with an error; ``status`` is the daemon's status name
    (``NOT_FOUND``, ``PERMISSION_DENIED``, ...), ``str(exc)`` its message."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


#: Reaching the daemon failed in a way a restart explains: retried within the budget.
_UNREACHABLE = (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError)


def request_fd(fd_socket: str, spec: str = "vmlinux", *, timeout: float = 10.0,
               retry_budget: float = 15.0) -> tuple[dict[str, Any], int]:
    """One request on the fd socket: ``(answer, fd)``. Raises :class:`FdError` on an error
    answer, OSError (``FileNotFoundError``, ``PermissionError``, ``TimeoutError``, ...) when the
    socket cannot be reached or does not answer within ``timeout`` seconds.

    A daemon that is restarting (the socket missing or refusing connections, or the
    connection closed before an answer: FdError ``UNAVAILABLE``) is retried with backoff
    for up to ``retry_budget`` seconds of wall time, like :class:`btfd.client.Client`; no
    other failure is retried."""
    backoff = Backoff(retry_budget)
    while True:
        try:
            return _request_fd_once(fd_socket, spec, timeout)
        except (*_UNREACHABLE, FdError) as exc:
            if isinstance(exc, FdError) and exc.status != "UNAVAILABLE":
                raise
            d = backoff.pause()
            if d is None:
                raise
            time.sleep(d)


def _request_fd_once(fd_socket: str, spec: str, timeout: float) -> tuple[dict[str, Any], int]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(fd_socket)
        s.sendall(spec.encode() + b"\n")
        buf = b""
        fds: list[int] = []
        while not buf.endswith(b"\n"):
            msg, got, _flags, _addr = socket.recv_fds(s, 4096, 1)
            fds.extend(got)
            if not msg:
                break
            buf += msg
    if not buf:
        for fd in fds:
            os.close(fd)
        raise FdError(f"{fd_socket} closed the connection without answering (daemon stopping?)",
                      "UNAVAILABLE")
    try:
        answer = json.loads(buf)
        if not isinstance(answer, dict):
            raise ValueError
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise FdError(f"malformed answer from {fd_socket}: {buf[:200]!r}", "INTERNAL") from None
    if "error" in answer:
        for fd in fds:
            os.close(fd)
        raise FdError(str(answer["error"]), str(answer.get("code", "UNKNOWN")))
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise FdError(f"expected exactly one fd with the answer, got {len(fds)}", "INTERNAL")
    return answer, fds[0]


def fd_socket_for(socket_path: str | None = None, fd_socket: str | None = None, *,
                  timeout: float = 10.0) -> str:
    """Where to ask for fds: ``fd_socket`` if given, else ``$BTFD_FD_SOCKET``, else the gRPC
    socket + ``.fd`` when that exists (btfd's default), else what the daemon advertises
    (``GetInfo.fd_socket``: a daemon started with ``--fd-socket`` elsewhere)."""
    if fd_socket:
        return fd_socket
    if os.environ.get("BTFD_FD_SOCKET"):
        return os.environ["BTFD_FD_SOCKET"]
    grpc_socket = socket_path or default_socket()
    guess = grpc_socket + ".fd"
    if os.path.exists(guess) or not os.path.exists(grpc_socket):
        return guess
    import grpc

    from .client import Client

    try:
        with Client(grpc_socket, timeout=timeout, retry_budget=0) as c:
            advertised = c.get_info().fd_socket
    except grpc.RpcError:
        return guess  # a stale socket (daemon restarting): the default, retried by request_fd
    if advertised and not os.path.isabs(advertised):
        advertised = os.path.join(os.path.dirname(grpc_socket), advertised)
    return advertised or guess


@dataclass
class SharedSpec:
    """A spec over a mapping of an fd received from btfd.

    ``spec`` is the usable spec, ``fd`` the descriptor it maps (still open, read-only; a
    memfd for file-backed specs, a /sys/kernel/btf file otherwise), ``base`` the
    :class:`SharedSpec` of the base for split specs. :meth:`close` releases spec, mappings and
    fds (base included)."""

    spec: Spec
    answer: dict[str, Any]
    fd: int = -1
    base: SharedSpec | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def fds(self) -> list[int]:
        """This spec's fd, then its base's (for split specs)."""
        return [self.fd] + (self.base.fds if self.base else [])

    def close(self) -> None:
        self.spec.close()
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Spec:
        return self.spec

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_shared(spec: str = "vmlinux", *, fd_socket: str | None = None,
                socket_path: str | None = None, timeout: float = 10.0,
                retry_budget: float = 15.0) -> SharedSpec:
    """Receive ``spec``'s fd from btfd, map it ``PROT_READ``/``MAP_PRIVATE`` and parse it in
    place. Split specs (``module/...``) fetch and map their base too. The fd socket is found
    with :func:`fd_socket_for` (``fd_socket``, ``$BTFD_FD_SOCKET``, the default, or asked).
    A restarting daemon is retried for up to ``retry_budget`` seconds (:func:`request_fd`)."""
    from .source import map_fd

    path = fd_socket_for(socket_path, fd_socket, timeout=timeout)
    closers: list[Callable[[], None]] = []
    try:
        base: SharedSpec | None = None
        answer, fd = request_fd(path, spec, timeout=timeout, retry_budget=retry_budget)
        closers.append(lambda: os.close(fd))
        if answer.get("base"):
            base = open_shared(answer["base"], fd_socket=path, timeout=timeout,
                               retry_budget=retry_budget)
            closers.append(base.close)
        m = map_fd(fd, answer["size"])
        closers.append(m.close)
        s = Spec(m, base=base.spec if base else None, name=answer["spec"])
    except BaseException:
        for c in reversed(closers):
            c()
        raise
    return SharedSpec(s, answer, fd, base, closers)
