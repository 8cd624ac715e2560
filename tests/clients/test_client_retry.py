"""Retries across real daemon restarts (sync and asyncio, calls and resumed listings), the
retry budget's bound, and what a SharedSpec exposes."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import grpc
import pytest

from btfd.btf import Kind, Spec
from tests.server.conftest import BtfdProcess


def _restart_later(d: BtfdProcess, after: float = 0.5) -> threading.Thread:
    assert d.proc is not None
    d.proc.kill()
    d.proc.wait()
    th = threading.Thread(target=lambda: (time.sleep(after), d.start()))
    th.start()
    return th


class _Err(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def test_retry_budget_bounds_wall_time_not_sleep_only() -> None:
    from btfd.client import Retry

    now = [0.0]
    r = Retry(3.0, clock=lambda: now[0])
    slept = 0.0
    attempts = 0
    while True:
        now[0] += 1.0  # each attempt itself takes a second (e.g. a connect timeout)
        attempts += 1
        d = r.delay(_Err(grpc.StatusCode.UNAVAILABLE))
        if d is None:
            break
        slept += d
        now[0] += d
    assert now[0] <= 3.0 + 1.0  # the budget, plus the one attempt that was under way
    assert attempts <= 3
    assert Retry(30).delay(_Err(grpc.StatusCode.INVALID_ARGUMENT)) is None


def test_async_client_every_rpc_and_retry_across_a_restart(tmp_path: Path, kernel_vmlinux: Path) -> None:
    from btfd_client import AsyncClient

    d = BtfdProcess(tmp_path, "--metrics-address", "off")
    try:
        async def go() -> None:
            async with AsyncClient(d.socket, timeout=5, retry_budget=60) as c:
                assert await c.health()
                assert await c.read_raw(0, 24) == kernel_vmlinux.read_bytes()[:24]
                th = _restart_later(d)
                t = await c.lookup_type("task_struct", kind=Kind.STRUCT)  # UNAVAILABLE until up
                assert t.types[0].name == "task_struct" and c.retries > 0
                th.join()
                th = _restart_later(d)
                assert await c.read_raw(0, 24) == kernel_vmlinux.read_bytes()[:24]
                th.join()
                th = _restart_later(d)
                assert await c.health()
                th.join()

        asyncio.run(go())
    finally:
        d.stop()


def test_list_types_resumes_across_a_restart(tmp_path: Path, kernel_vmlinux: Path) -> None:
    """Kill the daemon mid-listing; the listing resumes after the last page received: the
    ids are exactly the library's, none twice, none missing (sync and asyncio)."""
    from btfd_client import AsyncClient, Client

    spec = Spec(kernel_vmlinux.read_bytes())
    want = [t.id for t in spec.types(Kind.STRUCT)]
    d = BtfdProcess(tmp_path, "--metrics-address", "off")
    try:
        with Client(d.socket, timeout=10, retry_budget=60) as c:
            got: list[int] = []
            th = None
            for t in c.list_types(kind=Kind.STRUCT, page_size=20):
                got.append(t.id)
                if len(got) == 30:
                    th = _restart_later(d)
            assert th is not None
            th.join()
            assert c.retries > 0  # the stream really broke and was resumed
            assert got == want

        async def go() -> tuple[list[int], int]:
            async with AsyncClient(d.socket, timeout=10, retry_budget=60) as ac:
                ids: list[int] = []
                th2 = None
                async for t in ac.list_types(kind=Kind.STRUCT, page_size=20):
                    ids.append(t.id)
                    if len(ids) == 30:
                        th2 = _restart_later(d)
                assert th2 is not None
                th2.join()
                return ids, ac.retries

        ids, retries = asyncio.run(go())
        assert retries > 0 and ids == want
        with Client(d.socket, timeout=10) as c:  # limit across pages
            assert [t.id for t in c.list_types(kind=Kind.STRUCT, page_size=7, limit=20)] == want[:20]
    finally:
        d.stop()


def test_shared_spec_exposes_its_fds(tmp_path: Path, kernel_vmlinux: Path) -> None:
    from btfd_client import FdError, open_shared, request_fd

    with BtfdProcess(tmp_path, "--metrics-address", "off") as d:
        s = open_shared(socket_path=d.socket)
        try:
            assert os.readlink(f"/proc/self/fd/{s.fd}") == str(kernel_vmlinux)
            assert s.fds == [s.fd] and s.base is None
        finally:
            s.close()
        with pytest.raises(FdError) as exc:
            request_fd(d.fd_socket, "no-such-spec")
        assert exc.value.status == "NOT_FOUND"


def test_open_shared_finds_an_advertised_fd_socket(tmp_path: Path, kernel_vmlinux: Path) -> None:
    from btfd_client import open_shared

    other = str(tmp_path / "elsewhere.fd")
    with BtfdProcess(tmp_path / "d", "--metrics-address", "off", "--fd-socket", other) as d:
        with open_shared(socket_path=d.socket) as spec:
            assert spec.find_one("list_head", Kind.STRUCT).size == 16
        s = open_shared(fd_socket=other)
        s.close()
