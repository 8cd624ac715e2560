"""Sockets made safely: an unprivileged attacker who can write the socket's directory swaps
the socket for a symlink to a root-only file while btfd sets the socket's mode and group;
the file must never change. And btfd refuses to put its sockets in such a directory."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from btfd.server import lifecycle
from tests.server.conftest import BtfdProcess, as_user

ATTACKER = 5000

# Replace PATH with a symlink to VICTIM, atomically and over and over, until stdin closes.
SWAPPER = """
import os, sys, threading
path, victim = sys.argv[1], sys.argv[2]
tmp = path + ".evil"
stop = []
threading.Thread(target=lambda: (sys.stdin.read(), stop.append(1)), daemon=True).start()
n = 0
print("go", flush=True)
while not stop:
    try:
        os.symlink(victim, tmp)
    except FileExistsError:
        pass
    try:
        os.rename(tmp, path)
        n += 1
    except OSError:
        pass
print(n, flush=True)
"""


@pytest.fixture
def open_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="btfd-sock-", dir="/tmp"))
    os.chmod(d, 0o777)  # anyone may create, rename and remove here (no sticky bit)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_symlink_swapped_in_is_never_followed(open_dir: Path) -> None:
    victim = open_dir / "victim"
    victim.write_text("root only\n")
    os.chmod(victim, 0o600)
    path = str(open_dir / "btfd.sock")
    p = subprocess.Popen(as_user(ATTACKER, ATTACKER, None, sys.executable, "-c", SWAPPER, path, str(victim)),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdin is not None
    assert p.stdout.readline().strip() == "go"
    done = refused = 0
    try:
        for _ in range(300):
            try:
                os.unlink(path)
            except (FileNotFoundError, IsADirectoryError):
                pass
            s = socket.socket(socket.AF_UNIX)
            try:
                with lifecycle.private_umask():
                    s.bind(path)
                lifecycle.set_socket_access(path, 0o666, "65534")
                done += 1
            except OSError:
                refused += 1  # bind lost the race, or the path was no longer our socket
            finally:
                s.close()
    finally:
        p.stdin.close()
        swaps = int(p.stdout.readline())
        p.wait()
        p.stdout.close()
    st = os.stat(victim)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_gid == 0 and st.st_uid == 0
    assert victim.read_text() == "root only\n"
    assert swaps > 0 and refused > 0  # the attacker did race us, and lost every time
    assert done + refused == 300


def test_set_socket_access_refuses_what_is_not_our_socket(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    os.chmod(f, 0o600)
    link = tmp_path / "link"
    link.symlink_to(f)
    with pytest.raises(OSError, match="symlink"):
        lifecycle.set_socket_access(str(link), 0o666, None)
    with pytest.raises(OSError, match="no longer the socket"):
        lifecycle.set_socket_access(str(f), 0o666, None)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600


def test_btfd_refuses_a_directory_others_can_write(open_dir: Path, kernel_vmlinux: Path) -> None:
    d = BtfdProcess(open_dir, "--metrics-address", "off", wait=False)
    r = subprocess.run(d.args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"the socket directory {open_dir}" in r.stderr and "can be written by others" in r.stderr
    assert not list(open_dir.iterdir())  # nothing bound there


def test_btfd_refuses_a_directory_someone_else_owns(tmp_path: Path, kernel_vmlinux: Path) -> None:
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, ATTACKER, ATTACKER)
    b = BtfdProcess(d, "--metrics-address", "off", wait=False)
    r = subprocess.run(b.args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"owned by uid {ATTACKER}" in r.stderr, r.stderr
