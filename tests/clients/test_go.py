"""The Go client (clients/go) against a real daemon: `go test ./...` built offline against
Debian's Go packages (clients/go/debian-go.sh), its result asserted here so that it counts in
pytest's; and the btfd-agent command loading a CO-RE object into the running kernel.

`make test` installs Go, the generators and the Go libraries (`make sysdeps`): a missing tool
is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.conftest import BtfdProcess

ROOT = Path(__file__).resolve().parents[2]
GO_DIR = ROOT / "clients" / "go"
DEBIAN_GO = GO_DIR / "debian-go.sh"
BTFD = str(Path(sys.executable).with_name("btfd"))

#: Every test function of the Go packages: each must be reported as passed (a renamed or
#: silently skipped test fails here).
GO_TESTS = {
    "btfd/clients/go": [
        "TestDefaultSocket", "TestFdSocketFor", "TestGetInfo", "TestLookupType",
        "TestErrorsCarryTheStatus", "TestListTypes", "TestOpenSharedMatchesReadRawAndTheKernel",
        "TestFdErrors", "TestFdAnswerFromAHostileServer", "TestFdRequestDeadline", "TestFdRequestNoDaemon",
        "TestRetryBudgetSpent", "TestRetryUntilTheDaemonStarts",
    ],
    "btfd/clients/go/agent": [
        "TestCOREReadsTheRightFields", "TestCOREReadsTheRightFields/minimize",
        "TestCOREReadsTheRightFields/patched", "TestCOREReadsTheRightFields/auto",
        "TestMinimalBTFIsWhatCiliumParses",
        "TestENUM64/minimize", "TestENUM64/patched", "TestENUM64/auto",
        "TestUnguardedMissingFieldIsRefused", "TestBadObjects", "TestKernelRouteForReference",
    ],
}


@pytest.fixture(scope="module")
def go_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for clients/go/debian-go.sh: GOPATH and build cache in a temp dir."""
    missing = [t for t in ("go", "clang", "protoc-gen-go") if shutil.which(t) is None]
    missing += [d for d in ("github.com/cilium/ebpf", "google.golang.org/grpc", "google.golang.org/protobuf",
                            "golang.org/x/sys/unix") if not Path("/usr/share/gocode/src", d).is_dir()]
    if missing:
        pytest.fail(f"Go toolchain or Debian Go packages missing: {missing} (make sysdeps installs them)")
    return {**os.environ, "BTFD_GO_DIR": str(tmp_path_factory.mktemp("gopath"))}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path):  # type: ignore[no-untyped-def]
    with BtfdProcess(tmp_path_factory.mktemp("go"), "--metrics-address", "off") as proc:
        yield proc


def go(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DEBIAN_GO), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_go_vet_and_gofmt(go_env: dict[str, str]) -> None:
    r = go(go_env, "vet", "./...")
    assert r.returncode == 0, r.stdout + r.stderr
    fmt = subprocess.run(["gofmt", "-l", str(GO_DIR)], capture_output=True, text=True, timeout=120)
    assert fmt.returncode == 0 and fmt.stdout == "", f"not gofmt'ed: {fmt.stdout}{fmt.stderr}"


def test_go_tests_against_a_real_daemon(go_env: dict[str, str], daemon) -> None:  # type: ignore[no-untyped-def]
    env = {**go_env, "BTFD_SOCKET": daemon.socket, "BTFD_FD_SOCKET": daemon.fd_socket, "BTFD_BIN": BTFD}
    r = go(env, "test", "-count=1", "-v", "./...")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-8000:]
    passed = set(re.findall(r"--- PASS: (\S+)", out))
    skipped = re.findall(r"--- SKIP: (\S+)", out)
    assert not skipped, f"skipped Go tests: {skipped}"
    for pkg, names in GO_TESTS.items():
        assert re.search(rf"^ok\s+{re.escape(pkg)}\s", out, re.M), f"{pkg} did not pass:\n{out[-4000:]}"
        missing = [n for n in names if n not in passed]
        assert not missing, f"{pkg}: not reported as passed: {missing}"
    # The reference route: cilium/ebpf 0.9.1 parsing this kernel's BTF itself fails on ENUM64
    # (the test logs it); the btfd routes above loaded the same object.
    assert "TestKernelRouteForReference" in passed


def test_btfd_agent_command(go_env: dict[str, str], daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = tmp_path / "btfd-agent"
    r = go(go_env, "build", "-o", str(agent), "./cmd/btfd-agent")
    assert r.returncode == 0, r.stdout + r.stderr
    obj = tmp_path / "task_ids.o"
    multiarch = subprocess.run(["clang", "-print-multiarch"], capture_output=True, text=True).stdout.strip()
    arch = {"x86_64": "x86", "aarch64": "arm64", "s390x": "s390"}.get(os.uname().machine, os.uname().machine)
    cc = subprocess.run(["clang", "-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{arch}",
                         f"-I/usr/include/{multiarch or os.uname().machine + '-linux-gnu'}", "-c",
                         str(GO_DIR / "agent" / "testdata" / "task_ids.bpf.c"), "-o", str(obj)],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    for route in ("minimize", "patched", "auto"):
        r = subprocess.run([str(agent), "-socket", daemon.socket, "-route", route, "-attach", "-hold", "none",
                            str(obj)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        assert rep["route"] == ("minimize" if route == "auto" else route), rep  # no ENUM64 here
        assert rep["ready"] and rep["programs"] == ["on_getpid"] and rep["maps"] == ["seen"], rep
        assert rep["attached"] == ["on_getpid@raw_tracepoint/sys_enter"], rep
        if route != "patched":
            assert 0 < rep["minimal_btf_bytes"] < 4096, rep
        else:
            assert rep["relocations"].get("ok", 0) > 0 and "error" not in rep["relocations"], rep
    # The usual cilium/ebpf way, parsing the kernel's BTF itself, is what 0.9.1 cannot do here.
    r = subprocess.run([str(agent), "-route", "kernel", "-hold", "none", str(obj)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        assert "cannot load the kernel's BTF" in r.stderr and "unknown kind" in r.stderr, r.stderr
    # Bad input: a clear error and exit status 1, no crash.
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"\x7fELF nothing else")
    r = subprocess.run([str(agent), "-socket", daemon.socket, "-hold", "none", str(bad)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("btfd-agent: "), (r.returncode, r.stderr)


def test_go_mod_requires_every_imported_module(go_env: dict[str, str]) -> None:
    """A user outside builds with modules: go.mod must name every module the code imports."""
    r = go(go_env, "list", "-f", '{{join .Imports "\\n"}}\n{{join .TestImports "\\n"}}', "./...")
    assert r.returncode == 0, r.stderr
    required = re.findall(r"^\s+(\S+) v\S+", (GO_DIR / "go.mod").read_text(), re.M)
    assert required
    for imp in sorted(set(r.stdout.split())):
        first = imp.split("/")[0]
        if "." not in first or imp.startswith("btfd/"):
            continue  # the standard library, or this module
        assert any(imp == m or imp.startswith(m + "/") for m in required), f"{imp} is not required in go.mod"
