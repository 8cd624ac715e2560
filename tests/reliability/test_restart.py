"""kill -9 and restart under load: sync clients in threads, an AsyncClient and open_shared fd
requests keep working while the daemon is SIGKILLed and restarted on the same path; every
operation succeeds through the library's retries (bounded by the retry budget)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from btfd.btf import Kind
from btfd.client import AsyncClient, Client
from btfd.shared import FdError, open_shared, request_fd
from tests.server.conftest import BtfdProcess

OPS = 60  # per worker
KILLS = 3


class Worker(threading.Thread):
    def __init__(self, name: str, fn) -> None:  # type: ignore[no-untyped-def]
        super().__init__(name=name, daemon=True)
        self.fn = fn
        self.done = 0
        self.errors: list[str] = []

    def run(self) -> None:
        for i in range(OPS):
            try:
                self.fn(i)
                self.done += 1
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                self.errors.append(f"{self.name} op {i}: {exc!r}"[:400])


def test_kill_9_and_restart_under_load(tmp_path: Path) -> None:
    d = BtfdProcess(tmp_path, "--metrics-address", "off")
    sock, fd_sock = d.socket, d.fd_socket
    try:
        clients = [Client(sock, timeout=10, retry_budget=30) for _ in range(3)]

        def lookups(i: int, c: Client = clients[0]) -> None:
            assert c.lookup_type("task_struct", kind=Kind.STRUCT).types[0].name == "task_struct"

        def listings(i: int, c: Client = clients[1]) -> None:
            got = [t.name for t in c.list_types(kind=Kind.STRUCT, name="tcp_", match=2, page_size=5, limit=12)]
            assert len(got) == 12 and all(n.startswith("tcp_") for n in got)

        def raw(i: int, c: Client = clients[2]) -> None:
            assert c.read_raw(0, 4)[:2] in (b"\x9f\xeb", b"\xeb\x9f")

        def shared(i: int) -> None:
            with open_shared(socket_path=sock, timeout=10, retry_budget=30) as spec:
                assert spec.find_one("task_struct", Kind.STRUCT).name == "task_struct"

        def fd(i: int) -> None:
            answer, f = request_fd(fd_sock, timeout=10, retry_budget=30)
            os.close(f)
            assert answer["spec"] == "vmlinux"

        async def async_ops() -> None:
            async with AsyncClient(sock, timeout=10, retry_budget=30) as ac:
                for i in range(OPS):
                    try:
                        r = await ac.lookup_type("list_head")
                        assert r.types[0].name == "list_head"
                        assert [t async for t in ac.list_types(name="sk_", match=2, limit=3)]
                        aw.done += 1
                    except Exception as exc:  # noqa: BLE001
                        aw.errors.append(f"async op {i}: {exc!r}"[:400])

        aw = Worker("async", lambda i: None)
        aw.run = lambda: asyncio.run(async_ops())  # type: ignore[method-assign]
        workers = [Worker(n, f) for n, f in
                   [("lookups", lookups), ("listings", listings), ("raw", raw), ("shared", shared), ("fd", fd)]]
        workers.append(aw)
        for w in workers:
            w.start()
        for k in range(KILLS):
            # Kill once every worker made progress since the last restart.
            marks = [w.done + len(w.errors) for w in workers]
            end = time.monotonic() + 120
            while any(w.is_alive() and w.done + len(w.errors) <= m for w, m in zip(workers, marks, strict=True)):
                assert time.monotonic() < end, "workers made no progress"
                time.sleep(0.02)
            assert d.proc is not None
            d.proc.kill()
            d.proc.wait()
            time.sleep(0.3 * k)  # a little longer down each time: the clients retry meanwhile
            d.start()
        for w in workers:
            w.join(300)
            assert not w.is_alive(), w.name
        errors = [e for w in workers for e in w.errors]
        assert errors == []
        assert all(w.done == OPS for w in workers)
        assert sum(c.retries for c in clients) > 0  # the restarts were seen, and retried
        for c in clients:
            c.close()
    finally:
        d.stop()


def test_fd_retry_gives_up_within_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No daemon at all: request_fd fails after its budget (not at once, not forever)."""
    import btfd.shared

    path = str(tmp_path / "none.sock.fd")
    slept: list[float] = []
    real_sleep = time.sleep

    def sleep(s: float) -> None:
        slept.append(s)
        real_sleep(s)

    monkeypatch.setattr(btfd.shared.time, "sleep", sleep)
    with pytest.raises(FileNotFoundError):
        request_fd(path, retry_budget=0)
    assert slept == []
    with pytest.raises(FileNotFoundError):
        request_fd(path, retry_budget=1.0)
    assert len(slept) > 1 and sum(slept) <= 1.0  # backed off, within the budget


def test_fd_errors_other_than_unreachable_are_not_retried(tmp_path: Path) -> None:
    with BtfdProcess(tmp_path, "--metrics-address", "off") as d:
        with pytest.raises(FdError) as err:
            request_fd(d.fd_socket, "no-such-spec", retry_budget=60)
        assert err.value.status == "NOT_FOUND"
