"""systemd integration and socket housekeeping: sd_notify, LISTEN_FDS, stale sockets."""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import stat

__all__ = [
    "notify", "listen_fds", "check_listening_unix", "claim_socket_path", "bind_unix",
    "private_umask", "set_socket_access",
    "SocketInUse", "SD_LISTEN_FDS_START",
]

log = logging.getLogger("btfd.lifecycle")
SD_LISTEN_FDS_START = 3


def notify(message: str) -> bool:
    """Send an sd_notify message (``READY=1``, ``STATUS=...``) when NOTIFY_SOCKET is set."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), addr)
        return True
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False


def listen_fds() -> list[socket.socket]:
    """Sockets passed by systemd socket activation (LISTEN_FDS for this pid), as sockets."""
    try:
        if int(os.environ.get("LISTEN_PID", "0")) != os.getpid():
            return []
        n = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(k, None)
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + n):
        os.set_inheritable(fd, False)
        out.append(socket.socket(fileno=fd))
    return out


def check_listening_unix(sock: socket.socket) -> str:
    """The path of an adopted socket, after checking it is a listening AF_UNIX SOCK_STREAM
    socket bound to a path (ValueError saying what it is otherwise)."""
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise ValueError(f"the socket passed by systemd (fd {sock.fileno()}) is {sock.family.name} "
                         f"{sock.type.name}, not a Unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise ValueError(f"the socket passed by systemd (fd {sock.fileno()}) is not listening")
    name = sock.getsockname()
    if not isinstance(name, str) or not name or name.startswith("\0"):
        raise ValueError(f"the socket passed by systemd (fd {sock.fileno()}) is not bound to a "
                         f"path ({name!r})")
    return os.path.abspath(name)


class SocketInUse(RuntimeError):
    """Another live process answers on the socket path."""


def claim_socket_path(path: str) -> None:
    """Make ``path`` free for binding: a stale socket (nobody listening) is removed; a live
    one raises :class:`SocketInUse`; anything that is not a socket is left alone (error)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUse(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            log.info("removing stale socket %s (no process listening)", path)
            os.unlink(path)
            return
        raise SocketInUse(f"{path}: cannot tell whether a daemon is listening ({exc})") from exc
    finally:
        probe.close()
    raise SocketInUse(f"another btfd is already serving on {path}")


class private_umask:
    """Bind sockets under umask 0177 (owner read/write only) so that the socket file never
    exists with looser permissions than --socket-mode, which is applied afterwards."""

    def __enter__(self) -> None:
        self._old = os.umask(0o177)

    def __exit__(self, *exc: object) -> None:
        os.umask(self._old)


def bind_unix(path: str) -> socket.socket:
    claim_socket_path(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with private_umask():
            s.bind(path)
        s.listen(128)
    except BaseException:
        s.close()
        raise
    return s


def set_socket_access(path: str, mode: int, group: str | None) -> None:
    """chmod, and chgrp to ``group`` (a name or a numeric gid)."""
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"unknown group {group!r}") from None
        os.chown(path, -1, gid)
    os.chmod(path, mode)
