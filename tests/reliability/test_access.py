"""The fd socket's allow lists against real peers of other uids and groups (setpriv), and
btfd_fd_clients_refused_total counting each refusal."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import BtfdProcess, as_user, fd_request


def as_peer(path: str, uid: int, gid: int, groups: list[int] | None = None) -> dict[str, Any]:
    return fd_request(path, *as_user(uid, gid, groups))


def refused_total(d: BtfdProcess) -> float:
    text = urllib.request.urlopen(d.metrics_url, timeout=10).read().decode()
    m = re.search(r"^btfd_fd_clients_refused_total (\S+)$", text, re.M)
    assert m, text
    return float(m.group(1))


@pytest.fixture(scope="module")
def daemon() -> Iterator[BtfdProcess]:
    shared = Path(tempfile.mkdtemp(prefix="btfd-access-", dir="/tmp"))
    os.chmod(shared, 0o755)
    try:
        with BtfdProcess(shared, "--allow-uid", "4242", "--allow-gid", "4243", "--socket-mode", "0666") as d:
            yield d
    finally:
        shutil.rmtree(shared, ignore_errors=True)


DENIED = {"answer": {"error": "peer uid/gid not allowed", "code": "PERMISSION_DENIED"}, "fds": 0}


@pytest.mark.parametrize("uid,gid,groups,allowed", [
    (4242, 100, None, True),            # a listed uid, nothing else
    (5000, 4243, None, True),           # the listed gid as its primary group
    (5000, 100, [100, 4243], True),     # the listed gid only as a supplementary group
    (5000, 100, [100, 4244], False),    # neither
    (65534, 65534, None, False),
    (4241, 4242, None, False),          # a listed uid's number as a gid does not count
])
def test_allow_lists(daemon: BtfdProcess, uid: int, gid: int, groups: list[int] | None, allowed: bool) -> None:
    before = refused_total(daemon)
    got = as_peer(daemon.fd_socket, uid, gid, groups)
    if allowed:
        assert got["fds"] == 1 and got["answer"]["spec"] == "vmlinux", got
        assert refused_total(daemon) == before
    else:
        assert got == DENIED
        assert refused_total(daemon) == before + 1
        assert "refused pid" in daemon.log() and f"uid {uid} gid {gid}" in daemon.log()


def test_a_non_root_daemon_lets_in_its_own_uid_and_listed_peers_only(tmp_path: Path) -> None:
    """btfd as uid 4250 (allow list: uid 4242): its own uid and the listed one get fds, root
    too (always), others do not."""
    shared = Path(tempfile.mkdtemp(prefix="btfd-access-", dir="/tmp"))
    os.chown(shared, 4250, 4250)
    os.chmod(shared, 0o755)
    try:
        d = BtfdProcess(shared, "--allow-uid", "4242", "--socket-mode", "0666", wait=False)
        d.args = ["setpriv", "--reuid=4250", "--regid=4250", "--clear-groups", "--inh-caps=-all", *d.args]
        with d.start():
            assert as_peer(d.fd_socket, 4250, 4250)["fds"] == 1
            assert as_peer(d.fd_socket, 4242, 4242)["fds"] == 1
            assert as_peer(d.fd_socket, 0, 0)["fds"] == 1
            assert as_peer(d.fd_socket, 4251, 4251) == DENIED
            assert refused_total(d) == 1
    finally:
        shutil.rmtree(shared, ignore_errors=True)
