"""Audit findings against the real daemon: error sizes, module unload/reload, metrics of
every call, paging, --btf ELF, btfhub archives, the mmap fallback, socket activation and
option validation. Each test fails on the code before its fix."""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from btfd.btf import Kind, Spec
from btfd.v1 import btfd_pb2 as pb
from btfd.v1 import btfd_pb2_grpc
from tests.conftest import CORE_DATA, blob
from tests.server.conftest import BTFD, BtfdProcess, btfhub_dir
from tests.server.test_fd_and_lifecycle import ask_fd

BTF_MAGIC = b"\x9f\xeb"


def _rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value


def _metric(url: str, name: str, **labels: str) -> float:
    """The value of one sample on the daemon's /metrics page (0 when absent)."""
    text = urllib.request.urlopen(url, timeout=30).read().decode()
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _eventually(cond: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll ``cond`` until it is truthy (the daemon acts on signals asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def _memfds(pid: int, name: str) -> int:
    """How many of a process's fds are memfds called ``name``."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"/memfd:{name} "):
                n += 1
        except FileNotFoundError:
            pass
    return n


def _spec_names(stub: Any) -> dict[str, Any]:
    return {s.name: s for s in stub.GetInfo(pb.GetInfoRequest()).specs}


# ------------------------------------------------------------------ 1. error sizes


def test_long_request_strings_do_not_overflow_the_status_trailer(kernel_daemon) -> None:
    stub = kernel_daemon.stub()
    url = kernel_daemon.metrics_url
    before = _metric(url, "btfd_requests_total", method="LookupType", code="NOT_FOUND")
    err = _rpc_error(lambda: stub.LookupType(pb.LookupTypeRequest(name="x" * 9000)))
    assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
    assert "9000 characters" in err.details() and len(err.details()) < 1100
    # the client sees what the metrics record
    assert _metric(url, "btfd_requests_total", method="LookupType", code="NOT_FOUND") == before + 1
    err = _rpc_error(lambda: list(stub.ListTypes(pb.ListTypesRequest(spec="y" * 20000))))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "20000 characters" in err.details()
    answer, fd, s = ask_fd(kernel_daemon.fd_socket, "z" * 4000)
    s.close()
    assert fd == -1 and answer["code"] == "NOT_FOUND" and len(answer["error"]) < 1100


# ------------------------------------------------------------------ 2-4. modules


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    d = tmp_path / "sysfs"
    d.mkdir()
    (d / "vmlinux").write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    (d / "veth").write_bytes(blob("veth-6.1.0-56-amd64"))
    (d / "btrfs").write_bytes(blob("btrfs-6.1.0-56-amd64"))
    return d


def _rescan(d: BtfdProcess, cond: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    stub = d.stub()
    d.signal(signal.SIGHUP)
    return _eventually(lambda: (lambda s: s if cond(s) else None)(_spec_names(stub)), what)  # type: ignore[no-any-return]


def test_module_unload_frees_it_once_unused_and_held_fds_stay_valid(tmp_path: Path, sysfs: Path) -> None:
    veth = blob("veth-6.1.0-56-amd64")
    with BtfdProcess(tmp_path / "d", "--sysfs-btf-dir", str(sysfs), "--metrics-address", "off",
                     "--module-rescan", "0") as d:
        assert d.proc is not None
        stub = d.stub()
        r = stub.LookupType(pb.LookupTypeRequest(name="veth_priv", all_specs=True))  # cached now
        assert [t.spec for t in r.types] == ["module/veth"]
        answer, fd, s = ask_fd(d.fd_socket, "module/veth")
        s.close()
        held = mmap.mmap(fd, answer["size"], flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        os.close(fd)
        digest = hashlib.sha256(held[:]).hexdigest()
        assert digest == hashlib.sha256(veth).hexdigest()
        # A stream reading a module while it is unloaded: tiny chunks and no window growth,
        # so that most of it is still to be produced when the module goes away.
        btrfs = blob("btrfs-6.1.0-56-amd64")
        slow = grpc.insecure_channel(f"unix:{d.socket}", options=[("grpc.http2.bdp_probe", 0)])
        it = btfd_pb2_grpc.BtfStub(slow).ReadRaw(
            pb.ReadRawRequest(spec="module/btrfs", offset=0, length=len(btrfs), chunk_size=16))
        first = next(it)
        assert _memfds(d.proc.pid, "veth") == 3  # the memfd, its mapping's dup, the read-only fd
        assert _memfds(d.proc.pid, "btrfs") == 3

        (sysfs / "veth").unlink()
        (sysfs / "btrfs").unlink()
        _rescan(d, lambda s: "module/veth" not in s and "module/btrfs" not in s, "modules dropped")
        err = _rpc_error(lambda: stub.LookupType(pb.LookupTypeRequest(name="veth_priv", all_specs=True)))
        assert err.code() == grpc.StatusCode.NOT_FOUND  # not the cached answer
        err = _rpc_error(lambda: stub.LookupType(pb.LookupTypeRequest(spec="module/veth", name="veth_priv")))
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert _memfds(d.proc.pid, "veth") == 0  # nothing used it: freed at once
        assert _memfds(d.proc.pid, "btrfs") == 3  # still in use by the stream
        rest = b"".join(c.data for c in it)
        slow.close()
        assert first.data + rest == btrfs
        assert _memfds(d.proc.pid, "btrfs") == 0  # released with the stream
        # the client's mapping is its own
        assert hashlib.sha256(held[:]).hexdigest() == digest
        held.close()

        # load/unload cycles leave nothing behind
        for _ in range(5):
            (sysfs / "veth").write_bytes(veth)
            _rescan(d, lambda s: "module/veth" in s, "module/veth back")
            assert stub.LookupType(pb.LookupTypeRequest(spec="module/veth", name="veth_priv")).types
            ans, fd, s = ask_fd(d.fd_socket, "module/veth")
            os.close(fd)
            s.close()
            (sysfs / "veth").unlink()
            _rescan(d, lambda s: "module/veth" not in s, "module/veth dropped")
        assert _memfds(d.proc.pid, "veth") == 0


def test_reloaded_module_is_read_again(tmp_path: Path, sysfs: Path) -> None:
    with BtfdProcess(tmp_path / "d", "--sysfs-btf-dir", str(sysfs), "--metrics-address", "off",
                     "--module-rescan", "0") as d:
        stub = d.stub()
        assert stub.LookupType(pb.LookupTypeRequest(spec="module/veth", name="veth_priv")).types
        assert _spec_names(stub)["module/veth"].loaded
        # the same name, new contents (a new inode, as when the kernel reloads a module)
        new = sysfs / "veth.new"
        new.write_bytes(blob("nf_conntrack-6.1.0-56-amd64"))
        new.rename(sysfs / "veth")
        _rescan(d, lambda s: "module/veth" in s and not s["module/veth"].loaded, "module/veth reopened")
        r = stub.LookupType(pb.LookupTypeRequest(spec="module/veth", name="nf_conn", kind=pb.KIND_STRUCT))
        assert r.types and r.types[0].spec == "module/veth"
        err = _rpc_error(lambda: stub.LookupType(pb.LookupTypeRequest(spec="module/veth", name="veth_priv")))
        assert err.code() == grpc.StatusCode.NOT_FOUND
        found = stub.LookupType(pb.LookupTypeRequest(name="nf_conntrack_helper", all_specs=True)).types
        assert "module/veth" in [t.spec for t in found]


def test_modules_are_not_split_over_a_foreign_vmlinux(tmp_path: Path, sysfs: Path) -> None:
    other = tmp_path / "other.btf"
    other.write_bytes(blob("vmlinux-6.18-amd64"))
    with BtfdProcess(tmp_path / "a", "--sysfs-btf-dir", str(sysfs), "--btf", str(other),
                     "--metrics-address", "off") as d:
        assert set(_spec_names(d.stub())) == {"vmlinux"}
        assert "module BTF: not served" in d.log()
    with BtfdProcess(tmp_path / "b", "--sysfs-btf-dir", str(sysfs), "--btf", str(other),
                     "--modules-over-btf", "--metrics-address", "off") as d:
        assert "module/veth" in _spec_names(d.stub())
        assert "--modules-over-btf" in d.log()


# ------------------------------------------------------------------ 6. off the event loop


def test_long_lookup_does_not_block_health_checks(kernel_daemon) -> None:
    stub = kernel_daemon.stub()
    health = health_pb2_grpc.HealthStub(kernel_daemon.channel())
    url = kernel_daemon.metrics_url
    misses = _metric(url, "btfd_lookup_cache_total", result="miss")
    done = _metric(url, "btfd_requests_total", method="LookupType", code="OK")
    # depth 61: an answer no other test asks for (not cached), thousands of types long,
    # seconds of work
    fut = stub.LookupType.future(pb.LookupTypeRequest(name="task_struct", kind=pb.KIND_STRUCT, depth=61))
    _eventually(lambda: _metric(url, "btfd_lookup_cache_total", result="miss") > misses,
                "the lookup started")
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    # answered while the lookup is still at work (a lookup on the event loop is counted
    # done before the loop can answer anything else)
    assert _metric(url, "btfd_requests_total", method="LookupType", code="OK") == done
    assert len(fut.result(timeout=120).referenced) > 1000
    assert _metric(url, "btfd_requests_total", method="LookupType", code="OK") == done + 1


# ------------------------------------------------------------------ 8. every call counted


def test_cancelled_and_expired_calls_are_counted(kernel_daemon, kernel_vmlinux: Path) -> None:
    stub = kernel_daemon.stub()
    url = kernel_daemon.metrics_url
    size = kernel_vmlinux.stat().st_size
    cancelled = _metric(url, "btfd_requests_total", method="ReadRaw", code="CANCELLED")
    it = stub.ReadRaw(pb.ReadRawRequest(offset=0, length=size, chunk_size=1024))
    next(it)
    it.cancel()
    _eventually(lambda: _metric(url, "btfd_requests_total", method="ReadRaw", code="CANCELLED") == cancelled + 1,
                "the cancelled stream counted")
    expired = _metric(url, "btfd_requests_total", method="ReadRaw", code="DEADLINE_EXCEEDED")
    it = stub.ReadRaw(pb.ReadRawRequest(offset=0, length=size, chunk_size=1024), timeout=1.0)
    next(it)
    time.sleep(1.5)  # let the deadline pass while the stream waits for us
    err = _rpc_error(lambda: list(it))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _eventually(lambda: _metric(url, "btfd_requests_total", method="ReadRaw",
                                code="DEADLINE_EXCEEDED") == expired + 1,
                "the expired stream counted")


# ------------------------------------------------------------------ 12. ListTypes


def test_list_types_name_without_match_and_next_start_id(kernel_daemon, kernel_vmlinux: Path) -> None:
    stub = kernel_daemon.stub()
    local = Spec(kernel_vmlinux.read_bytes())

    def listing(**kw: Any) -> list[pb.ListTypesResponse]:
        return list(stub.ListTypes(pb.ListTypesRequest(**kw)))

    [page] = listing(name="task_struct")  # match left at ANY: an exact name
    assert [t.id for t in page.types] == local.find_ids("task_struct") and page.next_start_id == 0
    want = [t for t, no, info, _ in local.iter_raw(None)
            if (info >> 24) & 0x7F == Kind.STRUCT and no and local.string(no).startswith("task_")]
    assert len(want) >= 3
    # a full last page: complete, so next_start_id is 0
    pages = listing(kind=pb.KIND_STRUCT, name="task_", match=pb.NAME_MATCH_PREFIX, page_size=len(want))
    assert [[t.id for t in p.types] for p in pages] == [want] and pages[0].next_start_id == 0
    pages = listing(kind=pb.KIND_STRUCT, name="task_", match=pb.NAME_MATCH_PREFIX, page_size=2)
    assert [t.id for p in pages for t in p.types] == want
    assert [p.next_start_id for p in pages[:-1]] == [p.types[-1].id + 1 for p in pages[:-1]]
    assert pages[-1].next_start_id == 0
    # a limit that cuts the listing: resume where it stopped
    [cut] = listing(kind=pb.KIND_STRUCT, name="task_", match=pb.NAME_MATCH_PREFIX, limit=len(want) - 1)
    assert [t.id for t in cut.types] == want[:-1] and cut.next_start_id == want[-2] + 1
    [rest] = listing(kind=pb.KIND_STRUCT, name="task_", match=pb.NAME_MATCH_PREFIX, start_id=cut.next_start_id)
    assert [t.id for t in rest.types] == want[-1:] and rest.next_start_id == 0
    # a limit that happens to take exactly everything: complete
    [every] = listing(kind=pb.KIND_STRUCT, name="task_", match=pb.NAME_MATCH_PREFIX, limit=len(want))
    assert [t.id for t in every.types] == want and every.next_start_id == 0


# ------------------------------------------------------------------ 9-10. what --btf serves


def test_btf_elf_serves_only_the_btf_section(tmp_path: Path) -> None:
    obj = CORE_DATA / "objs" / "k_task_exists.bpf.o"
    section = tmp_path / "section.btf"
    subprocess.run(["llvm-objcopy", "--dump-section", f".BTF={section}", str(obj), str(tmp_path / "junk.o")],
                   check=True, timeout=60)
    want = section.read_bytes()
    assert want[:2] == BTF_MAGIC and len(want) < obj.stat().st_size
    with BtfdProcess(tmp_path / "d", "--btf", str(obj), "--metrics-address", "off") as d:
        stub = d.stub()
        vm = _spec_names(stub)["vmlinux"]
        assert vm.size == len(want) and vm.mode == "sealed-memfd"
        answer, fd, s = ask_fd(d.fd_socket, "vmlinux")
        s.close()
        assert answer["size"] == len(want)
        m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        assert m[:] == want
        m.close()
        os.close(fd)
        got = b"".join(c.data for c in stub.ReadRaw(pb.ReadRawRequest(offset=0, length=len(want))))
        assert got == want


@pytest.mark.parametrize("packed", [True, False])
def test_btf_dir_leaves_nothing_on_disk(tmp_path: Path, packed: bool) -> None:
    data = blob("vmlinux-6.1.0-56-amd64")
    nosys, hub = btfhub_dir(tmp_path, data, packed=packed)
    release = os.uname().release
    work = tmp_path / "d"
    with BtfdProcess(work, "--sysfs-btf-dir", str(nosys), "--btf-dir", str(hub), "--metrics-address", "off") as d:
        [vm] = d.stub().GetInfo(pb.GetInfoRequest()).specs
        assert vm.mode == "sealed-memfd" and vm.size == len(data)
        answer, fd, s = ask_fd(d.fd_socket, "vmlinux")
        s.close()
        with open(fd, "rb") as f:
            assert f.read() == data
        assert sorted(p.name for p in work.iterdir()) == ["btfd.log", "btfd.sock", "btfd.sock.fd"]
    assert sorted(p.name for p in hub.iterdir()) == [f"{release}.btf.tar.xz" if packed else f"{release}.btf"]


# ------------------------------------------------------------------ 11. the mmap fallback

REFUSING_DAEMON = """\
import errno, os, sys
from btfd.server.main import main

def refuse(fd, size):
    raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

sys.exit(main(sys.argv[1:], mapper=refuse))
"""


def test_kernel_refusing_mmap_falls_back_and_says_so(tmp_path: Path, kernel_vmlinux: Path) -> None:
    script = tmp_path / "refusing_btfd.py"
    script.write_text(REFUSING_DAEMON)
    d = BtfdProcess(tmp_path / "d", wait=False)
    d.args[0:1] = [sys.executable, str(script)]
    with d.start():
        vm = _spec_names(d.stub())["vmlinux"]
        assert vm.path == str(kernel_vmlinux) and vm.mode == "sealed-memfd"
        assert vm.mmap_refused and "ENODEV" in vm.note
        assert _metric(d.metrics_url, "btfd_spec_mmap_refused", spec="vmlinux") == 1
        assert _metric(d.metrics_url, "btfd_spec_bytes", spec="vmlinux", mode="sealed-memfd") == vm.size
        assert re.search(r"refused to map .*vmlinux \(ENODEV", d.log())
        answer, fd, s = ask_fd(d.fd_socket, "vmlinux")
        s.close()
        assert answer["mode"] == "sealed-memfd"
        with open(fd, "rb") as f:
            assert f.read() == kernel_vmlinux.read_bytes()


def test_kernel_mapping_is_not_reported_as_refused(kernel_daemon) -> None:
    vm = _spec_names(kernel_daemon.stub())["vmlinux"]
    assert vm.mode == "kernel-mmap" and not vm.mmap_refused and vm.note == ""
    assert _metric(kernel_daemon.metrics_url, "btfd_spec_mmap_refused", spec="vmlinux") == 0


# ------------------------------------------------------------------ 7. socket activation


def _activated(tmp_path: Path, listener: socket.socket, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    os.dup2(listener.fileno(), 3, inheritable=True)
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec {BTFD} --socket {tmp_path / "btfd.sock"} '
                              f'--metrics-address off {" ".join(extra)}'],
            pass_fds=(3,), stdout=out, stderr=subprocess.STDOUT,
        )
    return proc, log


def test_socket_activation_reports_the_adopted_path(tmp_path: Path, kernel_vmlinux: Path) -> None:
    fd_path = str(tmp_path / "activated.fd")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(fd_path)
    listener.listen(8)
    proc, log = _activated(tmp_path, listener)  # no --fd-socket: the default would be wrong
    try:
        _eventually(lambda: "ready:" in log.read_text() or proc.poll() is not None, "ready")
        ch = grpc.insecure_channel(f"unix:{tmp_path / 'btfd.sock'}")
        got = btfd_pb2_grpc.BtfStub(ch).GetInfo(pb.GetInfoRequest())
        ch.close()
        assert got.fd_socket == fd_path and got.specs[0].fd_socket == fd_path
        assert f"fd socket {fd_path}" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        listener.close()


def test_socket_activation_refuses_a_socket_that_is_not_listening(tmp_path: Path, kernel_vmlinux: Path) -> None:
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(str(tmp_path / "dgram"))
    proc, log = _activated(tmp_path, dgram)
    try:
        assert proc.wait(60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        dgram.close()
    text = log.read_text()
    assert "not a Unix stream socket" in text and "Traceback" not in text


# ------------------------------------------------------------------ 13. options, signals, groups


def test_option_validation(tmp_path: Path, kernel_vmlinux: Path) -> None:
    for bad in ("0", "-1"):
        r = subprocess.run([BTFD, "--socket", str(tmp_path / "s.sock"), "--max-request-bytes", bad],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--max-request-bytes" in r.stderr and "Traceback" not in r.stderr
    for bad in ("0", "-2", "two"):
        r = subprocess.run([BTFD, "--socket", str(tmp_path / "s.sock"), "--worker-threads", bad],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--worker-threads" in r.stderr and "Traceback" not in r.stderr
    with BtfdProcess(tmp_path / "v6", "--metrics-address", "[::1]:0") as d:
        assert d.metrics_url.startswith("http://[::1]:")
        assert _metric(d.metrics_url, "btfd_spec_types", spec="vmlinux") > 0


def test_worker_threads_bound_the_daemons_threads(tmp_path: Path, kernel_vmlinux: Path) -> None:
    spec = Spec(kernel_vmlinux.read_bytes())
    names = sorted({t.name for t in spec.types(Kind.STRUCT) if t.name})[:40]
    with BtfdProcess(tmp_path / "w", "--worker-threads", "3", "--metrics-address", "off") as d:
        idle = len(os.listdir(f"/proc/{d.proc.pid}/task"))
        stub = d.stub()
        # 40 uncached deep lookups at once: more than enough to want more threads than 3
        futs = [stub.LookupType.future(pb.LookupTypeRequest(name=n, kind=pb.KIND_STRUCT, depth=3))
                for n in names]
        peak = idle
        while not all(f.done() for f in futs):
            peak = max(peak, len(os.listdir(f"/proc/{d.proc.pid}/task")))
            time.sleep(0.01)
        assert all(f.result().types for f in futs)
        assert idle + 1 <= peak <= idle + 3, (idle, peak)


def test_sigterm_before_ready_exits_cleanly(tmp_path: Path) -> None:
    # several big specs to open: start-up takes a while after the "starting" line
    args = []
    for i, b in enumerate(["vmlinux-6.1.0-56-amd64", "vmlinux-6.18-amd64", "vmlinux-6.1.0-56-arm64"]):
        p = tmp_path / f"{i}.btf"
        p.write_bytes(blob(b))
        args += ["--btf", f"k{i}={p}"]
    d = BtfdProcess(tmp_path / "d", *args, "--metrics-address", "off", wait=False)
    d._log = open(d.log_path, "ab")
    d.proc = subprocess.Popen(d.args, stdout=d._log, stderr=subprocess.STDOUT, env=d.env)
    try:
        _eventually(lambda: "btfd starting" in d.log(), "start-up began")
        d.signal(signal.SIGTERM)
        assert d.proc.wait(60) == 0, d.log()
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d._log.close()
    assert "Traceback" not in d.log() and "SIGTERM" in d.log()


def test_fd_line_over_the_limit_with_its_newline(kernel_daemon) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.connect(kernel_daemon.fd_socket)
    s.sendall(b"v" * 5000 + b"\n")  # the newline arrives after the limit, in the same line
    msg, fds, _, _ = socket.recv_fds(s, 4096, 1)
    s.close()
    assert json.loads(msg)["code"] == "INVALID_ARGUMENT" and not fds
