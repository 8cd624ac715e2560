"""The metrics btfd adds for operators: one metric per memory quantity (summable), the standard
process_* series (also under the unit's ProcSubset=pid, reproduced here with a /proc mounted
subset=pid in a mount namespace), btfd_build_info; and the hint when the metrics port is taken."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from btfd import __version__

BTFD = str(Path(sys.executable).with_name("btfd"))


def _scrape(cmd: list[str], log: Path) -> dict[str, float]:
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "ready:" not in log.read_text():
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        m = re.search(r"metrics on (http://\S+)", log.read_text())
        assert m, log.read_text()
        text = urllib.request.urlopen(m.group(1), timeout=10).read().decode()
    finally:
        p.terminate()
        p.wait(timeout=30)
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.mark.parametrize("subset_pid", [False, True])
def test_memory_process_and_build_metrics(tmp_path: Path, kernel_vmlinux: Path, subset_pid: bool) -> None:
    sock = tmp_path / "btfd.sock"
    cmd = [BTFD, "--socket", str(sock), "--metrics-address", "127.0.0.1:0"]
    if subset_pid:  # what systemd's ProcSubset=pid gives the process: no /proc/stat
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               'mount -t proc -o subset=pid proc /proc && test ! -e /proc/stat && exec "$@"', "sh", *cmd]
    before = time.time()
    m = _scrape(cmd, tmp_path / "log")
    uss, pss, rss = (m[f"btfd_memory_{k}_bytes"] for k in ("uss", "pss", "rss"))
    assert 0 < uss <= pss <= rss and m["btfd_memory_anonymous_bytes"] > 0
    assert not any(k.startswith("btfd_memory_bytes") for k in m)  # no overlapping series under one name
    assert 3 <= m["process_open_fds"] < m["process_max_fds"]
    assert m["process_cpu_seconds_total"] > 0 and m["process_resident_memory_bytes"] > 0
    assert before - 30 < m["process_start_time_seconds"] <= time.time()
    [build] = [k for k in m if k.startswith("btfd_build_info{")]
    assert f'version="{__version__}"' in build and m[build] == 1
    assert 'spec="vmlinux"' in next(k for k in m if k.startswith("btfd_spec_mmap_refused{"))


def test_a_taken_metrics_port_says_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([BTFD, "--socket", str(tmp_path / "b.sock"), "--metrics-address", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}: the port is in use (another btfd already running?)" in r.stderr
    assert "--metrics-address 127.0.0.1:0" in r.stderr and "--metrics-address off" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "b.sock").exists()
