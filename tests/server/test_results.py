"""Results computed once per node (btfd/server/results.py): the C header of a spec rendered once
and kept in a sealed memfd, CO-RE and minimal-BTF answers kept by content. The library-level
tests drive :class:`Results` directly over real specs; the daemon tests go through a real btfd
over its Unix socket and compare with bpftool."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc

from btfd.btf import Spec
from btfd.btf import types as T
from btfd.btf.format_c import dump_c
from btfd.btf.writer import encode_btf
from btfd.server.registry import SpecEntry
from btfd.server.results import Results, answer_key
from btfd.v1 import btfd_pb2 as pb
from tests.conftest import blob
from tests.server.conftest import BtfdProcess

BTFCTL = str(Path(sys.executable).with_name("btfctl"))
CORE_OBJS = Path(__file__).resolve().parents[1] / "data" / "core" / "objs"


def _entry(name: str, generation: int, blob_name: str) -> SpecEntry:
    return SpecEntry(name, f"<{blob_name}>", generation, spec=Spec(blob(blob_name)))


def _read_fd(fd: int, size: int) -> bytes:
    try:
        assert os.fstat(fd).st_size == size
        return os.pread(fd, size + 1, 0)
    finally:
        os.close(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------------ the caches themselves


def test_answers_evicted_least_recently_used_within_the_byte_budget() -> None:
    r = Results(result_cache_bytes=3 * 1000)
    computed: list[str] = []

    def get(name: str) -> bytes:
        def compute() -> bytes:
            computed.append(name)
            return name.encode() * 700  # 700 bytes + the fixed per-entry charge: 3 fit, 4 do not

        return r.answer(answer_key("T", [name.encode()], (1,), ()), compute)

    for n in "abc":
        assert get(n) == n.encode() * 700
    assert get("a") == b"a" * 700  # a hit, and now the most recently used
    assert computed == ["a", "b", "c"]
    get("d")  # over budget: b (least recently used) goes
    assert r.sizes()["answer"] <= 3 * 1000
    get("a")
    get("c")
    assert computed == ["a", "b", "c", "d"]
    get("b")  # evicted: computed again
    assert computed == ["a", "b", "c", "d", "b"]
    c = r.counts()
    assert c[("answer", "evicted")] == 2  # b, then d (for b's return)
    assert c[("answer", "miss")] == 5 and c[("answer", "hit")] == 3


def test_an_answer_larger_than_the_budget_is_served_not_kept() -> None:
    r = Results(result_cache_bytes=100)
    key = answer_key("T", [b"x"], (1,), ())
    assert r.answer(key, lambda: b"y" * 500) == b"y" * 500
    assert r.sizes()["answer"] == 0
    assert r.answer(key, lambda: b"z") == b"z"  # nothing was kept


def test_concurrent_requests_for_one_key_compute_it_once() -> None:
    r = Results()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def compute() -> bytes:
        calls.append(1)
        started.set()
        release.wait(30)
        return b"answer"

    key = answer_key("T", [b"obj"], (7,), ("opt",))
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(r.answer(key, compute))) for _ in range(4)]
    threads[0].start()
    assert started.wait(30)
    for t in threads[1:]:
        t.start()
    time.sleep(0.05)  # let the others reach the wait (the result does not depend on it)
    release.set()
    for t in threads:
        t.join(30)
    assert out == [b"answer"] * 4 and len(calls) == 1


def test_a_failed_computation_is_not_kept() -> None:
    r = Results()
    key = answer_key("T", [b"bad"], (1,), ())

    def fail() -> bytes:
        raise ValueError("bad object")

    for _ in range(2):
        try:
            r.answer(key, fail)
        except ValueError:
            pass
        else:
            raise AssertionError("the error was swallowed")
    assert r.sizes()["answer"] == 0 and r.counts()[("answer", "miss")] == 2


def test_answer_keys_tell_inputs_specs_and_options_apart() -> None:
    k = answer_key("ResolveCore", [b"ab", b"c"], (1,), (("vmlinux",), "object", False))
    assert k == answer_key("ResolveCore", [b"ab", b"c"], (1,), (("vmlinux",), "object", False))
    assert k != answer_key("ResolveCore", [b"a", b"bc"], (1,), (("vmlinux",), "object", False))
    assert k != answer_key("ResolveCore", [b"ab", b"c"], (2,), (("vmlinux",), "object", False))
    assert k != answer_key("ResolveCore", [b"ab", b"c"], (1,), (("vmlinux",), "object", True))
    assert k != answer_key("MinimizeBtf", [b"ab", b"c"], (1,), (("vmlinux",), "object", False))


def test_c_header_is_the_dump_rendered_once_and_outlives_eviction() -> None:
    a = _entry("a", 1, "synthetic-layout")
    b = _entry("b", 2, "synthetic-enums")
    assert a.spec is not None and b.spec is not None
    text_a = "".join(dump_c(a.spec)).encode()
    text_b = "".join(dump_c(b.spec)).encode()
    renders: list[str] = []

    def render(e: SpecEntry) -> bytes:
        renders.append(e.name)
        assert e.spec is not None
        return "".join(dump_c(e.spec)).encode()

    # Room for the larger of the two, not both.
    r = Results(c_cache_bytes=max(len(text_a), len(text_b)), render=render)
    fd_a, size_a = r.c_header_fd(a)
    fd_a2, _ = r.c_header_fd(a)
    assert renders == ["a"]
    assert fd_a != fd_a2 and os.fstat(fd_a).st_ino == os.fstat(fd_a2).st_ino
    flags = int(re.search(r"flags:\s+(\d+)", Path(f"/proc/self/fdinfo/{fd_a}").read_text()).group(1), 8)  # type: ignore[union-attr]
    assert flags & os.O_ACCMODE == os.O_RDONLY  # a client gets a read-only fd
    assert _read_fd(fd_a2, size_a) == text_a
    fd_b, size_b = r.c_header_fd(b)  # evicts a
    assert _read_fd(fd_b, size_b) == text_b
    assert r.counts()[("c_header", "evicted")] == 1
    assert r.sizes()["c_header"] == len(text_b)
    assert _read_fd(fd_a, size_a) == text_a  # handed out before the eviction: still whole
    fd, size = r.c_header_fd(a)
    assert _read_fd(fd, size) == text_a and renders == ["a", "b", "a"]
    r.close()


def test_a_new_generation_never_gets_the_old_header() -> None:
    r = Results()
    old = _entry("module/m", 1, "synthetic-layout")
    new = _entry("module/m", 2, "synthetic-funcs")  # the same name, reloaded with other BTF
    assert new.spec is not None
    fd, size = r.c_header_fd(old)
    os.close(fd)
    fd, size = r.c_header_fd(new)
    assert _read_fd(fd, size) == "".join(dump_c(new.spec)).encode()
    assert r.sizes()["c_header"] == size  # the old generation's header was dropped
    r.close()


def test_c_cache_zero_renders_every_time_and_leaks_no_fd() -> None:
    e = _entry("a", 1, "synthetic-basic_types")
    assert e.spec is not None
    r = Results(c_cache_bytes=0)
    before = _open_fds()
    for _ in range(3):
        fd, size = r.c_header_fd(e)
        assert _read_fd(fd, size) == "".join(dump_c(e.spec)).encode()
    assert _open_fds() == before
    assert r.counts()[("c_header", "miss")] == 3 and r.sizes()["c_header"] == 0


# ------------------------------------------------------------------ through the daemon


def _metric(url: str, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and ",".join(sorted((m.group(2) or "").split(","))) == want:
            return float(m.group(3))
    return 0.0


def _bpftool_c(bpftool: str, path: Path, base: Path | None = None) -> bytes:
    cmd = [bpftool, *(["-B", str(base)] if base else []), "btf", "dump", "file", str(path), "format", "c"]
    return subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout


def _dump_c(stub: Any, spec: str, chunk_size: int = 0) -> bytes:
    chunks = list(stub.DumpC(pb.DumpCRequest(spec=spec, chunk_size=chunk_size), timeout=120))
    data = b"".join(c.data for c in chunks)
    assert all(c.total_size == len(data) for c in chunks)
    assert [c.offset for c in chunks] == [sum(len(x.data) for x in chunks[:i]) for i in range(len(chunks))]
    return data


def test_dumpc_is_bpftools_rendered_once_and_counted(tmp_path: Path, bpftool: str, kernel_vmlinux: Path) -> None:
    want = _bpftool_c(bpftool, kernel_vmlinux)
    with BtfdProcess(tmp_path / "d", "--prerender-c", "vmlinux") as d:
        url = d.metrics_url
        stub = d.stub()
        first = _dump_c(stub, "vmlinux")
        assert first == want
        assert _dump_c(stub, "vmlinux", chunk_size=1) == want
        n = len(list(stub.DumpC(pb.DumpCRequest(spec="vmlinux", chunk_size=1), timeout=120)))
        assert n == -(-len(want) // 65536)  # a tiny chunk size is raised to 64 KiB a message
        cli = subprocess.run([BTFCTL, "--socket", d.socket, "dump", "--format", "c"], capture_output=True,
                             timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout == want
        # One render (at start, --prerender-c), every other request from the memfd.
        assert _metric(url, "btfd_result_cache_total", cache="c_header", result="miss") == 1
        assert _metric(url, "btfd_result_cache_total", cache="c_header", result="hit") >= 4
        assert _metric(url, "btfd_result_cache_bytes", cache="c_header") == len(want)
        assert "rendered vmlinux as C" in d.log()
        try:
            list(stub.DumpC(pb.DumpCRequest(spec="nope"), timeout=30))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("DumpC of an unknown spec succeeded")


def test_resolve_core_and_min_btf_cached_answers_equal_fresh_ones(tmp_path: Path, kernel_vmlinux: Path) -> None:
    obj = (CORE_OBJS / "k_task_fields.bpf.o").read_bytes()
    other = (CORE_OBJS / "k_enums.bpf.o").read_bytes()
    with BtfdProcess(tmp_path / "cached") as d, \
            BtfdProcess(tmp_path / "fresh", "--result-cache-bytes", "0") as f:
        url = d.metrics_url
        stub, fresh = d.stub(), f.stub()
        req = pb.ResolveCoreRequest(object=obj)
        a = stub.ResolveCore(req, timeout=60)
        assert a.results[0].relocations  # a real answer, not an empty one
        b = stub.ResolveCore(req, timeout=60)
        assert a == b == fresh.ResolveCore(req, timeout=60) == fresh.ResolveCore(req, timeout=60)
        assert _metric(url, "btfd_result_cache_total", cache="answer", result="miss") == 1
        assert _metric(url, "btfd_result_cache_total", cache="answer", result="hit") == 1
        # Other options or another object: another answer, computed, never the cached one.
        p = stub.ResolveCore(pb.ResolveCoreRequest(object=obj, want_patched=True), timeout=60)
        assert p.results[0].programs and not a.results[0].programs
        o = stub.ResolveCore(pb.ResolveCoreRequest(object=other), timeout=60)
        assert o == fresh.ResolveCore(pb.ResolveCoreRequest(object=other), timeout=60) != a
        assert _metric(url, "btfd_result_cache_total", cache="answer", result="miss") == 3
        m1 = stub.MinimizeBtf(pb.MinimizeBtfRequest(objects=[obj]), timeout=60)
        m2 = stub.MinimizeBtf(pb.MinimizeBtfRequest(objects=[obj]), timeout=60)
        assert m1 == m2 == fresh.MinimizeBtf(pb.MinimizeBtfRequest(objects=[obj]), timeout=60)
        assert m1.type_count > 0
        assert _metric(url, "btfd_result_cache_total", cache="answer", result="hit") == 2
        assert _metric(url, "btfd_result_cache_bytes", cache="answer") > len(a.SerializeToString())
        assert _metric(f.metrics_url, "btfd_result_cache_bytes", cache="answer") == 0
        # A bad object fails every time (errors are not kept), and the cache still answers.
        for _ in range(2):
            try:
                stub.ResolveCore(pb.ResolveCoreRequest(object=b"\x7fELF not really"), timeout=60)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            else:
                raise AssertionError("a bad object was answered")
        assert stub.ResolveCore(req, timeout=60) == a


def test_a_reloaded_module_never_gets_a_stale_header_or_answer(tmp_path: Path, bpftool: str) -> None:
    sysfs = tmp_path / "sysfs"
    sysfs.mkdir()
    base = sysfs / "vmlinux"
    base.write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    (sysfs / "m").write_bytes(blob("veth-6.1.0-56-amd64"))
    obj = (CORE_OBJS / "k_task_fields.bpf.o").read_bytes()
    with BtfdProcess(tmp_path / "d", "--sysfs-btf-dir", str(sysfs), "--metrics-address", "off",
                     "--module-rescan", "0") as d:
        stub = d.stub()
        veth_h = _dump_c(stub, "module/m")
        assert veth_h == _bpftool_c(bpftool, sysfs / "m", base)
        core_veth = stub.ResolveCore(pb.ResolveCoreRequest(object=obj, spec="module/m"), timeout=60)
        # TYPE_EXISTS (kind 8) of a type only veth has: 1 now, 0 once m is another module.
        exists = pb.ResolveCoreRequest(spec="module/m", records=pb.CoreRecords(
            local_btf=encode_btf([T.Struct(1, "veth_priv", 0, ())]),
            records=[pb.CoreRecord(sec="kprobe/x", insn_off=0, type_id=1, access="0", kind=8)]))
        assert stub.ResolveCore(exists, timeout=60).results[0].relocations[0].new_val == 1
        assert stub.ResolveCore(exists, timeout=60).results[0].relocations[0].new_val == 1  # cached
        # The module is unloaded and another one loaded under the same name.
        new = tmp_path / "m.new"
        new.write_bytes(blob("btrfs-6.1.0-56-amd64"))
        shutil.move(str(new), str(sysfs / "m"))
        d.signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "module rescan: 1 added, 1 removed" not in d.log():
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.05)
        btrfs_h = _dump_c(stub, "module/m")
        assert btrfs_h == _bpftool_c(bpftool, sysfs / "m", base) != veth_h
        core_btrfs = stub.ResolveCore(pb.ResolveCoreRequest(object=obj, spec="module/m"), timeout=60)
        assert stub.ResolveCore(exists, timeout=60).results[0].relocations[0].new_val == 0
        with BtfdProcess(tmp_path / "fresh", "--sysfs-btf-dir", str(sysfs), "--metrics-address", "off",
                         "--result-cache-bytes", "0") as f:
            assert core_btrfs == f.stub().ResolveCore(pb.ResolveCoreRequest(object=obj, spec="module/m"),
                                                      timeout=60)
        # (both kernels' answers are computed over vmlinux 6.1 plus the module: the module's
        # generation is in the key whether or not the answers differ)
        assert core_veth.results[0].spec == core_btrfs.results[0].spec == "module/m"


def test_concurrent_dumpc_of_one_spec_renders_it_once(tmp_path: Path, bpftool: str) -> None:
    path = tmp_path / "fleet.btf"
    path.write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    want = _bpftool_c(bpftool, path)
    with BtfdProcess(tmp_path / "d", "--btf", f"fleet={path}") as d:
        url = d.metrics_url
        got: list[bytes] = []
        stubs = [d.stub() for _ in range(4)]
        threads = [threading.Thread(target=lambda s=s: got.append(_dump_c(s, "fleet"))) for s in stubs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert got == [want] * 4
        assert _metric(url, "btfd_result_cache_total", cache="c_header", result="miss") == 1
        assert _metric(url, "btfd_result_cache_total", cache="c_header", result="hit") == 3
        assert d.log().count("rendered fleet as C") == 1


def test_a_spec_that_cannot_be_rendered_fails_cleanly_and_is_not_kept(tmp_path: Path) -> None:
    bad = tmp_path / "cycle.btf"
    bad.write_bytes(encode_btf([T.Typedef(1, "a", 2), T.Typedef(2, "b", 1)]))  # a typedef cycle
    with BtfdProcess(tmp_path / "d", "--btf", f"cycle={bad}") as d:
        url = d.metrics_url
        stub = d.stub()
        for _ in range(2):  # rendered in a child process each time: errors are not kept
            try:
                list(stub.DumpC(pb.DumpCRequest(spec="cycle"), timeout=60))
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
                assert "rendering cycle as C" in exc.details() and "too deep" in exc.details()
            else:
                raise AssertionError("a cyclic spec was rendered")
        assert _metric(url, "btfd_result_cache_total", cache="c_header", result="miss") == 2
        assert _metric(url, "btfd_result_cache_bytes", cache="c_header") == 0
        assert stub.LookupType(pb.LookupTypeRequest(name="task_struct"), timeout=30).types  # still serving


def test_btfctl_dump_c_without_the_grpc_socket_formats_over_the_fd_socket(tmp_path: Path, bpftool: str) -> None:
    path = tmp_path / "layout.btf"
    path.write_bytes(blob("synthetic-layout"))
    want = _bpftool_c(bpftool, path)
    with BtfdProcess(tmp_path / "d", "--btf", f"small={path}", "--metrics-address", "off") as d:
        via_grpc = subprocess.run([BTFCTL, "--socket", d.socket, "dump", "--format", "c", "--spec", "small"],
                                  capture_output=True, timeout=120)
        assert via_grpc.returncode == 0 and via_grpc.stdout == want, via_grpc.stderr
        # Only the fd socket is usable (as for a user allowed on it alone): same bytes.
        fd_only = subprocess.run([BTFCTL, "--socket", str(tmp_path / "nothing.sock"), "--fd-socket", d.fd_socket,
                                  "dump", "--format", "c", "--spec", "small"], capture_output=True, timeout=120)
        assert fd_only.returncode == 0 and fd_only.stdout == want, fd_only.stderr
        assert d.log().count("rendered small as C") == 1  # the second one was formatted by btfctl
