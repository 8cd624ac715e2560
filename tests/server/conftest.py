"""Start the real btfd as a subprocess on sockets under a temporary directory.

``BtfdProcess`` is reusable from other test packages:

    with BtfdProcess(tmp_path, "--btf", str(blob_file)) as d:
        stub = d.stub()              # btfd.v1 Btf stub over the real Unix socket
        d.fd_socket                  # the fd-passing socket path
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from btfd.v1 import btfd_pb2_grpc

BTFD = str(Path(sys.executable).with_name("btfd"))

# A peer of the fd socket: connect to argv[1], ask for vmlinux, print the answer and how many
# fds came with it (run under setpriv as another uid/gid, see as_user).
FD_PEER = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"vmlinux\\n")
msg, fds, _, _ = socket.recv_fds(s, 4096, 1)
print(json.dumps({"answer": json.loads(msg), "fds": len(fds)}))
"""


def as_user(uid: int, gid: int, groups: list[int] | None, *cmd: str) -> list[str]:
    """``cmd`` run as ``uid``/``gid`` with exactly ``groups`` as supplementary groups and no
    capabilities (setpriv; the tests run as root)."""
    ids = ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", *ids, "--inh-caps=-all", *cmd]


def fd_request(fd_socket: str, *prefix: str) -> dict[str, Any]:
    """One fd request from a separate process (``prefix``: e.g. :func:`as_user`'s command)."""
    r = subprocess.run([*prefix, sys.executable, "-c", FD_PEER, fd_socket], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


class BtfdProcess:
    """A btfd subprocess. ``extra`` are command-line arguments; metrics are on an ephemeral
    port unless ``--metrics-address`` is given."""

    def __init__(self, workdir: Path, *extra: str, env: dict[str, str] | None = None,
                 wait: bool = True) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(self.dir / "btfd.sock")
        self.fd_socket = self.socket + ".fd"
        self.log_path = self.dir / "btfd.log"
        args = [BTFD, "--socket", self.socket, "--log-level", "debug"]
        if "--metrics-address" not in extra:
            args += ["--metrics-address", "127.0.0.1:0"]
        self.args = args + list(extra)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._channels: list[grpc.Channel] = []
        if wait:
            self.start()

    def start(self) -> BtfdProcess:
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()
        self._log = open(self.log_path, "ab")
        start_at = self._log.tell()
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"btfd exited with {self.proc.returncode}:\n{self.log()}")
            if "ready:" in self.log()[start_at:]:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"btfd did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def metrics_url(self) -> str:
        m = re.search(r"metrics on (http://\S+)", self.log())
        assert m, self.log()
        return m.group(1)

    def channel(self) -> grpc.Channel:
        ch = grpc.insecure_channel(f"unix:{self.socket}")
        self._channels.append(ch)
        return ch

    def stub(self) -> Any:
        return btfd_pb2_grpc.BtfStub(self.channel())

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        for ch in self._channels:
            ch.close()
        self._channels.clear()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> BtfdProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def kernel_daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path) -> Any:
    """btfd serving this machine's /sys/kernel/btf/vmlinux, plus the corpus' 6.1 amd64
    vmlinux as the extra spec ``fleet-6.1``."""
    from tests.conftest import blob

    d = tmp_path_factory.mktemp("kd")
    extra = d / "vmlinux-6.1.btf"
    extra.write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    with BtfdProcess(d, "--btf", f"fleet-6.1={extra}") as proc:
        yield proc


def btfhub_dir(tmp: Path, data: bytes, *, packed: bool = True) -> tuple[Path, Path]:
    """(a sysfs stand-in without BTF, a btfhub-layout directory holding ``data`` as this
    kernel's release: ``<release>.btf.tar.xz`` when packed, else ``<release>.btf``)."""
    nosys = tmp / "sys-without-btf"
    nosys.mkdir()
    hub = tmp / "btfhub"
    hub.mkdir()
    release = os.uname().release
    if not packed:
        (hub / f"{release}.btf").write_bytes(data)
        return nosys, hub
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        info = tarfile.TarInfo(f"{release}.btf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (hub / f"{release}.btf.tar.xz").write_bytes(buf.getvalue())
    return nosys, hub
