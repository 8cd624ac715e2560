"""Load, faults and hostile input against the real daemon (bounded sizes; full runs in bench/)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest

from btfd.btf import Kind, Spec
from btfd.server.metrics import memory_bytes
from btfd.v1 import btfd_pb2 as pb
from tests.server.conftest import BtfdProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from loadgen import corpus_object, run_mixed  # noqa: E402


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path):  # type: ignore[no-untyped-def]
    with BtfdProcess(tmp_path_factory.mktemp("rel"), "--metrics-address", "off") as proc:
        yield proc


@pytest.fixture(scope="module")
def names(kernel_vmlinux: Path) -> list[str]:
    spec = Spec(kernel_vmlinux.read_bytes())
    return sorted({t.name for t in spec.types(Kind.STRUCT) if t.name})[::10]


def healthy(d: BtfdProcess) -> bool:
    return bool(d.stub().GetInfo(pb.GetInfoRequest(), timeout=10).specs)


def test_mixed_load_has_no_errors(daemon, names: list[str]) -> None:
    r = asyncio.run(run_mixed(daemon.socket, 64, 40, names, corpus_object()))
    assert r.errors == [] and r.ok == 64 * 40
    assert all(r.latencies[k] for k in r.latencies)


def test_client_killed_mid_stream(daemon) -> None:
    code = textwrap.dedent(f"""
        import grpc, sys
        from btfd.v1 import btfd_pb2 as pb, btfd_pb2_grpc as g
        stub = g.BtfStub(grpc.insecure_channel("unix:{daemon.socket}"))
        it = stub.ReadRaw(pb.ReadRawRequest(offset=0, length=5_000_000, chunk_size=1024))
        next(it); print("streaming", flush=True)
        for _ in it: pass
    """)
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert p.stdout is not None and p.stdout.readline().strip() == b"streaming"
        p.kill()
        p.wait()
        p.stdout.close()
    assert healthy(daemon)


def test_fd_client_that_never_reads_and_idle_connections(daemon) -> None:
    fds_before = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
    # A connection each (channels with the same target share one otherwise), connected for
    # real (a channel alone never connects).
    channels = [grpc.insecure_channel(f"unix:{daemon.socket}", options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(50)]
    for ch in channels:
        grpc.channel_ready_future(ch).result(timeout=30)
    assert len(os.listdir(f"/proc/{daemon.proc.pid}/fd")) >= fds_before + 50
    hog = socket.socket(socket.AF_UNIX)
    hog.connect(daemon.fd_socket)
    hog.setblocking(False)
    sent = 0
    try:
        while sent < 20000:  # asks and asks, never reads: its answers pile up
            hog.send(b"vmlinux\n")
            sent += 1
    except BlockingIOError:
        pass
    idle = []
    for _ in range(300):
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.fd_socket)
        idle.append(s)
    try:
        assert healthy(daemon)
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.fd_socket)
        s.sendall(b"vmlinux\n")
        msg, fds, _, _ = socket.recv_fds(s, 4096, 1)
        assert b"kernel-mmap" in msg and len(fds) == 1
        os.close(fds[0])
        s.close()
    finally:
        hog.close()
        for s in idle:
            s.close()
        for ch in channels:
            ch.close()
    assert healthy(daemon)


def test_socket_directory_removed_while_running(tmp_path: Path, kernel_vmlinux: Path) -> None:
    """Decision: btfd keeps serving the connections it has; new clients cannot find it (the
    path is gone) and a restart recreates it. SIGTERM still exits 0."""
    d = BtfdProcess(tmp_path / "gone", "--metrics-address", "off")
    try:
        ch = grpc.insecure_channel(f"unix:{d.socket}")
        from btfd.v1 import btfd_pb2_grpc

        stub = btfd_pb2_grpc.BtfStub(ch)
        assert stub.GetInfo(pb.GetInfoRequest(), timeout=10).specs
        log = d.log_path.read_bytes()
        shutil.rmtree(tmp_path / "gone")
        assert stub.LookupType(pb.LookupTypeRequest(name="task_struct"), timeout=10).types
        ch.close()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0  # type: ignore[union-attr]
        assert log
    finally:
        d.log_path.parent.mkdir(parents=True, exist_ok=True)
        d.stop()


def test_memory_stays_bounded_under_load(daemon, names: list[str]) -> None:
    pid = daemon.proc.pid
    asyncio.run(run_mixed(daemon.socket, 16, 60, names, corpus_object(), seed=3))  # warm-up
    before = memory_bytes(pid)["uss"]
    asyncio.run(run_mixed(daemon.socket, 16, 120, names, corpus_object(), seed=4))
    after = memory_bytes(pid)["uss"]
    assert after - before < 8 << 20, (before, after)  # the soak in bench/ holds it to 1 MiB
