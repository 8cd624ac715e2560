"""The zero-copy path of the client: a spec's fd from btfd's fd socket (SCM_RIGHTS), mapped
``PROT_READ``/``MAP_PRIVATE`` and parsed in place by the BTF library.

Kept apart from :mod:`btfd.client` so that gRPC-only users (``btfctl lookup``) do not import
the BTF library; :mod:`btfd.client` re-exports everything here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .btf import BTFError, Spec
from .fdproto import Answer, AnswerReader, FdError, encode_request
from .paths import default_socket
from .retry import Backoff

__all__ = ["FdError", "SharedSpec", "fd_socket_for", "open_shared", "request", "request_fd", "spec_over"]



def _log() -> Any:
    """The module's logger, imported when there is something to say (the fd path starts
    without the logging package)."""
    import logging

    return logging.getLogger("btfd.shared")


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
    a, fds = request(fd_socket, spec, timeout=timeout, retry_budget=retry_budget)
    body = {"spec": a.spec, "size": a.size, "mode": a.mode, "base": a.base}
    return body, fds[0]


def request(fd_socket: str, spec: str = "vmlinux", *, index: bool = False, c: bool = False,
            timeout: float = 10.0, retry_budget: float = 15.0) -> tuple[Answer, list[int]]:
    """:func:`request_fd` returning the :class:`~btfd.fdproto.Answer` and its fds: the blob's,
    then (``index=True`` and a daemon that shares one) the index's, then (``c=True``) the
    spec's rendered C header's (the daemon renders it once and keeps it)."""
    backoff = Backoff(retry_budget)
    while True:
        try:
            return _request_once(fd_socket, spec, index, c, timeout)
        except (*_UNREACHABLE, FdError) as exc:
            if isinstance(exc, FdError) and exc.status != "UNAVAILABLE":
                raise
            d = backoff.pause()
            if d is None:
                if isinstance(exc, FileNotFoundError) and exc.filename is None:
                    # socket.connect names no path: say which, and what starts a daemon.
                    raise FileNotFoundError(
                        exc.errno, f"btfd's fd socket {fd_socket} does not exist: is btfd running? "
                        f"(`make run` in a checkout, or the btfd service)") from None
                raise
            time.sleep(d)


def _request_once(fd_socket: str, spec: str, index: bool, c: bool,
                  timeout: float) -> tuple[Answer, list[int]]:
    reader = AnswerReader(os.close)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(fd_socket)
        s.sendall(encode_request(spec, index=index, c=c))
        while True:
            msg, got, _flags, _addr = socket.recv_fds(s, 4096, 3)
            reader.feed(msg, got)
            if not msg:
                reader.close()
                raise FdError(f"{fd_socket} closed the connection without answering (daemon "
                              f"stopping?)", "UNAVAILABLE")
            answer = reader.next()
            if answer is not None:
                return answer


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


def spec_over(blob: Any, *, base: Spec | None, name: str, index: Any = None) -> Spec:
    """A spec over a shared blob, reading the daemon's ``index`` when there is one and it
    belongs to the blob; when it does not (stale, truncated, damaged, hostile: a BTFError),
    the spec builds its own and a warning says why. Errors in the blob itself are raised."""
    if index is not None:
        try:
            return Spec(blob, base=base, name=name, index=index)
        except BTFError as exc:
            _log().warning("the index shared for %s is unusable (%s): building it here", name, exc)
    return Spec(blob, base=base, name=name)


def open_shared(spec: str = "vmlinux", *, fd_socket: str | None = None,
                socket_path: str | None = None, timeout: float = 10.0,
                retry_budget: float = 15.0, index: bool = True) -> SharedSpec:
    """Receive ``spec``'s fd from btfd, map it ``PROT_READ``/``MAP_PRIVATE`` and parse it in
    place. Split specs (``module/...``) fetch and map their base too. The fd socket is found
    with :func:`fd_socket_for` (``fd_socket``, ``$BTFD_FD_SOCKET``, the default, or asked).
    A restarting daemon is retried for up to ``retry_budget`` seconds (:func:`request_fd`).

    With ``index`` (the default) the daemon's index of the spec is mapped too, so nothing is
    built here; a daemon that has none (older versions answer ``+index`` requests
    NOT_FOUND), or an index that does not check out, makes the spec build its own (logged)."""
    from .source import map_fd

    path = fd_socket_for(socket_path, fd_socket, timeout=timeout)
    closers: list[Callable[[], None]] = []
    try:
        base: SharedSpec | None = None
        try:
            answer, fds = request(path, spec, index=index, timeout=timeout, retry_budget=retry_budget)
        except FdError as exc:
            if not index or exc.status != "NOT_FOUND" or "+index" not in str(exc):
                raise
            _log().info("%s shares no index (an older daemon?): building it here", path)
            answer, fds = request(path, spec, timeout=timeout, retry_budget=retry_budget)
        for fd in fds:
            closers.append(lambda fd=fd: os.close(fd))  # type: ignore[misc]
        if answer.base:
            base = open_shared(answer.base, fd_socket=path, timeout=timeout,
                               retry_budget=retry_budget, index=index)
            closers.append(base.close)
        m = map_fd(fds[0], answer.size)
        closers.append(m.close)
        shared_index = None
        if len(fds) > 1:
            shared_index = map_fd(fds[1], answer.index_size)
            closers.append(shared_index.close)
        s = spec_over(m, base=base.spec if base else None, name=answer.spec, index=shared_index)
    except BaseException:
        for c in reversed(closers):
            c()
        raise
    body = {"spec": answer.spec, "size": answer.size, "mode": answer.mode, "base": answer.base}
    return SharedSpec(s, body, fds[0], base, closers)
