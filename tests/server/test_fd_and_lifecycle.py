"""The fd-passing socket, access control, modules and the daemon's lifecycle."""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from btfd.btf import Kind, Spec
from btfd.v1 import btfd_pb2 as pb
from tests.conftest import blob
from tests.server.conftest import BTFD, BtfdProcess

ALL_SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


def ask_fd(path: str, spec: str, conn: socket.socket | None = None) -> tuple[dict, int, socket.socket]:  # type: ignore[type-arg]
    s = conn or socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if conn is None:
        s.connect(path)
    s.sendall(spec.encode() + b"\n")
    msg, fds, _flags, _addr = socket.recv_fds(s, 4096, 4)
    assert msg.endswith(b"\n") and msg.count(b"\n") == 1
    assert len(fds) <= 1
    return json.loads(msg), (fds[0] if fds else -1), s


def assert_read_only(fd: int, size: int) -> None:
    with pytest.raises(OSError):
        mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    with pytest.raises(OSError):
        os.write(fd, b"x")
    with pytest.raises(OSError):
        os.ftruncate(fd, 0)
    with pytest.raises(OSError):
        os.pwrite(fd, b"x", 0)


def test_fd_of_the_kernel_file(kernel_daemon, kernel_vmlinux: Path) -> None:
    answer, fd, s = ask_fd(kernel_daemon.fd_socket, "vmlinux")
    try:
        size = kernel_vmlinux.stat().st_size
        assert answer == {"spec": "vmlinux", "size": size, "mode": "kernel-mmap", "base": None}
        m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        assert m[:] == kernel_vmlinux.read_bytes()
        spec = Spec(m)
        assert spec.find_ids("task_struct", Kind.STRUCT)
        spec.close()
        m.close()
        assert_read_only(fd, size)
        # Same connection, another request: an error, and no fd with it.
        answer2, fd2, _ = ask_fd(kernel_daemon.fd_socket, "no-such-spec", s)
        assert answer2["code"] == "NOT_FOUND" and "no-such-spec" in answer2["error"] and fd2 == -1
        answer3, fd3, _ = ask_fd(kernel_daemon.fd_socket, "vmlinux", s)
        assert answer3["mode"] == "kernel-mmap" and fd3 >= 0
        os.close(fd3)
    finally:
        os.close(fd)
        s.close()


def test_fd_of_a_sealed_memfd(kernel_daemon) -> None:
    answer, fd, s = ask_fd(kernel_daemon.fd_socket, "fleet-6.1")
    try:
        data = blob("vmlinux-6.1.0-56-amd64")
        assert answer == {"spec": "fleet-6.1", "size": len(data), "mode": "sealed-memfd", "base": None}
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & ALL_SEALS == ALL_SEALS
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        assert m[:] == data
        m.close()
        assert_read_only(fd, len(data))
    finally:
        os.close(fd)
        s.close()


def test_fd_socket_bad_lines(kernel_daemon) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.connect(kernel_daemon.fd_socket)
    s.sendall(b"\xff\xfe\n")
    msg, fds, _, _ = socket.recv_fds(s, 4096, 1)
    assert json.loads(msg)["code"] == "INVALID_ARGUMENT" and not fds
    s.sendall(b"x" * 10000)
    msg, fds, _, _ = socket.recv_fds(s, 4096, 1)
    assert json.loads(msg)["code"] == "INVALID_ARGUMENT" and not fds
    s.close()
    assert kernel_daemon.stub().GetInfo(pb.GetInfoRequest()).specs


def test_socket_mode_and_group(tmp_path: Path, kernel_vmlinux: Path) -> None:
    with BtfdProcess(tmp_path, "--socket-mode", "0640", "--socket-group", "65534",
                     "--metrics-address", "off") as d:
        for p in (d.socket, d.fd_socket):
            st = os.stat(p)
            assert st.st_mode & 0o777 == 0o640 and st.st_gid == 65534


