"""The daemon's shared index, end to end: handed out with '+index' beside the blob over real
SCM_RIGHTS, read in place by agents (nothing built, no grpc imported), and every way it can be
missing or wrong ending in a spec that builds its own index."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from btfd.btf import Kind, Spec
from btfd.shared import open_shared, spec_over
from tests.conftest import blob
from tests.server.conftest import BtfdProcess


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path):  # type: ignore[no-untyped-def]
    with BtfdProcess(tmp_path_factory.mktemp("shared-index"), "--metrics-address", "off") as proc:
        yield proc


def _ask(path: str, line: bytes) -> tuple[dict[str, object], list[int]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(line)
        msg, fds, _, _ = socket.recv_fds(s, 4096, 4)
    return json.loads(msg), fds


def test_index_comes_as_a_second_sealed_read_only_fd(daemon, kernel_vmlinux: Path) -> None:
    body, fds = _ask(daemon.fd_socket, b"vmlinux +index\n")
    try:
        assert len(fds) == 2 and body["index"]["size"] > 64  # type: ignore[index]
        blob_fd, idx_fd = fds
        assert os.fstat(idx_fd).st_size == body["index"]["size"]  # type: ignore[index]
        seals = fcntl.fcntl(idx_fd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SHRINK and seals & fcntl.F_SEAL_GROW
        assert fcntl.fcntl(idx_fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        with pytest.raises(OSError):
            os.write(idx_fd, b"x")
        # What the daemon shares is what this process would have built.
        data = kernel_vmlinux.read_bytes()
        idx = os.pread(idx_fd, body["index"]["size"], 0)  # type: ignore[index]
        assert idx == Spec(data).export_index()
    finally:
        for fd in fds:
            os.close(fd)


def test_old_request_still_gets_one_fd_and_no_index_field(daemon) -> None:
    body, fds = _ask(daemon.fd_socket, b"vmlinux\n")
    for fd in fds:
        os.close(fd)
    assert len(fds) == 1 and set(body) == {"spec", "size", "mode", "base"}


def test_unknown_option_is_invalid_argument(daemon) -> None:
    body, fds = _ask(daemon.fd_socket, b"vmlinux +everything\n")
    assert fds == [] and body["code"] == "INVALID_ARGUMENT" and "+index" in str(body["error"])


def test_open_shared_builds_nothing_and_imports_no_grpc(daemon) -> None:
    code = textwrap.dedent(f"""
        import json, sys
        from btfd_client import open_shared
        from btfd.btf import Kind
        with open_shared("vmlinux", fd_socket={daemon.fd_socket!r}) as spec:
            t = spec.find_one("task_struct", Kind.STRUCT)
            print(json.dumps({{"size": t.size, "index": spec.index_bytes(),
                               "grpc": "grpc" in sys.modules}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout)
    assert got["index"]["names"] == 0 and got["index"]["offsets"] == 0 and got["index"]["shared"] > 0
    assert got["grpc"] is False
    assert got["size"] == Spec(Path("/sys/kernel/btf/vmlinux").read_bytes()).find_one("task_struct", Kind.STRUCT).size


def test_a_daemon_without_shared_index_still_serves_open_shared(tmp_path: Path) -> None:
    with BtfdProcess(tmp_path, "--metrics-address", "off", "--no-share-index") as d:
        body, fds = _ask(d.fd_socket, b"vmlinux +index\n")
        for fd in fds:
            os.close(fd)
        assert len(fds) == 1 and "index" not in body
        with open_shared("vmlinux", fd_socket=d.fd_socket) as spec:
            assert spec.index_bytes()["shared"] == 0
            assert spec.find_one("list_head", Kind.STRUCT).size == 16
            assert spec.index_bytes()["names"] > 0  # built here


def test_module_index_is_split_over_the_shared_vmlinux(tmp_path: Path) -> None:
    # This machine's kernel has no module BTF: serve a Debian kernel's vmlinux and btrfs.
    sysfs = tmp_path / "sysfs"
    sysfs.mkdir()
    (sysfs / "vmlinux").write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    (sysfs / "btrfs").write_bytes(blob("btrfs-6.1.0-56-amd64"))
    own = Spec(blob("btrfs-6.1.0-56-amd64"), base=Spec(blob("vmlinux-6.1.0-56-amd64")))
    with BtfdProcess(tmp_path / "d", "--sysfs-btf-dir", str(sysfs), "--metrics-address", "off") as d:
        with open_shared("module/btrfs", fd_socket=d.fd_socket) as spec:
            assert spec.index_bytes()["shared"] > 0 and spec.base is not None
            assert spec.base.index_bytes()["shared"] > 0
            for t in range(own.start_id, own.next_id, 5):
                n = own.type_name(t)
                if n:
                    assert spec.find_ids(n) == own.find_ids(n)
                    assert spec.find_essential(n) == own.find_essential(n)


@pytest.mark.parametrize("damage", ["truncated", "stale", "flipped"])
def test_unusable_index_falls_back_to_building_with_a_warning(
    damage: str, kernel_vmlinux: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = kernel_vmlinux.read_bytes()
    idx = Spec(data).export_index()
    if damage == "truncated":
        idx = idx[: len(idx) // 2]
    elif damage == "stale":
        idx = Spec(blob("vmlinux-6.1.0-56-amd64")).export_index()  # another kernel's
    else:
        b = bytearray(idx)
        b[len(b) // 2] ^= 0xFF
        idx = bytes(b)
    with caplog.at_level("WARNING", logger="btfd.shared"):
        spec = spec_over(data, base=None, name="vmlinux", index=idx)
    assert "unusable" in caplog.text
    assert spec.index_bytes()["shared"] == 0
    assert spec.find_ids("task_struct") == Spec(data).find_ids("task_struct")


def test_index_fd_is_a_fresh_description_per_answer(daemon) -> None:
    _, a = _ask(daemon.fd_socket, b"vmlinux +index\n")
    _, b = _ask(daemon.fd_socket, b"vmlinux +index\n")
    try:
        os.lseek(a[1], 0, os.SEEK_END)
        assert os.lseek(b[1], 0, os.SEEK_CUR) == 0  # not moved by the other client's seek
        assert len(os.read(b[1], 64)) == 64
    finally:
        for fd in a + b:
            os.close(fd)


def test_a_c_reader_that_knows_only_the_protocol_doc(daemon, kernel_vmlinux: Path, tmp_path: Path) -> None:
    """clients/c/btfd_index_lookup.c implements docs/PROTOCOL.md's index section in C (zlib's
    crc32, its own record stepping): its answers must be the library's, flavors and misses
    included, and it must refuse an index it cannot check (a daemon sharing none)."""
    import shutil

    build = tmp_path / "c"
    shutil.copytree(Path(__file__).resolve().parents[2] / "clients" / "c", build)
    subprocess.run(["make", "-s", "-C", str(build), "btfd-index-lookup"], check=True, timeout=120)
    spec = Spec(kernel_vmlinux.read_bytes())
    names = ["task_struct", "sk_buff", "list_head", "int", "file_operations", "bpf_prog",
             "no_such_type_qq", "pid", "task_struct___v2"]
    names += sorted({spec.type_name(t) for t in range(1, spec.next_id, 997)} - {""})
    r = subprocess.run([str(build / "btfd-index-lookup"), daemon.fd_socket, *names],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert set(got) == set(names)
    for n in names:
        assert [int(x) for x in got[n].split()] == spec.find_ids(n), n
    with BtfdProcess(tmp_path / "d", "--metrics-address", "off", "--no-share-index") as d:
        r = subprocess.run([str(build / "btfd-index-lookup"), d.fd_socket, "int"], capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 1 and "no blob and index fds" in r.stderr


def test_no_daemon_names_the_socket_it_tried(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.sock.fd")
    with pytest.raises(FileNotFoundError) as e:
        open_shared("vmlinux", fd_socket=missing, retry_budget=0)
    assert missing in str(e.value) and "is btfd running" in str(e.value)
    assert e.value.filename is None  # btfctl reports errors that carry a filename as file errors
