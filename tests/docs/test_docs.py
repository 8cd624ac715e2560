"""The commands README.md and docs/OPERATIONS.md show, run as a reader would run them, so the
docs stay true.

Every line of every ``sh`` block is either run (a daemon started by the README's own
``make run``; btfctl from ``.venv/bin``, as the README's ``export PATH`` line puts it first;
a scratch directory with a ``prog.bpf.o``) or listed in :data:`COVERED` with the test that
exercises it instead (installing into the system, systemd as PID 1) and why. A command in the
docs that is neither fails this test. The ``python`` blocks run too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "OPERATIONS.md"]
OBJ = ROOT / "tests" / "data" / "core" / "objs" / "k_task_fields.bpf.o"

#: Commands not run here, each with what runs it instead.
COVERED = {
    r"make test": "the suite itself",
    r"export PATH=.*": "done by this test: PATH starts with the checkout's .venv/bin",
    r"make install PREFIX=/usr/local": "tests/install/test_install.py::test_make_install_puts_everything_in_its_place "
                                       "(with DESTDIR, not into this machine's /usr/local)",
    r"make wheel": "tests/install/test_install.py::test_the_wheels_install_into_a_fresh_venv",
    r"python3 -m venv /tmp/btfd-venv && .*": "tests/install/test_install.py::test_the_wheels_install_into_a_fresh_venv",
    r"/tmp/btfd-venv/bin/btfctl --version": "tests/install/test_install.py::test_the_wheels_install_into_a_fresh_venv",
    r"pip install (\./clients/python|'\./clients/python\[grpc\]')":
        "tests/install/test_install.py::test_the_client_distribution_installs_on_its_own (a fresh venv; "
        "here it would replace the dev venv's editable install)",
    r"systemd-sysusers|systemctl .*|usermod .*": "needs systemd as PID 1 and changes the machine's users; the "
                                                "units are verified by tests/ops/test_deploy.py, the install "
                                                "layout by tests/install/test_install.py",
}


#: Exit codes other than 0 that a documented command must have here, and why.
EXPECT = {
    # prog.bpf.o (the corpus's k_task_fields) has one poisoned relocation on this kernel: the
    # line above (no --fail-on) exits 0, the CI switch turns the poison into exit 1
    "btfctl core prog.bpf.o --fail-on poison": 1,
}


def _blocks(path: Path, lang: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each fenced block of ``lang`` (indented ones too)."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if m and m.group(2) == lang:
            indent = len(m.group(1))
            start = i + 1
            i += 1
            body = []
            while not re.match(r"^\s*```\s*$", lines[i]):
                body.append(lines[i][indent:])
                i += 1
            yield start + 1, "\n".join(body)
        i += 1


def commands() -> list[tuple[str, str]]:
    """(where, command) of every command line of every sh block, comments stripped."""
    out = []
    for path in DOCS:
        for lineno, body in _blocks(path, "sh"):
            for k, line in enumerate(body.splitlines()):
                cmd = re.sub(r"\s+#(\s.*)?$", "", line).strip()
                if cmd and not cmd.startswith("#"):
                    out.append((f"{path.name}:{lineno + k}", cmd))
    return out


def _covered(cmd: str) -> str | None:
    for pattern, why in COVERED.items():
        if re.fullmatch(pattern, cmd):
            return why
    return None


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The README's `make run`, on a socket of its own (SOCKET, METRICS: the Makefile's
    variables, from the environment) so that it can run beside anything else."""
    d = tmp_path_factory.mktemp("make-run")
    sock = str(d / "btfd.sock")
    env = {**os.environ, "SOCKET": sock, "METRICS": "127.0.0.1:0"}
    log = open(d / "log", "w+")
    p = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "ready:" not in (d / "log").read_text():
            assert p.poll() is None and time.monotonic() < deadline, (d / "log").read_text()
            time.sleep(0.1)
        text = (d / "log").read_text()
        assert ".venv/bin/btfctl lookup task_struct" in text and f"serving this machine's BTF on {sock}" in text
        assert f"export BTFD_SOCKET={sock}" in text  # a SOCKET of its own: it says how to reach it
        path = f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
        yield {**{k: v for k, v in os.environ.items() if k not in ("SOCKET", "METRICS")},
               "PATH": path, "BTFD_SOCKET": sock}
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=60)
        log.close()


def test_every_documented_command_is_run_or_covered(make_run: dict[str, str], tmp_path: Path) -> None:
    scratch = tmp_path / "work"
    scratch.mkdir()
    shutil.copy(OBJ, scratch / "prog.bpf.o")
    ran = []
    for where, cmd in commands():
        if cmd == "make run" or _covered(cmd):
            continue
        # lines that start with a command a user runs from the checkout run there
        cwd = ROOT if cmd.startswith("make ") else scratch
        r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=make_run, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == EXPECT.get(cmd, 0), (where, cmd, r.stdout[-2000:], r.stderr[-2000:])
        assert r.stdout.strip() or "-o " in cmd, (where, cmd, "printed nothing")
        assert "Traceback" not in r.stderr and "Broken pipe" not in r.stderr, (where, cmd, r.stderr)
        ran.append(cmd)
    assert len(ran) >= 18 and set(EXPECT) <= set(ran), ran
    # what the -o commands wrote
    assert (scratch / "vmlinux.h").read_text().startswith("#ifndef __VMLINUX_H__")
    assert (scratch / "header.bin").read_bytes()[:2] == b"\x9f\xeb"
    assert (scratch / "min.btf").stat().st_size > 0


def test_every_not_run_command_is_still_real() -> None:
    """The COVERED entries match commands that are in the docs (no stale entry), and the tests
    they name exist."""
    cmds = [c for _, c in commands()]
    for pattern, why in COVERED.items():
        assert any(re.fullmatch(pattern, c) for c in cmds), f"no documented command matches {pattern!r}"
        for ref in re.findall(r"(tests/\S+\.py)(?:::(\w+))?", why):
            f = ROOT / ref[0]
            assert f.is_file(), ref
            if ref[1]:
                assert f"def {ref[1]}(" in f.read_text(), ref


def test_python_blocks_run(make_run: dict[str, str], tmp_path: Path) -> None:
    blocks = [(p.name, n, b) for p in DOCS for n, b in _blocks(p, "python")]
    assert len(blocks) >= 2
    for name, lineno, code in blocks:
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=make_run, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip(), (name, lineno, r.stderr)
