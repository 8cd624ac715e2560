"""The fd-passing socket: the zero-copy path (protocol in docs/PROTOCOL.md).

A client writes one line, a spec name (``vmlinux\\n``); the daemon answers one line of JSON,
``{"spec": ..., "size": N, "mode": ..., "base": ...}``, with exactly one fd attached as
SCM_RIGHTS, or ``{"error": ..., "code": ...}`` and no fd. The client may ask again on the same
connection. Peers are checked with SO_PEERCRED against --allow-uid/--allow-gid.
"""

from __future__ import annotations

import array
import asyncio
import errno
import json
import logging
import os
import socket
import struct

from .errors import describe, quote
from .metrics import Metrics
from .registry import Registry

__all__ = ["FdServer", "MAX_LINE", "peer_credentials"]

log = logging.getLogger("btfd.fd")
MAX_LINE = 4096
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13
_MAX_GROUPS = 65536


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of a connected Unix socket's peer."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def peer_groups(sock: socket.socket) -> set[int]:
    """The peer's supplementary groups (SO_PEERGROUPS), as of when it connected; empty when
    the kernel cannot tell."""
    size = 64 * 4
    while size <= _MAX_GROUPS * 4:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as exc:
            if exc.errno == errno.ERANGE:
                size *= 4
                continue
            return set()
        return set(array.array("I", raw[: len(raw) // 4 * 4]))
    return set()


class FdServer:
    """Serves spec fds on a listening Unix socket (bound here or adopted from systemd)."""

    def __init__(
        self,
        specs: Registry,
        metrics: Metrics,
        *,
        allow_uids: set[int] | None = None,
        allow_gids: set[int] | None = None,
        idle_timeout: float = 60.0,
        max_clients: int = 1024,
    ) -> None:
        self.specs = specs
        self.metrics = metrics
        self.allow_uids = allow_uids or set()
        self.allow_gids = allow_gids or set()
        self.idle_timeout = idle_timeout
        self.max_clients = max_clients
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._clients: set[asyncio.Task[None]] = set()

    def allowed(self, uid: int, gid: int, groups: set[int] | None = None) -> bool:
        """No allow list: everyone who can open the socket. Otherwise root, our own uid, the
        listed uids, and peers whose primary or a supplementary group is listed."""
        if not self.allow_uids and not self.allow_gids:
            return True
        if uid in (0, os.geteuid()):
            return True
        return uid in self.allow_uids or gid in self.allow_gids or bool(self.allow_gids & (groups or set()))

    async def start(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                log.warning("fd socket accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if len(self._clients) >= self.max_clients:
                log.warning("fd socket: %d clients already, refusing one", len(self._clients))
                conn.close()
                continue
            t = loop.create_task(self._serve(conn))
            self._clients.add(t)
            t.add_done_callback(self._clients.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        try:
            pid, uid, gid = peer_credentials(conn)
            allowed = self.allowed(uid, gid, peer_groups(conn) if self.allow_gids else None)
            buf = b""
            while True:
                while b"\n" not in buf:
                    if len(buf) > MAX_LINE:
                        await self._send(conn, _too_long(), -1)
                        return
                    chunk = await asyncio.wait_for(loop.sock_recv(conn, 4096), self.idle_timeout)
                    if not chunk:
                        return
                    buf += chunk
                if not allowed:
                    # Refused after reading the request, so the peer gets the answer instead of
                    # a broken pipe; then the connection is closed.
                    self.metrics.fd_refused.inc()
                    log.warning("fd socket: refused pid %d uid %d gid %d (not in the allow lists)",
                                pid, uid, gid)
                    await self._send(conn, _error("peer uid/gid not allowed", "PERMISSION_DENIED"), -1)
                    return
                line, buf = buf.split(b"\n", 1)
                if len(line) > MAX_LINE:
                    await self._send(conn, _too_long(), -1)
                    return
                answer, fd = self._answer(line, uid)
                try:
                    await self._send(conn, answer, fd)
                finally:
                    if fd >= 0:
                        os.close(fd)
        except (asyncio.TimeoutError, ConnectionError, BrokenPipeError):
            return
        except OSError as exc:
            log.debug("fd client error: %s", exc)
        finally:
            conn.close()

    def _answer(self, line: bytes, uid: int) -> tuple[bytes, int]:
        """The answer line and the fd to attach (-1: none). The fd is a dup made here,
        synchronously: a rescan dropping the spec while the answer waits to be sent closes
        the registry's fd, never this one; the caller closes it once sent."""
        try:
            name = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.metrics.fd_requests.labels("INVALID_ARGUMENT").inc()
            return _error("spec name is not UTF-8", "INVALID_ARGUMENT"), -1
        try:
            e = self.specs.ensure(name or "vmlinux")
        except Exception as exc:  # noqa: BLE001 - mapped like gRPC errors, in errors.py
            code, message = describe(exc, f"fd request {quote(name)}")
            self.metrics.fd_requests.labels(code.name).inc()
            return _error(message, code.name), -1
        if e.ro_fd < 0 or e.source is None:
            self.metrics.fd_requests.labels("FAILED_PRECONDITION").inc()
            return _error(f"spec {e.name} is held in memory and has no fd to share",
                          "FAILED_PRECONDITION"), -1
        self.metrics.fd_requests.labels("OK").inc()
        self.metrics.fds_passed.labels(e.name, e.source.mode).inc()
        log.debug("fd socket: passing %s (%s) to uid %d", e.name, e.source.mode, uid)
        body = {"spec": e.name, "size": e.source.size, "mode": e.source.mode, "base": e.base or None}
        return (json.dumps(body) + "\n").encode(), os.dup(e.ro_fd)

    async def _send(self, conn: socket.socket, data: bytes, fd: int) -> None:
        loop = asyncio.get_running_loop()
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())] if fd >= 0 else []
        view = memoryview(data)
        while view:
            try:
                n = conn.sendmsg([view], anc)
            except BlockingIOError:
                fut: asyncio.Future[None] = loop.create_future()
                loop.add_writer(conn.fileno(), _set_once, fut)
                try:
                    await asyncio.wait_for(fut, self.idle_timeout)
                finally:
                    loop.remove_writer(conn.fileno())
                continue
            anc = []  # the fd went with the first bytes
            view = view[n:]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for t in list(self._clients):
            t.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()


def _set_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _too_long() -> bytes:
    return _error(f"request line longer than {MAX_LINE} bytes", "INVALID_ARGUMENT")


def _error(message: str, code: str) -> bytes:
    return (json.dumps({"error": message, "code": code}) + "\n").encode()
