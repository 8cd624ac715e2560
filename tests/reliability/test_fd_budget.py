"""The fd socket under the kernel's limit on fds in flight (SCM_RIGHTS).

An fd sent and not yet received counts against the sending user's RLIMIT_NOFILE; past it
sendmsg fails with ETOOMANYREFS unless the sender has CAP_SYS_RESOURCE/CAP_SYS_ADMIN. The
shipped units run btfd with no capabilities, so these tests do too: as uid 65534, no
capabilities, and a low open-file limit (64) so that the budget is small.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import termios
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from btfd.shared import FdError, request_fd
from tests.server.conftest import BtfdProcess

NOFILE = 64
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "--inh-caps=-all", "--bounding-set=-all"]


def unprivileged(workdir: Path, *extra: str, nofile: int = NOFILE) -> BtfdProcess:
    """btfd as uid 65534 without capabilities, RLIMIT_NOFILE nofile:nofile."""
    d = BtfdProcess(workdir, "--metrics-address", "off", *extra, wait=False)
    d.args = ["prlimit", f"--nofile={nofile}:{nofile}", *AS_NOBODY, *d.args]
    return d.start()


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are 0700 root, which uid 65534 cannot cross.
    d = Path(tempfile.mkdtemp(prefix="btfd-nobody-"))
    os.chown(d, 65534, 65534)
    try:
        yield d
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=False)


def queued(s: socket.socket) -> int:
    """Bytes waiting to be read on s (FIONREAD)."""
    buf = array.array("i", [0])
    fcntl.ioctl(s.fileno(), termios.FIONREAD, buf, True)
    return buf[0]


def hostile(path: str, lines: int = 400) -> socket.socket:
    """Pipelines requests and never reads."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.setblocking(False)
    try:
        for _ in range(lines):
            s.send(b"vmlinux\n")
    except BlockingIOError:
        pass
    return s


def wait_until(cond, what: str, limit: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def test_clients_that_never_read_cannot_starve_others(workdir: Path) -> None:
    with unprivileged(workdir) as d:
        hogs = [hostile(d.fd_socket) for _ in range(4)]
        try:
            wait_until(lambda: queued(hogs[0]) > 0, "an answer queued to the first hog")
            time.sleep(1.0)  # room for more answers to pile up, were the daemon to send them
            # A well-behaved client still gets its fd (without the fix: an empty answer).
            for _ in range(3):
                answer, fd = request_fd(d.fd_socket, timeout=30)
                try:
                    assert os.fstat(fd).st_size == answer["size"] > 0
                finally:
                    os.close(fd)
            # Each hog has exactly one answer waiting: the next is sent once it reads that one.
            for h in hogs:
                wait_until(lambda h=h: queued(h) > 0, "an answer queued to each hog")  # type: ignore[misc]
                n = queued(h)
                h.setblocking(True)
                msg, fds, _, _ = socket.recv_fds(h, 4096, 2)
                assert msg.endswith(b"\n") and msg.count(b"\n") == 1 and len(fds) == 1, msg
                assert n == len(msg)
                for f in fds:
                    os.close(f)
                # ... and the next answer does come, now that it was read.
                h.settimeout(30)
                msg, fds, _, _ = socket.recv_fds(h, 4096, 2)
                assert b'"size"' in msg and len(fds) == 1
                for f in fds:
                    os.close(f)
        finally:
            for h in hogs:
                h.close()
        assert "Traceback" not in d.log()


FILLER = textwrap.dedent("""
    import errno, os, socket, sys
    a, b = socket.socketpair()
    fd = os.open("/dev/null", os.O_RDONLY)
    n = 0
    while True:
        try:
            socket.send_fds(a, [b"x"], [fd])
        except OSError as exc:
            assert exc.errno == errno.ETOOMANYREFS, exc
            break
        n += 1
    print("full", n, flush=True)
    sys.stdin.read()
""")


def test_fds_in_flight_exhausted_by_another_process_is_a_clear_error(workdir: Path) -> None:
    """Another process of the daemon's user holds the whole budget: the answer says so
    (RESOURCE_EXHAUSTED), and fds flow again once the budget is back."""
    with unprivileged(workdir) as d:
        with subprocess.Popen(["prlimit", f"--nofile={NOFILE}:{NOFILE}", *AS_NOBODY, sys.executable,
                               "-c", FILLER], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as filler:
            try:
                assert filler.stdout is not None
                line = filler.stdout.readline().split()
                assert line[0] == b"full" and int(line[1]) >= NOFILE
                with pytest.raises(FdError) as err:
                    request_fd(d.fd_socket, timeout=30)
                assert err.value.status == "RESOURCE_EXHAUSTED"
                assert "too many fds in flight" in str(err.value)
            finally:
                filler.kill()
        answer, fd = request_fd(d.fd_socket, timeout=30)
        os.close(fd)
        assert answer["spec"] == "vmlinux"
        assert "too many fds in flight" in d.log()
