"""The install routes, each from a clean environment (docs/OPERATIONS.md, "Installing"):

- the client distribution alone (clients/python) in a fresh venv: the BTF library and the fd
  path with no dependency at all, grpc not even importable until the gRPC client is used; then
  its ``[grpc]`` extra;
- both wheels (``make wheel``) in a fresh venv: console scripts, a daemon from that venv
  answering btfctl from that venv;
- ``make install PREFIX=/usr/local DESTDIR=...``: launchers, units with the matching
  ``ExecStart``, sysusers, docs, man pages and completion in their FHS places, working from the
  staging tree.

Packages come from the pip cache or PyPI (a package registry); nothing from any other index.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.server.conftest import BtfdProcess

ROOT = Path(__file__).resolve().parents[2]
PIP_ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def make_venv(path: Path) -> Path:
    """A fresh venv (no system site-packages, no pip upgrade); returns its bin directory."""
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin"


def pip(bin_: Path, *args: str, cwd: Path = ROOT) -> None:
    r = subprocess.run([str(bin_ / "python"), "-m", "pip", "install", "-q", *args], cwd=cwd, env=PIP_ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def py(bin_: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    # cwd outside the checkout: the checkout's btfd/ must not be importable by accident
    return subprocess.run([str(bin_ / "python"), "-c", code], capture_output=True, text=True, timeout=120,
                          cwd="/", env={**os.environ, **env})


def dists(bin_: Path) -> set[str]:
    r = py(bin_, "import importlib.metadata as m, json; "
                 "print(json.dumps(sorted({d.metadata['Name'].lower().replace('_', '-') for d in m.distributions()})))")
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout)) - {"pip", "setuptools"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path):  # type: ignore[no-untyped-def]
    with BtfdProcess(tmp_path_factory.mktemp("install"), "--metrics-address", "off") as d:
        yield d


AGENT = """
import sys
from btfd_client import open_shared, Kind
with open_shared("vmlinux", socket_path=sys.argv[1]) as spec:
    t = spec.find_one("task_struct", Kind.STRUCT)
    print(t.size, "grpc" in sys.modules, any(m.startswith("google") for m in sys.modules))
try:
    from btfd_client import Client
except ImportError as exc:
    print("ImportError:", exc)
"""


def test_the_client_distribution_installs_on_its_own(tmp_path: Path, daemon, kernel_vmlinux: Path) -> None:
    from btfd.btf import Kind, Spec

    want = Spec(kernel_vmlinux.read_bytes()).find_one("task_struct", Kind.STRUCT).size
    bin_ = make_venv(tmp_path / "agent")
    pip(bin_, "./clients/python")
    assert dists(bin_) == {"btfd-client"}  # the BTF library and the fd path: nothing else
    r = subprocess.run([str(bin_ / "python"), "-c", AGENT, daemon.socket], capture_output=True, text=True,
                       timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == f"{want} False False"  # neither grpc nor protobuf imported (nor installed)
    assert second.startswith("ImportError: btfd_client.Client is the gRPC client") and "[grpc]" in second
    # the daemon's half is not there
    assert py(bin_, "import btfd.server").returncode != 0
    # the gRPC client: the extra adds grpcio and protobuf, and only what they need
    pip(bin_, "./clients/python[grpc]")
    assert dists(bin_) == {"btfd-client", "grpcio", "grpcio-health-checking", "protobuf", "typing-extensions"}
    code = ("import sys; from btfd_client import Client; c = Client(sys.argv[1]); "
            "print(c.lookup_type('task_struct', kind=4).types[0].size, c.health())")
    r = subprocess.run([str(bin_ / "python"), "-c", code, daemon.socket], capture_output=True, text=True,
                       timeout=120, cwd="/")
    assert r.returncode == 0 and r.stdout.split() == [str(want), "True"], r.stderr


def test_the_wheels_install_into_a_fresh_venv(tmp_path: Path, kernel_vmlinux: Path) -> None:
    dist = tmp_path / "dist"
    r = subprocess.run(["make", "-s", "wheel", f"DIST={dist}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = sorted(p.name for p in dist.iterdir())
    assert wheels == ["btfd-0.1.0-py3-none-any.whl", "btfd_client-0.1.0-py3-none-any.whl"]
    # each file of the btfd package is in exactly one wheel, and every one is in one
    names = {w: {n for n in zipfile.ZipFile(dist / w).namelist() if n.startswith("btfd/")} for w in wheels}
    a, b = names.values()
    assert not a & b
    tracked = subprocess.run(["git", "ls-files", "btfd"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert a | b == set(tracked), set(tracked) ^ (a | b)
    bin_ = make_venv(tmp_path / "v")
    pip(bin_, *(str(dist / w) for w in wheels))
    from btfd import __version__

    for tool in ("btfd", "btfctl"):
        r = subprocess.run([str(bin_ / tool), "--version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == f"{tool} {__version__}", r
    # the daemon and btfctl from that venv, talking to each other
    sock = tmp_path / "s" / "btfd.sock"
    proc = subprocess.Popen([str(bin_ / "btfd"), "--socket", str(sock), "--metrics-address", "off"],
                            stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "ready:" in line:
                break
        else:
            pytest.fail("btfd from the wheel did not start")
        r = subprocess.run([str(bin_ / "btfctl"), "--socket", str(sock), "lookup", "list_head", "--kind", "struct"],
                           capture_output=True, text=True, timeout=60, cwd="/")
        assert r.returncode == 0 and r.stdout.startswith("struct list_head {"), r.stderr
        r = subprocess.run([str(bin_ / "btfctl"), "--socket", str(sock), "core",
                            str(ROOT / "tests/data/core/objs/k_task_fields.bpf.o"), "--format", "json"],
                           capture_output=True, text=True, timeout=60, cwd="/")
        assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0])["status"] == "ok", r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()


def test_the_packaging_split_is_one_list() -> None:
    """The files btfd-client ships are exactly those the daemon's wheel leaves out."""
    src = (ROOT / "clients/python/hatch_build.py").read_text()
    shipped = re.search(r"SHIPPED = \((.*?)\)", src, re.S)
    assert shipped
    client = {f"/btfd/{x}" for x in re.findall(r'"([^"]+)"', shipped.group(1))}
    daemon = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]
                 ["wheel"]["exclude"])
    assert client == daemon
    deps = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())["project"]
    assert deps["dependencies"] == []


