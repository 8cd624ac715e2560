"""The fd-passing socket: the zero-copy path (protocol in docs/PROTOCOL.md).

A client writes one line, a spec name (``vmlinux\\n``); the daemon answers one line of JSON,
``{"spec": ..., "size": N, "mode": ..., "base": ...}``, with exactly one fd attached as
SCM_RIGHTS, or ``{"error": ..., "code": ...}`` and no fd. The client may ask again on the same
connection. Peers are checked with SO_PEERCRED against --allow-uid/--allow-gid.

fds in flight: an fd sent over SCM_RIGHTS and not yet received counts against the sending
user's RLIMIT_NOFILE (the kernel's too_many_unix_fds: sendmsg fails with ETOOMANYREFS past it,
unless the sender has CAP_SYS_RESOURCE or CAP_SYS_ADMIN, which the shipped units drop). So a
connection has at most one unread answer: the next one waits until the peer has read it
(SIOCOUTQ, the bytes still queued to the peer, is 0), and a connection whose answer is unread
keeps its slot until the peer reads or closes (closing our end would leave the fd in flight in
the peer's queue). With the connection cap kept under a quarter of the fd limit (an answer
carries up to three fds), clients that ask and never read cannot use up the budget; if other
processes of our user do, the answer says so (RESOURCE_EXHAUSTED) instead of arriving without
its fds.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import functools
import logging
import os
import resource
import socket
import struct
import termios
from collections.abc import Awaitable, Callable

from ..fdproto import MAX_LINE, Answer, FdError, encode_answer, encode_error, parse_request
from ..source import reopen_read_only
from .errors import describe, quote
from .limits import Limits, RateLimited
from .metrics import Metrics
from .registry import Registry

__all__ = ["FdServer", "MAX_LINE", "client_cap", "peer_credentials", "unread_bytes"]

log = logging.getLogger("btfd.fd")
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13
_MAX_GROUPS = 65536
_RESERVED_FDS = 32  # the daemon's own fds: specs, gRPC listener, metrics, logs, ...
_REFUSE_PENDING = 64  # refused connections waiting for their request line; more: closed at once
_REFUSE_WAIT = 1.0  # seconds a refused peer has to send its line before it is closed
_DRAIN_POLL_MAX = 0.25  # seconds between SIOCOUTQ polls of a peer that does not read


#: fds one answer may carry: the blob's, the index's (+index), the C header's (+c).
MAX_ANSWER_FDS = 3


def client_cap(requested: int, nofile: int | None = None) -> int:
    """How many fd-socket connections to serve at once: ``requested``, but at most what the
    open-file limit leaves divided by 1 + :data:`MAX_ANSWER_FDS` (each connection is an open
    fd here and may have one answer's fds in flight, counted against the same limit)."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile == resource.RLIM_INFINITY:
        return max(1, requested)
    return max(1, min(requested, (nofile - _RESERVED_FDS) // (1 + MAX_ANSWER_FDS)))


def unread_bytes(sock: socket.socket) -> int:
    """Bytes sent on a Unix stream socket that the peer has not read yet (SIOCOUTQ: for
    AF_UNIX, the memory of the skbs still queued to the peer, 0 once it read them all)."""
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf, True)
    return buf[0]


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
        idle_timeout: float | None = None,
        max_clients: int = 1024,
        limits: Limits | None = None,
        c_header: Callable[[str], Awaitable[tuple[int, int]]] | None = None,
    ) -> None:
        self.specs = specs
        #: spec name -> (fresh read-only fd, size) of its rendered C header (``+c``).
        self.c_header = c_header
        self.metrics = metrics
        self.allow_uids = allow_uids or set()
        self.allow_gids = allow_gids or set()
        self.limits = limits or Limits()
        # A whole request line must arrive within this (not per chunk: a byte every few
        # seconds does not keep a slot).
        self.idle_timeout = idle_timeout if idle_timeout is not None else self.limits.fd_request_seconds
        self._per_uid: dict[int, int] = {}
        self._closing: set[asyncio.Task[None]] = set()  # refused connections being closed
        self._log = RateLimited(log)
        self.max_clients = client_cap(max_clients)
        if self.max_clients < max_clients:
            log.info("fd socket: at most %d clients at once (open-file limit %d)",
                     self.max_clients, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
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
                self._log(logging.WARNING, "accept", "fd socket accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            # The peer is checked here, before anything is read: a refused peer is closed at
            # once and holds no slot.
            try:
                conn.setblocking(False)
                pid, uid, gid = peer_credentials(conn)
                allowed = self.allowed(uid, gid, peer_groups(conn) if self.allow_gids else None)
            except OSError:
                conn.close()
                continue
            if not allowed:
                self.metrics.fd_refused.inc()
                self._log(logging.WARNING, f"refused-{uid}", "fd socket: refused pid %d uid %d gid %d "
                          "(not in the allow lists)", pid, uid, gid)
                self._refuse(conn, "peer uid/gid not allowed", "PERMISSION_DENIED")
                continue
            if len(self._clients) >= self.max_clients:
                self._log(logging.WARNING, "full", "fd socket: %d clients already, refusing one "
                          "(uid %d)", len(self._clients), uid)
                self.metrics.limited.labels("fd_clients").inc()
                self._refuse(conn, f"too many fd-socket clients ({self.max_clients}); try again later",
                             "RESOURCE_EXHAUSTED")
                continue
            mine = self._per_uid.get(uid, 0)
            if mine >= self.limits.fd_per_uid and uid != 0:
                self._log(logging.WARNING, f"uid-{uid}", "fd socket: uid %d holds %d connections "
                          "(--fd-clients-per-uid), refusing one", uid, mine)
                self.metrics.limited.labels("fd_clients_per_uid").inc()
                self._refuse(conn, f"uid {uid} has {mine} fd-socket connections open, the limit "
                             f"(btfd --fd-clients-per-uid raises it)", "RESOURCE_EXHAUSTED")
                continue
            self._per_uid[uid] = mine + 1
            t = loop.create_task(self._serve(conn, pid, uid))
            self._clients.add(t)
            self.metrics.fd_connections.set(len(self._clients))
            t.add_done_callback(functools.partial(self._gone, uid))

    def _gone(self, uid: int, t: asyncio.Task[None]) -> None:
        self._clients.discard(t)
        self.metrics.fd_connections.set(len(self._clients))
        n = self._per_uid.get(uid, 1) - 1
        if n > 0:
            self._per_uid[uid] = n
        else:
            self._per_uid.pop(uid, None)

    def _refuse(self, conn: socket.socket, message: str, code: str) -> None:
        """Answer (if the socket takes it without waiting) and close: at once when many
        refusals are pending, else once the peer has sent its request line (or after
        _REFUSE_WAIT), so that its write does not fail with EPIPE before it reads why."""
        self.metrics.fd_requests.labels(code).inc()
        try:
            conn.send(_error(message, code))
        except OSError:
            conn.close()
            return
        if len(self._closing) >= _REFUSE_PENDING:
            conn.close()
            return
        t = asyncio.get_running_loop().create_task(self._close_soon(conn))
        self._closing.add(t)
        t.add_done_callback(self._closing.discard)

    async def _close_soon(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(_REFUSE_WAIT):
                got = 0
                while got <= MAX_LINE:
                    chunk = await loop.sock_recv(conn, 4096)
                    if not chunk or b"\n" in chunk:
                        break
                    got += len(chunk)
        except (TimeoutError, OSError):
            pass
        finally:
            conn.close()

    async def _serve(self, conn: socket.socket, pid: int, uid: int) -> None:
        loop = asyncio.get_running_loop()
        linger = True  # hold the slot until the peer has read our last answer (or closed)
        try:
            buf = b""
            while True:
                deadline = loop.time() + self.idle_timeout  # for the whole line
                while b"\n" not in buf:
                    if len(buf) > MAX_LINE:
                        await self._send(conn, _too_long(), [])
                        return
                    left = deadline - loop.time()
                    if left <= 0:
                        self.metrics.limited.labels("fd_request_timeout").inc()
                        return
                    chunk = await asyncio.wait_for(loop.sock_recv(conn, 4096), left)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\n", 1)
                if len(line) > MAX_LINE:
                    await self._send(conn, _too_long(), [])
                    return
                # At most one unread answer per connection (see the module docstring); a peer
                # that does not read it within --fd-answer-timeout gets no other answer.
                if not await self._drained(conn, self.limits.fd_answer_seconds):
                    self.metrics.limited.labels("fd_answer_timeout").inc()
                    return
                answer, fds, passed = await self._answer(line, uid)
                try:
                    await self._send(conn, answer, fds)
                except OSError as exc:
                    if exc.errno != errno.ETOOMANYREFS:
                        raise
                    self.metrics.fd_requests.labels("RESOURCE_EXHAUSTED").inc()
                    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                    log.warning("fd socket: cannot pass an fd to pid %d: too many fds in flight for "
                                "uid %d (RLIMIT_NOFILE %d; fds sent to peers that did not read them)",
                                pid, os.geteuid(), nofile)
                    await self._send(conn, _error(
                        f"the daemon has too many fds in flight (sent to clients that have not read "
                        f"them; its RLIMIT_NOFILE is {nofile}): try again later",
                        "RESOURCE_EXHAUSTED"), [])
                    continue
                finally:
                    for fd in fds:
                        os.close(fd)
                if passed is not None:
                    self.metrics.fd_requests.labels("OK").inc()
                    self.metrics.fds_passed.labels(*passed).inc()
        except asyncio.CancelledError:
            linger = False
            raise
        except (asyncio.TimeoutError, ConnectionError, BrokenPipeError):
            self.metrics.limited.labels("fd_request_timeout").inc()
            return
        except OSError as exc:
            log.debug("fd client error: %s", exc)
        finally:
            try:
                if linger:
                    await self._drained(conn)
            finally:
                conn.close()

    async def _drained(self, conn: socket.socket, timeout: float | None = None) -> bool:
        """Wait until the peer has read everything sent on ``conn`` or closed it (either way
        the kernel frees the queued skbs and the fds they carry); False if ``timeout`` passed
        first."""
        delay = 0.0005
        end = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            try:
                if unread_bytes(conn) <= 0:
                    return True
            except OSError:
                return True
            if end is not None and asyncio.get_running_loop().time() > end:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, _DRAIN_POLL_MAX)

    async def _answer(self, line: bytes, uid: int) -> tuple[bytes, list[int], tuple[str, str] | None]:
        """The answer line, the fds to attach (the blob's, then the index's and the rendered
        C header's when asked for) and, for a success, the (spec, mode) labels to count once
        it is sent. Each fd is a fresh read-only open file description made for this answer
        (btfd.source.reopen_read_only): no client can move another's offset or change its
        flags, and a rescan dropping the spec while the answer waits closes the registry's
        fds, never these; the caller closes them once sent."""
        try:
            req = parse_request(line)
        except FdError as exc:
            self.metrics.fd_requests.labels(exc.status).inc()
            return encode_error(str(exc), exc.status), [], None
        fds: list[int] = []
        try:
            e = self.specs.ensure(req.spec)
            if e.ro_fd < 0 or e.source is None:
                self.metrics.fd_requests.labels("FAILED_PRECONDITION").inc()
                return encode_error(f"spec {e.name} is held in memory and has no fd to share",
                                    "FAILED_PRECONDITION"), [], None
            index = e.index if req.index else None
            fds.append(reopen_read_only(e.ro_fd))
            if index is not None:
                fds.append(reopen_read_only(index.fd))
            c_size = 0
            if req.c:
                if self.c_header is None:
                    raise FdError("this daemon renders no C headers", "FAILED_PRECONDITION")
                hfd, c_size = await self.c_header(e.name)
                fds.append(hfd)
        except Exception as exc:  # noqa: BLE001 - mapped like gRPC errors, in errors.py
            for fd in fds:
                os.close(fd)
            if isinstance(exc, FdError):
                code_name, message = exc.status, str(exc)
            else:
                code, message = describe(exc, f"fd request {quote(req.spec)}")
                code_name = code.name
            self.metrics.fd_requests.labels(code_name).inc()
            return encode_error(message, code_name), [], None
        log.debug("fd socket: passing %s (%s) to uid %d", e.name, e.source.mode, uid)
        body = Answer(e.name, e.source.size, e.source.mode, e.base or None,
                      index.size if index is not None else 0, c_size)
        return encode_answer(body), fds, (e.name, e.source.mode)

    async def _send(self, conn: socket.socket, data: bytes, fds: list[int]) -> None:
        loop = asyncio.get_running_loop()
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
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
        for t in [*self._clients, *self._closing]:
            t.cancel()
        if self._clients or self._closing:
            await asyncio.gather(*self._clients, *self._closing, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()


def _set_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _too_long() -> bytes:
    return encode_error(f"request line longer than {MAX_LINE} bytes", "INVALID_ARGUMENT")


_error = encode_error
