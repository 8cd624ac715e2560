"""`btfctl core OBJ --all-specs`: the fleet matrix, checked against resolving the object locally
against each kernel alone (in-process, and through a real daemon serving the corpus kernels).

Verdicts per kernel: loads cleanly / loads with N poisoned relocations / fails. A poisoned
relocation is not a load failure (libbpf loads the program; the verifier refuses only a
reachable poisoned instruction), so an object whose every relocation is poisoned still loads.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from btfd.btf import Spec
from btfd.cli.cmd_core import print_matrix
from btfd.core import CoreRecord, resolve_object
from tests.conftest import CORE_DATA, blob, require_tool

BTFCTL = str(Path(sys.executable).with_name("btfctl"))
LE_FLEET = {
    "k6.1-amd64": "vmlinux-6.1.0-56-amd64",
    "k6.1-arm64": "vmlinux-6.1.0-56-arm64",
    "k6.18-amd64": "vmlinux-6.18-amd64",
}
S390X = ("k6.12-s390x", "vmlinux-6.12.95+deb12-s390x")


def _local(obj: str) -> dict[str, list[CoreRecord]]:
    data = (CORE_DATA / "objs" / obj).read_bytes()
    return {n: resolve_object(data, Spec(blob(b), name=n)).records for n, b in LE_FLEET.items()}


def _matrix(local: dict[str, list[CoreRecord]], as_json: bool,
            refused: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    rc = print_matrix([(n, recs) for n, recs in local.items()], as_json=as_json, out=out, refused=refused)
    return rc, out.getvalue()


def _u64(v: int | None) -> int | None:
    return None if v is None else v & 0xFFFFFFFFFFFFFFFF


def _check_json_against_local(lines: list[dict[str, Any]], local: dict[str, list[CoreRecord]]) -> None:
    rows = [x for x in lines if "verdicts" in x]
    sums = {x["spec"]: x["summary"] for x in lines if "summary" in x}
    n = len(next(iter(local.values())))
    assert len(rows) == n and set(sums) == set(local)
    for i, row in enumerate(rows):
        recs = {name: local[name][i] for name in local}
        for name, r in recs.items():
            v = row["verdicts"][name]
            assert (v["status"], v["new_val"], v["mem_size"], v["error"]) == (
                r.status, _u64(r.new_val) if r.status == "ok" else None, r.mem_size, r.error), (i, name)
        assert row["differs"] == (len({(r.status, _u64(r.new_val), str(r.mem_size)) for r in recs.values()}) > 1)
        first = recs[next(iter(recs))]
        assert (row["prog"], row["insn"], row["kind"], row["type_name"], row["access"]) == (
            first.prog, first.insn, first.kind, first.type_name or "(anon)", first.access)  # docs/JSON.md
    for name, recs in local.items():
        s = sums[name]
        poisoned = [(r.prog, r.insn) for r in recs if r.status == "poison"]
        errors = [(r.prog, r.insn, r.error) for r in recs if r.status == "error"]
        assert [(p["prog"], p["insn"]) for p in s["poisoned"]] == poisoned
        assert [(e["prog"], e["insn"], e["error"]) for e in s["errors"]] == errors
        want = "fails" if errors else "loads-with-poison" if poisoned else "loads"
        assert s["verdict"] == want, name


@pytest.mark.parametrize("obj", ["c_arrays.bpf.o", "k_enums.bpf.o", "k_task_fields.bpf.o", "k_types.bpf.o"])
def test_json_matrix_is_each_kernels_own_resolution(obj: str) -> None:
    local = _local(obj)
    rc, text = _matrix(local, True)
    _check_json_against_local([json.loads(x) for x in text.splitlines()], local)
    assert rc == (1 if any(r.status == "error" for recs in local.values() for r in recs) else 0)


def test_all_poisoned_still_loads() -> None:
    # c_arrays' types exist in no kernel: every value relocation is poisoned, nothing errs.
    local = _local("c_arrays.bpf.o")
    assert all(r.status in ("poison", "ok") for recs in local.values() for r in recs)
    n_poison = sum(r.status == "poison" for r in local["k6.18-amd64"])
    assert n_poison > 0
    rc, text = _matrix(local, False)
    assert rc == 0
    assert "loads on" not in text and "loads cleanly" not in text
    for name in LE_FLEET:
        assert f"{name}  loads with {n_poison} poisoned relocations" in text.replace("   ", "  ")
    # each poisoned relocation is named
    for r in local["k6.18-amd64"]:
        if r.status == "poison":
            assert f"{r.prog}+{r.insn} {r.kind} {r.type_name} {r.access}" in text


def test_values_names_and_errors_are_printed_in_full() -> None:
    local = _local("k_enums.bpf.o")
    rc, text = _matrix(local, False)
    assert rc == 1
    lines = text.splitlines()
    for recs in local.values():
        for r in recs:
            if r.status == "ok" and r.new_val is not None and _u64(r.new_val) > 0xFFFF:  # type: ignore[operator]
                assert f"{_u64(r.new_val):#x}" in text
            assert (r.type_name or "<anon>") in text
            if r.status == "error":
                assert f"{r.prog}+{r.insn} {r.kind} {r.type_name} {r.access}: {r.error}" in text
    # the largest value (a sign-extended 32-bit enumerator) is there whole
    assert "0xfffffffffffff001" in text
    # rows where kernels disagree are marked, the others are not
    n = len(next(iter(local.values())))
    assert lines[n + 1].startswith(f"{n} relocations;")
    body = lines[1 : n + 1]
    for i, line in enumerate(body):
        vals = {(local[k][i].status, _u64(local[k][i].new_val)) for k in local}
        assert line.startswith("*") == (len(vals) > 1), line


def test_refused_kernel_is_a_failure_with_its_reason() -> None:
    local = _local("k_types.bpf.o")
    why = "object is little-endian, kernel k6.12-s390x is big-endian: libbpf cannot load it there"
    rc, text = _matrix(local, False, refused={S390X[0]: why})
    assert rc == 1 and f"{S390X[0]}  fails: {why}" in text
    rc, js = _matrix(local, True, refused={S390X[0]: why})
    lines = [json.loads(x) for x in js.splitlines()]
    assert all(x["verdicts"][S390X[0]] == {"status": "error", "new_val": None, "mem_size": None, "error": why}
               for x in lines if "verdicts" in x)
    [s] = [x["summary"] for x in lines if x.get("spec") == S390X[0]]
    assert s["verdict"] == "fails" and s["refused"] == why


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.server.conftest import BtfdProcess

    d = tmp_path_factory.mktemp("fleet")
    args = []
    files = {}
    for name, b in [*LE_FLEET.items(), S390X]:
        (d / f"{b}.btf").write_bytes(blob(b))
        files[name] = d / f"{b}.btf"
        args += ["--btf", f"{name}={d / f'{b}.btf'}"]
    sysfs = d / "sysfs"  # stands in for /sys/kernel/btf: vmlinux 6.1 plus one module
    sysfs.mkdir()
    (sysfs / "vmlinux").write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    (sysfs / "btrfs").write_bytes(blob("btrfs-6.1.0-56-amd64"))
    files["vmlinux"] = sysfs / "vmlinux"
    with BtfdProcess(d / "d", "--sysfs-btf-dir", str(sysfs), *args, "--metrics-address", "off") as proc:
        yield proc, files


def _btfctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BTFCTL, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("obj", ["k_enums.bpf.o", "c_arrays.bpf.o"])
def test_daemon_matrix_agrees_with_btfctl_on_each_kernel_file(fleet, obj: str) -> None:  # type: ignore[no-untyped-def]
    proc, files = fleet
    path = str(CORE_DATA / "objs" / obj)
    r = _btfctl("--socket", proc.socket, "core", path, "--all-specs", "--json")
    assert r.returncode in (0, 1), r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    rows = [x for x in lines if "verdicts" in x]
    sums = {x["spec"]: x["summary"] for x in lines if "summary" in x}
    le = {n: f for n, f in files.items() if n != S390X[0]}
    failing = False
    for name, f in le.items():
        one = _btfctl("core", path, "--target", str(f), "--json")
        assert one.returncode in (0, 1), one.stderr
        recs = [json.loads(x) for x in one.stdout.splitlines()]
        assert [row["verdicts"][name]["status"] for row in rows] == [x["status"] for x in recs], name
        assert [row["verdicts"][name]["new_val"] for row in rows] == [
            _u64(x["new_val"]) if x["status"] == "ok" else None for x in recs], name
        failing |= one.returncode == 1
    # the big-endian kernel cannot take a little-endian object: it fails, for that reason
    assert sums[S390X[0]]["verdict"] == "fails" and "little-endian" in sums[S390X[0]]["refused"]
    assert r.returncode == 1
    text = _btfctl("--socket", proc.socket, "core", path, "--all-specs")
    assert text.returncode == 1 and "verdict per kernel:" in text.stdout
    if not failing:
        assert all(sums[n]["verdict"] != "fails" for n in le)


def test_include_modules_reaches_module_btf(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clang = require_tool("clang")
    proc, _ = fleet
    src = tmp_path / "mod.bpf.c"
    src.write_text(
        "struct btrfs_fs_info { unsigned int nodesize; } __attribute__((preserve_access_index));\n"
        "__attribute__((section(\"kprobe/x\"), used))\n"
        "int prog(struct btrfs_fs_info *f) { return f->nodesize; }\n"
    )
    obj = tmp_path / "mod.bpf.o"
    subprocess.run([clang, "-g", "-O2", "-target", "bpf", "-c", str(src), "-o", str(obj)], check=True)
    base = Spec(blob("vmlinux-6.1.0-56-amd64"))
    mod = Spec(blob("btrfs-6.1.0-56-amd64"), base=base)
    want = resolve_object(obj.read_bytes(), mod).records[0]
    assert want.status == "ok"
    alone = _btfctl("--socket", proc.socket, "core", str(obj), "--json")
    withm = _btfctl("--socket", proc.socket, "core", str(obj), "--json", "--include-modules")
    assert json.loads(alone.stdout)["status"] == "poison", alone.stderr
    got = json.loads(withm.stdout)
    assert (got["status"], got["new_val"]) == ("ok", want.new_val), withm.stderr
    bad = _btfctl("core", str(obj), "--target", str(tmp_path / "x.btf"), "--include-modules")
    assert bad.returncode == 2 and "ask the daemon" in bad.stderr
