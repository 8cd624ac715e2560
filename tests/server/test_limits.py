"""btfd.server.limits in process: a cancelled call cancels its budget and waits for its worker
thread before it lets go; the heavy lane leaves a worker for lookups; saturation flips and
comes back; rate-limited logging; the flags; files checked before they are read."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from btfd.btf.query import BudgetError
from btfd.server.limits import Limits, RateLimited, Workers, add_arguments, from_args
from btfd.server.main import build_parser
from btfd.source import SourceError, check_file, open_btf
from tests.conftest import blob


def _run(coro_fn, threads: int = 2):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads))
        return await coro_fn()

    return asyncio.run(main())


def test_a_cancelled_call_stops_its_work_and_waits_for_its_thread() -> None:
    w = Workers(2, Limits())
    started, stopped = threading.Event(), []

    def work(budget) -> None:  # type: ignore[no-untyped-def]
        started.set()
        while True:
            try:
                budget.check()
            except BudgetError as exc:
                stopped.append(exc.status)
                raise
            threading.Event().wait(0.001)

    async def scenario() -> int:
        b = w.budget()
        task = asyncio.ensure_future(w.run(lambda: work(b), b))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return w.running

    assert _run(scenario) == 0
    assert stopped == ["CANCELLED"]  # the thread had stopped before the caller let go


def test_heavy_work_leaves_a_worker_for_the_rest() -> None:
    w = Workers(2, Limits())
    gate = threading.Event()
    order: list[str] = []

    async def scenario() -> None:
        heavy = [asyncio.ensure_future(w.run(lambda: (gate.wait(10), order.append("heavy")), w.budget(),
                                             heavy=True)) for _ in range(4)]
        await asyncio.sleep(0.05)
        await w.run(lambda: order.append("light"), w.budget())  # not stuck behind the 4
        gate.set()
        await asyncio.gather(*heavy)

    _run(scenario)
    assert order[0] == "light" and order.count("heavy") == 4


def test_saturation_is_reported_and_clears() -> None:
    seen: list[bool] = []
    w = Workers(1, Limits(queue_threshold=0.01), on_saturation=seen.append)
    gate = threading.Event()

    async def scenario() -> None:
        first = asyncio.ensure_future(w.run(lambda: gate.wait(10), w.budget()))
        second = asyncio.ensure_future(w.run(lambda: None, w.budget()))
        await asyncio.sleep(0.1)
        assert w.check_saturation()  # the second has waited 0.1 s behind the first
        gate.set()
        await asyncio.gather(first, second)
        assert not w.check_saturation()

    _run(scenario, threads=1)
    assert seen == [True, False]


def test_rate_limited_log_counts_what_it_leaves_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    rl = RateLimited(logging.getLogger("t"), interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            rl(logging.WARNING, "k", "refused %d", 1)
        rl(logging.WARNING, "other", "another kind")
        now[0] = 11
        rl(logging.WARNING, "k", "refused %d", 2)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["refused 1", "another kind",
                    "refused 2 (49 more like this in the last 10 s not logged)"]


def test_limit_flags_have_defaults_and_are_checked() -> None:
    args = build_parser().parse_args([])
    assert from_args(args) == Limits()
    args = build_parser().parse_args(["--max-pattern-length", "7", "--request-time-limit", "0.5"])
    assert from_args(args).max_pattern == 7 and from_args(args).request_seconds == 0.5
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--fd-clients-per-uid", "0"])
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert "--saturation-threshold" in p.format_help()


def test_files_are_checked_before_they_are_read(tmp_path: Path) -> None:
    big = tmp_path / "big.btf"
    with open(big, "wb") as f:
        f.write(b"\x9f\xeb\x01\x00")
        f.truncate(1 << 30)  # sparse: nothing to read, but 1 GiB if read
    with pytest.raises(SourceError, match=r"1073741824 bytes, over the limit of 1048576 \(btfd --max-file-bytes"):
        open_btf(str(big), max_bytes=1 << 20)
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world")
    with pytest.raises(SourceError, match="neither BTF nor ELF"):
        open_btf(str(junk))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(SourceError, match="not a regular file"):
            check_file(fd, str(fifo))
    finally:
        os.close(fd)
    ok = tmp_path / "ok.btf"
    ok.write_bytes(blob("synthetic-basic_types"))
    src = open_btf(str(ok))
    try:
        assert src.size == len(blob("synthetic-basic_types"))
    finally:
        src.close()
