"""Hostile input against the real daemon, bounded for CI (bench/fuzz_rpc.py runs it longer):
every RPC's request fields and the fd socket's request lines get only proper status codes
or clear fd error answers, the daemon keeps serving, and its memory stays bounded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from btfd.server.metrics import memory_bytes
from tests.server.conftest import BtfdProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from fuzz_rpc import Checker, fd_payloads, rpc_requests  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True,
                database=None)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path) -> Any:
    with BtfdProcess(tmp_path_factory.mktemp("fuzz"), "--metrics-address", "off") as proc:
        yield proc


@pytest.fixture(scope="module")
def checker(daemon: BtfdProcess) -> Any:
    c = Checker(daemon.socket, daemon.fd_socket)
    assert c.healthy()
    yield c
    c.close()


@pytest.fixture(scope="module")
def uss_before(daemon: BtfdProcess, checker: Checker) -> int:
    # after one pass over the big answers (caches, name index pages, CO-RE targets)
    from btfd.v1 import btfd_pb2 as pb

    checker.rpc("LookupType", pb.LookupTypeRequest(name="task_struct", depth=3))
    checker.rpc("ListTypes", pb.ListTypesRequest(kind=pb.KIND_FUNC))
    uss: int = memory_bytes(daemon.proc.pid)["uss"]  # type: ignore[union-attr]
    return uss


@settings(max_examples=600, **SETTINGS)  # type: ignore[arg-type]
@given(rpc_requests)
def test_hostile_rpcs_get_proper_status_codes(checker: Checker, uss_before: int, req: tuple[str, Any]) -> None:
    checker.rpc(*req)


@settings(max_examples=120, **SETTINGS)  # type: ignore[arg-type]
@given(fd_payloads)
def test_hostile_fd_requests_get_clear_answers(checker: Checker, uss_before: int, payload: bytes) -> None:
    checker.fd(payload)


def test_the_daemon_survived_with_bounded_memory(daemon: BtfdProcess, checker: Checker, uss_before: int) -> None:
    print("inputs and answers:", dict(sorted(checker.seen.items())))
    assert checker.healthy()
    # every RPC was reached, and the fd socket both served and refused
    methods = {k.split()[0] for k in checker.seen}
    assert {"GetInfo", "Check", "LookupType", "ListTypes", "ReadRaw", "ResolveCore", "MinimizeBtf", "fd"} <= methods
    assert checker.seen["fd OK"] and any(k.startswith("fd ") and k != "fd OK" for k in checker.seen)
    assert checker.seen["ResolveCore OK"] and checker.seen["ResolveCore INVALID_ARGUMENT"]
    grown = memory_bytes(daemon.proc.pid)["uss"] - uss_before  # type: ignore[union-attr]
    assert grown < 64 << 20, grown  # a sanity bound, not a performance figure
    log = daemon.log()
    assert "Traceback" not in log and "INTERNAL" not in log