def test_the_dev_venv_sees_one_btfd_package() -> None:
    """Editable installs of both distributions: btfd is the checkout's directory, whole (no
    copy of the client's half in site-packages shadowing it)."""
    import btfd_client

    import btfd

    assert list(btfd.__path__) == [str(ROOT / "btfd")]
    assert Path(btfd_client.__file__).parent == ROOT / "clients/python/btfd_client"


def test_make_install_puts_everything_in_its_place(tmp_path: Path, kernel_vmlinux: Path) -> None:
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "install", "PREFIX=/usr/local", f"DESTDIR={dest}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    pre = dest / "usr/local"
    want = ["bin/btfd", "bin/btfctl", "lib/systemd/system/btfd.service", "lib/systemd/system/btfd-fd.socket",
            "lib/sysusers.d/btfd.conf", "share/doc/btfd/README.md", "share/doc/btfd/OPERATIONS.md",
            "share/doc/btfd/JSON.md", "share/doc/btfd/PROTOCOL.md",
            "share/doc/btfd/examples/no-metrics.conf.example", "share/doc/btfd/examples/allow-lists.conf.example",
            "share/man/man1/btfctl.1", "share/man/man8/btfd.8",
            "share/bash-completion/completions/btfctl", "share/bash-completion/completions/btfd",
            "share/zsh/site-functions/_btfctl", "share/zsh/site-functions/_btfd"]
    missing = [w for w in want if not (pre / w).is_file()]
    assert not missing
    # ExecStart= of the unit and of the drop-in examples is the installed launcher
    for unit in ("lib/systemd/system/btfd.service", "share/doc/btfd/examples/no-metrics.conf.example",
                 "share/doc/btfd/examples/allow-lists.conf.example"):
        starts = [x.split("=", 1)[1].split()[0] for x in (pre / unit).read_text().splitlines()
                  if x.startswith("ExecStart=") and x != "ExecStart="]
        assert starts == ["/usr/local/bin/btfd"], (unit, starts)
    assert "file:/usr/local/share/doc/btfd/OPERATIONS.md" in (pre / "lib/systemd/system/btfd.service").read_text()
    # the launchers run from the staging tree as they will from /usr/local
    from btfd import __version__

    for tool in ("btfd", "btfctl"):
        assert os.access(pre / "bin" / tool, os.X_OK)
        r = subprocess.run([str(pre / "bin" / tool), "--version"], capture_output=True, text=True, timeout=60,
                           cwd="/", env={**os.environ, "PYTHONPATH": str(ROOT)})  # -I ignores it
        assert r.returncode == 0 and r.stdout.strip() == f"{tool} {__version__}", r
    code = "import btfd, sys; print(btfd.__file__)"
    head = (pre / "bin/btfd").read_text().splitlines()[0]
    r = subprocess.run([head[2:].split()[0], "-I", "-c", f"import sys; sys.path.insert(0, "
                        f"{str(pre / 'lib/btfd/python')!r}); {code}"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip().startswith(str(pre / "lib/btfd/python/btfd/")), r
    sock = tmp_path / "s" / "btfd.sock"
    proc = subprocess.Popen([str(pre / "bin/btfd"), "--socket", str(sock), "--metrics-address", "off"],
                            stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "ready:" in line:
                break
        else:
            pytest.fail("the installed btfd did not start")
        r = subprocess.run([str(pre / "bin/btfctl"), "health", "--socket", str(sock)], capture_output=True,
                           text=True, timeout=60, cwd="/")
        assert r.returncode == 0 and r.stdout == "SERVING\n", r.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    # the man pages render without a warning and document every option of the parsers
    from btfd.cli._gen import man, options, parser_for, subcommands

    for prog, page in (("btfctl", "share/man/man1/btfctl.1"), ("btfd", "share/man/man8/btfd.8")):
        text = (pre / page).read_text()
        assert text == man(prog)  # the installed page is what the parser generates today
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=text, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        rendered = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou"], input=text, capture_output=True,
                                  text=True, timeout=60, env={**os.environ, "MANWIDTH": "200"}).stdout
        flat = " ".join(rendered.replace("\u2010", "-").split())
        p = parser_for(prog)
        parsers = [p, *subcommands(p).values()]
        for sp in parsers:
            for a in options(sp):
                assert a.option_strings[-1] in flat, (prog, a.option_strings)
        for name in subcommands(p):
            assert name in flat
    # shell completion: valid scripts, and bash completes subcommands, options and choices
    for shell, f in (("bash", "share/bash-completion/completions/btfctl"), ("bash", "share/bash-completion/completions/btfd"),
                     ("zsh", "share/zsh/site-functions/_btfctl"), ("zsh", "share/zsh/site-functions/_btfd")):
        r = subprocess.run([shell, "-n", str(pre / f)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (f, r.stderr)
    comp = pre / "share/bash-completion/completions/btfctl"

    def complete(*words: str) -> list[str]:
        script = (f"source {comp}; COMP_WORDS=({' '.join(repr(w) for w in ('btfctl', *words))}); "
                  f"COMP_CWORD={len(words)}; _btfctl_complete; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
        return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60).stdout.split()

    assert complete("mi") == ["min-btf"]
    assert complete("lookup", "--fo") == ["--format"]
    assert complete("lookup", "--format", "") == ["c", "json", "tree"]
    assert complete("core", "x.o", "--fail-on", "") == ["error", "poison"]
    assert "--socket" in complete("dump", "--")  # global options after the command too
    zsh_text = (pre / "share/zsh/site-functions/_btfctl").read_text()
    assert zsh_text.startswith("#compdef btfctl")
    for name in subcommands(parser_for("btfctl")):
        assert f"'{name}:" in zsh_text and f"{name})" in zsh_text
    # zsh, for real: an interactive zsh on a pseudo-terminal (zpty) with the installed
    # site-functions on its fpath, a TAB after each line
    fdir = pre / "share/zsh/site-functions"
    assert re.search(r"\bc +json +tree\b", zsh_complete(fdir, "btfctl lookup --format ")), "zsh: --format"
    assert re.search(r"\berror +poison\b", zsh_complete(fdir, "btfctl core x.o --fail-on "))
    assert "btfctl min-btf" in zsh_complete(fdir, "btfctl mi")
    shutil.rmtree(dest)


def test_make_run_in_a_fresh_checkout_serves_what_btfctl_finds(tmp_path: Path) -> None:
    """A checkout without .venv: `make run` installs the runtime dependencies only (no test or
    lint tools), serves ./run/btfd.sock, and the .venv/bin/btfctl it prints finds that socket
    with no --socket and no $BTFD_SOCKET (the discovery order's last step)."""
    from btfd import paths

    if os.path.exists(paths.SYSTEM_SOCKET):
        pytest.fail(f"{paths.SYSTEM_SOCKET} exists here: btfctl would rightly find that one first")
    co = tmp_path / "checkout"
    co.mkdir()
    files = subprocess.run(["git", "ls-files", "Makefile", "pyproject.toml", "README.md", "btfd", "clients/python"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        (co / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, co / f)
    env = {k: v for k, v in os.environ.items()
           if k not in ("BTFD_SOCKET", "BTFD_FD_SOCKET", "XDG_RUNTIME_DIR", "VIRTUAL_ENV", "SOCKET")}
    env["METRICS"] = "127.0.0.1:0"
    log = tmp_path / "make-run.log"
    with open(log, "w") as out:
        p = subprocess.Popen(["make", "run"], cwd=co, env=env, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while "ready:" not in log.read_text():
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert (co / "run/btfd.sock").exists()
        installed = dists(co / ".venv/bin")
        assert {"btfd", "btfd-client", "grpcio", "uvloop", "prometheus-client"} <= installed
        assert not installed & {"pytest", "mypy", "ruff", "hypothesis", "grpcio-tools", "kubernetes-validate"}
        r = subprocess.run([str(co / ".venv/bin/btfctl"), "lookup", "list_head", "--kind", "struct"], cwd=co,
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("struct list_head {"), r.stderr
        r = subprocess.run([str(co / ".venv/bin/btfctl"), "info", "--format", "json"], cwd="/", env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and json.loads(r.stdout)["socket"] == str(co / "run/btfd.sock"), r.stderr
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=60)


ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PS1="%%>"; fpath=(%s $fpath); autoload -U compinit; compinit -u -D; LISTMAX=1000'
zpty -n -w z %s$'\t'
sleep 2
out=""
while zpty -rt z line; do out+="$line"; done
print -r -- "$out"
zpty -d z
"""


def zsh_complete(fpath: Path, line: str) -> str:
    """What zsh prints after TAB at the end of ``line`` (escape sequences removed)."""
    import shlex

    script = ZSH_DRIVER % (shlex.quote(str(fpath)), shlex.quote(line))
    r = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=60)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|[\r\x07\x08]", " ", r.stdout)