def test_two_daemons_and_a_stale_socket(tmp_path: Path, kernel_vmlinux: Path) -> None:
    with BtfdProcess(tmp_path, "--metrics-address", "off") as first:
        second = subprocess.run([BTFD, "--socket", first.socket, "--metrics-address", "off"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "already serving" in second.stderr
        assert first.stub().GetInfo(pb.GetInfoRequest()).specs
        first.proc.kill()  # type: ignore[union-attr]
        first.proc.wait()  # type: ignore[union-attr]
    assert os.path.exists(first.socket)  # left behind by kill -9
    with BtfdProcess(tmp_path, "--metrics-address", "off") as again:
        assert again.stub().GetInfo(pb.GetInfoRequest()).specs
        assert "removing stale socket" in again.log()


def test_unreadable_btf_fails_clearly(tmp_path: Path) -> None:
    r = subprocess.run([BTFD, "--socket", str(tmp_path / "s.sock"), "--btf", str(tmp_path / "missing.btf"),
                        "--metrics-address", "off"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "cannot read" in r.stderr and "missing.btf" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.btf"
    bad.write_bytes(b"\x9f\xeb" + b"\0" * 30)
    r = subprocess.run([BTFD, "--socket", str(tmp_path / "s.sock"), "--btf", str(bad),
                        "--metrics-address", "off"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot parse BTF" in r.stderr and "Traceback" not in r.stderr


def test_sigterm_finishes_in_flight_requests(tmp_path: Path, kernel_vmlinux: Path) -> None:
    size = kernel_vmlinux.stat().st_size
    with BtfdProcess(tmp_path, "--metrics-address", "off") as d:
        results: list[int] = []
        errors: list[BaseException] = []
        started = threading.Barrier(5)

        def reader() -> None:
            stub = d.stub()
            try:
                it = stub.ReadRaw(pb.ReadRawRequest(offset=0, length=size, chunk_size=4096))
                first = next(it)
                started.wait(10)
                n = len(first.data)
                for c in it:
                    n += len(c.data)
                    time.sleep(0.0005)
                results.append(n)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        started.wait(10)
        d.signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert not errors and results == [size] * 4
        assert d.proc.wait(30) == 0  # type: ignore[union-attr]
        assert not os.path.exists(d.socket) and not os.path.exists(d.fd_socket)
        assert "received SIGTERM" in d.log() and "stopped" in d.log()


def test_sd_notify(tmp_path: Path, kernel_vmlinux: Path) -> None:
    notify_path = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify_path)
    ns.settimeout(30)
    with BtfdProcess(tmp_path / "d", "--metrics-address", "off", env={"NOTIFY_SOCKET": notify_path}) as d:
        ready = ns.recv(4096).decode()
        assert "READY=1" in ready and "STATUS=serving" in ready
        d.signal(signal.SIGTERM)
        stopping = ns.recv(4096).decode()
        assert "STOPPING=1" in stopping
    ns.close()


def test_socket_activation_adopts_the_fd_socket(tmp_path: Path, kernel_vmlinux: Path) -> None:
    fd_path = str(tmp_path / "activated.fd")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(fd_path)
    listener.listen(8)
    os.set_inheritable(listener.fileno(), True)
    os.dup2(listener.fileno(), 3, inheritable=True) if listener.fileno() != 3 else None
    sock = str(tmp_path / "btfd.sock")
    log = open(tmp_path / "log", "wb")
    # LISTEN_PID must be the daemon's pid: set it in the child just before exec.
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec {BTFD} --socket {sock} '
                          f'--fd-socket {fd_path} --metrics-address off'],
        pass_fds=(3,), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while "ready:" not in (tmp_path / "log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "adopted from systemd" in (tmp_path / "log").read_text()
        answer, fd, s = ask_fd(fd_path, "vmlinux")
        assert answer["mode"] == "kernel-mmap" and fd >= 0
        os.close(fd)
        s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()
        listener.close()
    assert os.path.exists(fd_path), "an adopted socket belongs to systemd: the daemon leaves it"


def test_modules_split_over_vmlinux_and_rescan(tmp_path: Path) -> None:
    """A directory standing in for /sys/kernel/btf: regular files, so vmlinux falls back to
    a sealed memfd (as on kernels that refuse mmap), modules load on first use."""
    sysfs = tmp_path / "sysfs"
    sysfs.mkdir()
    (sysfs / "vmlinux").write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    (sysfs / "veth").write_bytes(blob("veth-6.1.0-56-amd64"))
    with BtfdProcess(tmp_path / "d", "--sysfs-btf-dir", str(sysfs), "--metrics-address", "off",
                     "--module-rescan", "0") as d:
        stub = d.stub()
        specs = {s.name: s for s in stub.GetInfo(pb.GetInfoRequest()).specs}
        assert specs["vmlinux"].mode == "sealed-memfd"
        assert not specs["module/veth"].loaded and specs["module/veth"].base == "vmlinux"
        r = stub.LookupType(pb.LookupTypeRequest(spec="module/veth", name="veth_priv", kind=pb.KIND_STRUCT))
        assert r.types[0].id >= 100751 and r.types[0].spec == "module/veth"
        r = stub.LookupType(pb.LookupTypeRequest(name="veth_priv", all_specs=True))
        assert [t.spec for t in r.types] == ["module/veth"]
        answer, fd, s = ask_fd(d.fd_socket, "module/veth")
        assert answer["mode"] == "sealed-memfd" and answer["base"] == "vmlinux"
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & ALL_SEALS == ALL_SEALS
        os.close(fd)
        s.close()
        # A module appears and another goes away; SIGHUP rescans.
        (sysfs / "nf_conntrack").write_bytes(blob("nf_conntrack-6.1.0-56-amd64"))
        (sysfs / "veth").unlink()
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            names = {s.name for s in stub.GetInfo(pb.GetInfoRequest()).specs}
            if "module/nf_conntrack" in names and "module/veth" not in names:
                break
            time.sleep(0.05)
        assert names == {"vmlinux", "module/nf_conntrack"}
        with pytest.raises(grpc.RpcError) as exc:
            stub.LookupType(pb.LookupTypeRequest(spec="module/veth", name="veth_priv"))
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        assert stub.LookupType(pb.LookupTypeRequest(spec="module/nf_conntrack", name="nf_conn",
                                                    kind=pb.KIND_STRUCT)).types
