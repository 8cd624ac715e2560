"""The client library, the zero-copy path and the C example, against a real daemon."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest

from btfd.btf import Kind, Spec
from tests.server.conftest import BtfdProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path):  # type: ignore[no-untyped-def]
    with BtfdProcess(tmp_path_factory.mktemp("clients"), "--metrics-address", "off") as proc:
        yield proc


def test_sync_client_every_rpc(daemon, kernel_vmlinux: Path) -> None:
    from btfd_client import Client

    with Client(daemon.socket, timeout=5) as c:
        assert c.health()
        assert c.get_info().specs[0].name == "vmlinux"
        t = c.lookup_type("task_struct", kind=Kind.STRUCT).types[0]
        assert t.name == "task_struct"
        names = [x.name for x in c.list_types(kind=Kind.STRUCT, name="list_head", match=1)]
        assert names == ["list_head"]
        assert c.read_raw(0, 24) == kernel_vmlinux.read_bytes()[:24]
        with pytest.raises(grpc.RpcError) as exc:
            c.lookup_type("no_such_type_qq")
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_async_client(daemon) -> None:
    from btfd_client import AsyncClient

    async def go() -> tuple[str, int]:
        async with AsyncClient(daemon.socket, timeout=5) as c:
            r = await c.lookup_type("list_head", kind=Kind.STRUCT)
            n = 0
            async for _ in c.list_types(kind=Kind.STRUCT, limit=5):
                n += 1
            return r.types[0].name, n

    assert asyncio.run(go()) == ("list_head", 5)


def test_socket_from_environment(daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    from btfd_client import Client, default_socket

    monkeypatch.setenv("BTFD_SOCKET", daemon.socket)
    assert default_socket() == daemon.socket
    with Client(timeout=5) as c:
        assert c.health()


def test_no_retry_on_invalid_argument(daemon) -> None:
    from btfd_client import Client

    with Client(daemon.socket, timeout=5, retry_budget=30) as c:
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as exc:
            c.lookup_type(None)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert time.monotonic() - t0 < 10  # not retried for the 30 s budget


def test_open_shared_maps_the_daemons_blob(daemon, kernel_vmlinux: Path) -> None:
    from btfd_client import open_shared

    shared = open_shared(socket_path=daemon.socket)
    with shared as spec:
        assert shared.answer["mode"] == "kernel-mmap"
        assert spec.find_one("task_struct", Kind.STRUCT).size == Spec(kernel_vmlinux.read_bytes()).find_one(
            "task_struct", Kind.STRUCT).size
        assert bytes(spec.data[:24]) == kernel_vmlinux.read_bytes()[:24]


def test_open_shared_private_memory_is_the_index_only(daemon) -> None:
    """In a fresh process: the change in Private_Clean+Private_Dirty after open_shared and a
    name lookup is a small fraction of the blob (the blob is mapped, not copied)."""
    code = textwrap.dedent(f"""
        import json, sys
        from btfd_client import open_shared, Kind
        def private():
            f = dict(l.split()[:2] for l in open('/proc/self/smaps_rollup') if l.endswith('kB\\n'))
            return (int(f['Private_Clean:']) + int(f['Private_Dirty:'])) * 1024
        import btfd.btf.spec, btfd.source, btfd.client  # imports are not the BTF's cost
        before = private()
        s = open_shared(socket_path={daemon.socket!r})
        s.spec.find_one('task_struct', Kind.STRUCT)
        after = private()
        print(json.dumps({{"growth": after - before, "blob": s.answer["size"],
                           "index": sum(s.spec.index_bytes().values())}}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    import json

    got = json.loads(r.stdout)
    assert got["growth"] < got["blob"] / 4, got
    assert got["growth"] <= 0.65 * 1048576 + 256 * 1024, got  # the index, plus allocator slack


def test_c_example_shares_the_mapping(daemon, kernel_vmlinux: Path, tmp_path: Path) -> None:
    build = tmp_path / "c"
    shutil.copytree(ROOT / "clients" / "c", build)
    subprocess.run(["make", "-s", "-C", str(build)], check=True, timeout=120)
    r = subprocess.run([str(build / "btfd-fd-example"), daemon.fd_socket], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    size = Spec(kernel_vmlinux.read_bytes()).find_one("task_struct", Kind.STRUCT).size
    assert r.stdout.startswith(f"task_struct size={size} ")
    r = subprocess.run([str(build / "btfd-fd-example"), str(tmp_path / "none.fd")], capture_output=True, text=True)
    assert r.returncode == 3 and "is btfd running" in r.stderr
    # The daemon's error answer is printed as such, not as "answered without an fd".
    r = subprocess.run([str(build / "btfd-fd-example"), daemon.fd_socket, "task_struct", "no-such-spec"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("btfd refused: {") and "NOT_FOUND" in r.stderr, r.stderr


def test_retry_across_a_daemon_restart(tmp_path: Path, kernel_vmlinux: Path) -> None:
    from btfd_client import Client

    d = BtfdProcess(tmp_path, "--metrics-address", "off")
    try:
        c = Client(d.socket, timeout=2, retry_budget=30)
        assert c.health()
        d.proc.kill()  # type: ignore[union-attr]
        d.proc.wait()  # type: ignore[union-attr]
        restarted = threading.Event()

        def restart() -> None:
            time.sleep(1.0)
            d.start()
            restarted.set()

        th = threading.Thread(target=restart)
        th.start()
        t = c.lookup_type("task_struct", kind=Kind.STRUCT)  # UNAVAILABLE until the restart
        th.join()
        assert restarted.is_set() and t.types[0].name == "task_struct"
        c.close()
    finally:
        d.stop()
    assert os.path.exists(tmp_path / "btfd.log")
