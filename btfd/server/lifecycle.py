"""systemd integration and socket housekeeping: sd_notify, LISTEN_FDS, stale sockets."""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import stat

__all__ = [
    "notify", "listen_fds", "claim_socket_path", "bind_unix", "set_socket_access",
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


def bind_unix(path: str) -> socket.socket:
    claim_socket_path(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.bind(path)
    s.listen(128)
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
