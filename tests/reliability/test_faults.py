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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btfd.btf import Kind, Spec
from btfd.server.metrics import memory_bytes
from btfd.v1 import btfd_pb2 as pb
from tests.server.conftest import BtfdProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from loadgen import corpus_object, run_mixed  # noqa: E402

ALLOWED = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION}


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


# ------------------------------------------------------------------ hostile requests

requests = st.one_of(
    st.builds(lambda spec, name, kind, depth: ("LookupType", pb.LookupTypeRequest(spec=spec, name=name, kind=kind, depth=depth)),
              st.sampled_from(["", "vmlinux", "nope", "module/x", "\x00", "v" * 5000]), st.text(max_size=200),
              st.integers(0, 40), st.integers(0, 100)),
    st.builds(lambda i, depth: ("LookupType", pb.LookupTypeRequest(id=i, depth=depth)),
              st.integers(0, 2**32 - 1), st.integers(0, 3)),
    st.builds(lambda kind, name, match, page, start, limit: ("ListTypes", pb.ListTypesRequest(
        kind=kind, name=name, match=match, page_size=page, start_id=start, limit=limit)),
        st.integers(0, 30), st.text(max_size=50), st.integers(0, 6), st.integers(0, 20000), st.integers(0, 2**32 - 1),
        st.integers(0, 50)),
    st.builds(lambda off, length, chunk: ("ReadRaw", pb.ReadRawRequest(offset=off, length=length, chunk_size=chunk)),
              st.integers(0, 2**64 - 1), st.integers(0, 2**20), st.integers(0, 2**32 - 1)),
    st.builds(lambda data, patched: ("ResolveCore", pb.ResolveCoreRequest(object=data, want_patched=patched)),
              st.one_of(st.binary(max_size=2000), st.just(b"\x7fELF" + b"\0" * 60)), st.booleans()),
    st.builds(lambda btf, sec, off, tid, access, kind: ("ResolveCore", pb.ResolveCoreRequest(
        records=pb.CoreRecords(local_btf=btf, records=[pb.CoreRecord(sec=sec, insn_off=off, type_id=tid, access=access, kind=kind)]))),
        st.binary(max_size=200), st.text(max_size=10), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
        st.text(alphabet="0123456789:", max_size=300), st.integers(0, 2**32 - 1)),
    st.builds(lambda objs: ("MinimizeBtf", pb.MinimizeBtfRequest(objects=objs)), st.lists(st.binary(max_size=500), max_size=3)),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(requests)
def test_hostile_requests_get_status_codes(daemon, req: tuple[str, object]) -> None:
    method, message = req
    stub = daemon.stub()
    call = getattr(stub, method)
    try:
        r = call(message, timeout=30)
        if method in ("ListTypes", "ReadRaw"):
            for _ in r:
                pass
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED, (method, exc.code(), exc.details())
    for ch in daemon._channels:
        ch.close()
    daemon._channels.clear()


def test_daemon_survived_the_hostile_requests(daemon) -> None:
    assert healthy(daemon)
    assert "Traceback" not in daemon.log() and "INTERNAL" not in daemon.log()
