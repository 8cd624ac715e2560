"""Many idle gRPC connections against a daemon started with a low soft open-file limit: it
raises the soft limit to the hard one at start, so they all fit and it still answers; at a
hard limit too low for them, it keeps running and answers again once they go."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from btfd.v1 import btfd_pb2 as pb
from tests.server.conftest import BtfdProcess

IDLE = 200


def limited(workdir: Path, soft: int, hard: int) -> BtfdProcess:
    d = BtfdProcess(workdir, "--metrics-address", "off", wait=False)
    d.args = ["prlimit", f"--nofile={soft}:{hard}", *d.args]
    return d.start()


def connect_idle(path: str, n: int) -> list[grpc.Channel]:
    chans = []
    for _ in range(n):
        # A connection each (same-target channels share one otherwise).
        ch = grpc.insecure_channel(f"unix:{path}", options=[("grpc.use_local_subchannel_pool", 1)])
        grpc.channel_ready_future(ch).result(timeout=30)
        chans.append(ch)
    return chans


def serving(path: str, timeout: float = 30) -> bool:
    with grpc.insecure_channel(f"unix:{path}") as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        return r.status == health_pb2.HealthCheckResponse.SERVING


def test_soft_limit_raised_so_idle_connections_fit(tmp_path: Path) -> None:
    with limited(tmp_path, 64, 4096) as d:
        chans = connect_idle(d.socket, IDLE)
        try:
            assert len(os.listdir(f"/proc/{d.proc.pid}/fd")) > IDLE  # type: ignore[union-attr]
            assert serving(d.socket)
            assert d.stub().LookupType(pb.LookupTypeRequest(name="task_struct"), timeout=30).types
        finally:
            for ch in chans:
                ch.close()
        assert "open-file limit raised from 64 to 4096" in d.log()
        limits = Path(f"/proc/{d.proc.pid}/limits").read_text()  # type: ignore[union-attr]
        assert [ln.split()[3:5] for ln in limits.splitlines() if ln.startswith("Max open files")] == [["4096", "4096"]]


def test_fd_socket_idle_clients_over_the_cap_are_told_so(tmp_path: Path) -> None:
    with limited(tmp_path, 96, 96) as d:
        cap = (96 - 32) // 4  # each connection: its own fd and up to 3 in flight (blob, index, C header)
        assert f"at most {cap} clients at once" in d.log()
        idle = []
        try:
            for _ in range(cap):
                s = socket.socket(socket.AF_UNIX)
                s.connect(d.fd_socket)
                idle.append(s)
            extra = socket.socket(socket.AF_UNIX)
            extra.settimeout(30)
            extra.connect(d.fd_socket)
            assert b"RESOURCE_EXHAUSTED" in extra.recv(4096)
            extra.close()
            assert serving(d.socket)
        finally:
            for s in idle:
                s.close()


def test_more_connections_than_the_hard_limit_then_serving_again(tmp_path: Path) -> None:
    with limited(tmp_path, 96, 96) as d:
        chans: list[grpc.Channel] = []
        refused = 0
        try:
            while len(chans) < 150 and refused < 2:
                ch = grpc.insecure_channel(f"unix:{d.socket}", options=[("grpc.use_local_subchannel_pool", 1)])
                chans.append(ch)
                try:
                    grpc.channel_ready_future(ch).result(timeout=3)
                except grpc.FutureTimeoutError:
                    refused += 1  # the daemon's fd table is full: this one is not accepted
            assert refused, "the limit was never reached"
        finally:
            for ch in chans:
                ch.close()
        assert d.proc is not None and d.proc.poll() is None
        assert serving(d.socket)
        answer_ok = d.stub().GetInfo(pb.GetInfoRequest(), timeout=30).specs
        assert answer_ok
