"""btfctl's failures: usage errors, unreachable daemons told apart, the advertised fd socket,
output files, and what the gRPC path imports. Against real daemons (and real sockets)."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from btfd.btf import Kind, Spec
from tests.conftest import blob
from tests.server.conftest import BtfdProcess

BTFCTL = str(Path(sys.executable).with_name("btfctl"))


def run(*args: str, env: dict[str, str] | None = None, user: bool = False,
        stdout: int | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [BTFCTL, *args]
    if user:  # as nobody, without root's groups
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=stdout is None, stdout=stdout,
                          stderr=subprocess.PIPE if stdout is not None else None, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def open_dir() -> Iterator[Path]:
    """A directory anyone may traverse (pytest's tmp dirs are 0700), so that permissions are
    the socket's own."""
    d = Path(tempfile.mkdtemp(prefix="btfctl-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() else p.rmdir()
    d.rmdir()


@pytest.mark.parametrize("args,what", [
    (("lookup", "--id", "-1"), "--id: must not be negative"),
    (("lookup", "task_struct", "--depth", "-1"), "--depth: must not be negative"),
    (("lookup", "--id", str(1 << 32)), "--id: too large"),
    (("list", "--limit", "-1"), "--limit: must not be negative"),
    (("raw", "--offset", "-1", "--length", "1"), "--offset: must not be negative"),
    (("--timeout", "0", "info"), "--timeout: must be a positive number"),
    (("--timeout", "-1", "info"), "--timeout: must be a positive number"),
    (("--timeout", "nan", "info"), "--timeout: must be a positive number"),
    (("lookup", "--id", "5", "--kind", "struct"), "--kind applies to a NAME"),
])
def test_usage_errors_exit_2_without_traceback(daemon, args: tuple[str, ...], what: str) -> None:
    r = run("--socket", daemon.socket, *args)
    assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_raw_output_file_errors_and_terminal(daemon, kernel_vmlinux: Path) -> None:
    r = run("--socket", daemon.socket, "raw", "--offset", "0", "--length", "10", "-o", "/nonexistent/x")
    assert r.returncode == 2 and "cannot write /nonexistent/x" in r.stderr and "Traceback" not in r.stderr
    # stdout a terminal: refused (binary would garble it), nothing written to it
    master, slave = pty.openpty()
    try:
        r = run("--socket", daemon.socket, "raw", "--offset", "0", "--length", "10", stdout=slave)
        assert r.returncode == 2 and "terminal" in r.stderr, r.stderr
        os.set_blocking(master, False)
        try:
            assert os.read(master, 100) == b""
        except BlockingIOError:
            pass
    finally:
        os.close(master)
        os.close(slave)
    r = subprocess.run([BTFCTL, "--socket", daemon.socket, "raw", "--offset", "0", "--length", "10"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == kernel_vmlinux.read_bytes()[:10]


def test_not_running_is_fast_and_says_so(tmp_path: Path) -> None:
    sock = str(tmp_path / "none.sock")
    for args in (("lookup", "task_struct"), ("health",), ("fd",), ("dump",), ("list",),
                 ("lookup", "task_struct", "--format", "tree")):
        r = run("--socket", sock, *args)
        assert r.returncode == 3, (args, r.stderr)
        assert f"btfd is not running at {sock} (no such socket)" in r.stderr or \
            f"btfd is not running at {sock}.fd (no such socket)" in r.stderr, (args, r.stderr)
        assert "start it with: btfd --socket " + sock in r.stderr and "Traceback" not in r.stderr
    # a stale socket file, nobody listening
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.close()
    r = run("--socket", sock, "info")
    assert r.returncode == 3 and "connection refused" in r.stderr, r.stderr
    # a regular file where the socket should be
    f = tmp_path / "plain"
    f.write_text("x")
    for args in (("info",), ("fd", "--fd-socket", str(f))):
        r = run("--socket", str(f), *args)
        assert r.returncode == 3 and f"{f} is not a socket" in r.stderr, r.stderr


def test_wait_picks_up_a_daemon_that_starts_later(tmp_path: Path, kernel_vmlinux: Path) -> None:
    d = BtfdProcess(tmp_path, "--metrics-address", "off", wait=False)
    th = threading.Thread(target=lambda: (time.sleep(1.0), d.start()))
    th.start()
    try:
        r = run("--socket", d.socket, "--wait", "--timeout", "60", "lookup", "list_head", "--kind", "struct")
        th.join()
        assert r.returncode == 0 and r.stdout.startswith("struct list_head {"), r.stderr
    finally:
        th.join()
        d.stop()


def test_no_answer_within_timeout(tmp_path: Path) -> None:
    """A socket that accepts connections and never answers: 'did not answer within'."""
    path = str(tmp_path / "mute.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                pass

    th = threading.Thread(target=accept)
    th.start()
    try:
        for args in (("info",), ("fd", "--fd-socket", path)):
            r = run("--socket", path, "--timeout", "1", *args)
            assert r.returncode == 3 and f"btfd at {path} did not answer within 1 s" in r.stderr, r.stderr
            assert "Traceback" not in r.stderr
    finally:
        stop.set()
        th.join()
        for c in held:
            c.close()
        srv.close()


def test_permission_denied_says_which_socket_and_what_to_do(open_dir: Path, kernel_vmlinux: Path) -> None:
    d = open_dir / "perm"
    with BtfdProcess(d, "--metrics-address", "off", "--socket-mode", "0600"):
        d.chmod(0o755)
        sock = str(d / "btfd.sock")
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        for args, where in ((("lookup", "task_struct"), sock), (("health",), sock),
                            (("fd",), sock + ".fd"), (("dump",), sock + ".fd")):
            r = run("--socket", sock, *args, user=True)
            assert r.returncode == 3, (args, r.stderr)
            assert f"cannot connect to {where}: permission denied (owner root:root, mode 0600)" in r.stderr, r.stderr
            assert "add your user to the socket's group" in r.stderr and "Traceback" not in r.stderr
            assert "not running" not in r.stderr


def test_the_advertised_fd_socket_is_used(tmp_path: Path, kernel_vmlinux: Path, bpftool: str) -> None:
    other = str(tmp_path / "elsewhere.fd")
    with BtfdProcess(tmp_path / "d", "--metrics-address", "off", "--fd-socket", other) as d:
        assert not os.path.exists(d.socket + ".fd")
        r = run("--socket", d.socket, "fd")
        assert r.returncode == 0 and f"fd socket {other}" in r.stdout, r.stderr
        r = run("--socket", d.socket, "lookup", "list_head", "--kind", "struct", "--format", "tree")
        assert r.returncode == 0 and "size: 16" in r.stdout, r.stderr
        r = run("--socket", d.socket, "dump")
        want = subprocess.run([bpftool, "btf", "dump", "file", str(kernel_vmlinux)], capture_output=True,
                              text=True, check=True).stdout
        assert r.returncode == 0 and r.stdout == want
        # explicit, and from the environment
        assert run("--socket", d.socket, "--fd-socket", other, "fd").returncode == 0
        assert run("--socket", d.socket, "fd", env={"BTFD_FD_SOCKET": other}).returncode == 0
        r = run("--socket", d.socket, "fd", env={"BTFD_FD_SOCKET": str(tmp_path / "no.fd")})
        assert r.returncode == 3 and "no.fd" in r.stderr


def test_missing_input_file_is_usage_not_unreachable(tmp_path: Path) -> None:
    r = run("lookup", "--file", str(tmp_path / "missing.btf"), "x")
    assert r.returncode == 2 and "missing.btf" in r.stderr and "not running" not in r.stderr, r.stderr


def test_local_json_is_the_daemons_json(daemon, tmp_path: Path) -> None:
    f = tmp_path / "old.btf"
    f.write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    old = Spec(blob("vmlinux-6.1.0-56-amd64"))
    names = ["task_struct", "sk_buff", "bpf_func_id", "__u32", "vfs_read"]
    names += [next(t.name for t in old.types(k) if t.name) for k in (Kind.VAR, Kind.DATASEC, Kind.FLOAT)]
    for name in names:
        remote = run("--socket", daemon.socket, "lookup", name, "--spec", "fleet-6.1", "--format", "json")
        local = run("lookup", name, "--file", str(f), "--format", "json")
        assert remote.returncode == local.returncode == 0, (name, remote.stderr, local.stderr)
        rr = [json.loads(x) for x in remote.stdout.splitlines()]
        ll = [json.loads(x) for x in local.stdout.splitlines()]
        assert len(rr) == len(old.find_ids(name)) and rr
        for x in rr + ll:
            x.pop("spec")
        assert ll == rr, name


def _blocks(text: str) -> list[str]:
    return [b.lstrip("\n") + ";\n\n" for b in text.split(";\n\n") if b.strip()]


def test_lookup_depth_in_c_prints_declarations_in_bpftools_order(daemon, bpftool: str,
                                                                 kernel_vmlinux: Path) -> None:
    from btfd.btf.format_c import HEADER

    dump = subprocess.run([bpftool, "btf", "dump", "file", str(kernel_vmlinux), "format", "c"],
                          capture_output=True, text=True, check=True).stdout[len(HEADER):]
    known = set(_blocks(dump))
    spec = Spec(kernel_vmlinux.read_bytes())
    for name, depth in (("list_head", "1"), ("task_struct", "1"), ("sk_buff", "2")):
        r = run("--socket", daemon.socket, "lookup", name, "--kind", "struct", "--depth", depth)
        assert r.returncode == 0, r.stderr
        got = _blocks(r.stdout)
        assert f"struct {name} {{" in r.stdout
        assert r.stdout == "".join(got)  # nothing but declaration blocks (no bare `void *`)
        assert len(set(got)) == len(got)
        # Each block is bpftool's; a forward declaration may stand where the full dump, which
        # defined the type earlier, needs none.
        unknown = [b for b in got if b not in known and not re.fullmatch(r"(struct|union) \w+;\n\n", b)]
        assert not unknown, unknown[:3]
        # dependency order: a struct embedded by value is defined before its container
        defined: set[str] = set()
        for b in got:
            head = b.split(" {", 1)[0].split("\n", 1)[0]
            if b.startswith(("struct ", "union ")) and " {" in b.split("\n", 1)[0]:
                kw, tname = head.split()[:2]
                t = spec.type(spec.find_ids(tname, Kind.STRUCT if kw == "struct" else Kind.UNION)[0])
                for m in t.members:
                    mt = spec.resolve(m.type)  # through typedefs and modifiers, not pointers
                    while mt.kind == Kind.ARRAY:
                        mt = spec.resolve(mt.type)  # type: ignore[attr-defined]
                    if mt.name and mt.kind in (Kind.STRUCT, Kind.UNION):
                        key = ("struct " if mt.kind == Kind.STRUCT else "union ") + mt.name
                        if any(x.startswith(key + " {") for x in got):
                            assert key in defined, (key, head)
                defined.add(f"{kw} {tname}")


def test_the_grpc_lookup_path_does_not_import_the_btf_library(daemon) -> None:
    code = ("import sys; from btfd.cli import main; "
            f"rc = main(['--socket', {daemon.socket!r}, '--via', 'grpc', 'lookup', 'list_head', '--kind', 'struct']); "
            "print(rc, 'btfd.btf' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "0 False", r.stderr
    assert r.stdout.startswith("struct list_head {")


@pytest.mark.parametrize("argv", [
    ["lookup", "task_struct"], ["lookup", "task_struct", "--depth", "2"], ["lookup", "--id", "7", "--format", "json"],
    ["lookup", "sk_buff", "--format", "tree"], ["lookup", "list_head", "--format", "json", "--depth", "3"],
    ["lookup", "no_such_type_qq"], ["lookup", "--id", "99999999"], ["list", "--kind", "struct", "--match", "bpf_*"],
    ["list", "--match", "task_struct"], ["list", "--limit", "300"], ["list", "--match", "nothing_like_it*"],
    ["raw", "--offset", "0", "--length", "4096"], ["raw", "--offset", "99999999", "--length", "1"],
])
def test_the_fd_path_prints_what_the_grpc_path_prints_without_grpc(daemon, argv: list[str]) -> None:
    """By default btfctl reads a local daemon's spec in-process over the fd socket: same
    stdout, stderr and exit code as over gRPC, and grpc never imported."""
    def run(via: str) -> tuple[subprocess.CompletedProcess[bytes], str]:
        code = ("import sys; from btfd.cli import main; "
                f"rc = main(['--socket', {daemon.socket!r}, '--via', {via!r}, *{argv!r}]); sys.stdout.flush(); "
                "print(rc, 'grpc' in sys.modules, file=sys.stderr)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
        *err, last = r.stderr.decode().strip().splitlines()
        return r, last

    fd, fd_last = run("auto")
    grpc, grpc_last = run("grpc")
    assert fd.stdout == grpc.stdout
    assert fd_last.split()[0] == grpc_last.split()[0]  # the exit code
    assert fd.stderr.decode().splitlines()[:-1] == grpc.stderr.decode().splitlines()[:-1]
    assert fd_last.endswith("False") and grpc_last.endswith("True")

