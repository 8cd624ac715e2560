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
    "private_umask", "set_socket_access", "check_socket_dir", "UnsafeSocketDir",
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


def bind_unix(path: str, mode: int | None = None, group: str | None = None) -> socket.socket:
    claim_socket_path(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with private_umask():
            s.bind(path)
        if mode is not None:
            set_socket_access(path, mode, group)  # before listen: nobody connects too early
        s.listen(1024)  # a burst of refused peers must not fill the queue for everyone
    except BaseException:
        s.close()
        raise
    return s


def set_socket_access(path: str, mode: int, group: str | None) -> None:
    """chmod, and chgrp to ``group`` (a name or a numeric gid), on the socket itself: the
    path is opened O_PATH|O_NOFOLLOW and checked to be a socket owned by this user before
    anything changes, and the changes go through that fd. A path swapped for a symlink (to
    a file the attacker wants opened up) is refused, never followed."""
    gid = -1
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"unknown group {group!r}") from None
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open the socket {path} to set its mode ({exc.strerror}; "
                                 f"replaced by a symlink?)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            raise OSError(errno.EPERM, f"{path} is no longer the socket btfd bound (a "
                                       f"{_kind_of(st.st_mode)} owned by uid {st.st_uid}): not touching it")
        via = f"/proc/self/fd/{fd}"  # the inode just checked, whatever the path is now
        if gid >= 0:
            os.chown(via, -1, gid)
        os.chmod(via, mode)
    finally:
        os.close(fd)


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "symlink"), (stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "file"


class UnsafeSocketDir(RuntimeError):
    """The socket's directory lets others replace what btfd puts there."""


def check_socket_dir(path: str) -> None:
    """Refuse a socket directory that users other than this one (and root) may write to
    without the sticky bit: they could swap the socket for a symlink or their own socket
    between bind and chmod, or after. Sticky world-writable directories (/tmp) keep others
    from renaming or removing our files, so they only earn a warning."""
    d = os.path.dirname(path) or "."
    st = os.stat(d)
    others_write = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    foreign = st.st_uid not in (0, os.geteuid())
    if (others_write or foreign) and not st.st_mode & stat.S_ISVTX:
        who = f"owned by uid {st.st_uid}" if foreign else f"mode {stat.S_IMODE(st.st_mode):o}"
        raise UnsafeSocketDir(f"the socket directory {d} ({who}) can be written by others: they "
                              f"could replace the socket; use a directory only btfd's user (or root) "
                              f"can write, e.g. /run/btfd")
    if others_write:
        log.warning("the socket directory %s is writable by others (sticky): prefer a directory "
                    "only btfd's user can write", d)
