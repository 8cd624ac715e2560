"""Every btfctl subcommand and exit code, against a real daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from btfd.btf import Kind, Spec
from btfd.btf.format_c import format_type_c
from tests.conftest import CORE_DATA, blob

BTFCTL = str(Path(sys.executable).with_name("btfctl"))


@pytest.fixture(scope="module")
def local(kernel_vmlinux: Path) -> Spec:
    return Spec(kernel_vmlinux.read_bytes())


def btfctl(daemon, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    sock = daemon.socket if daemon is not None else "/nonexistent/btfd.sock"
    return subprocess.run([BTFCTL, "--socket", sock, "--timeout", "5", *args],
                          capture_output=True, text=True, timeout=120)


def test_lookup_c_is_bpftools_text(daemon, local: Spec) -> None:
    r = btfctl(daemon, "lookup", "task_struct")
    assert r.returncode == 0, r.stderr
    tid = local.find_ids("task_struct", Kind.STRUCT)[0]
    assert r.stdout == format_type_c(local, tid)
    assert r.stdout.startswith("struct task_struct {\n") and r.stdout.endswith("};\n\n")


def test_lookup_json_and_tree(daemon, local: Spec) -> None:
    r = btfctl(daemon, "lookup", "list_head", "--kind", "struct", "--format", "json")
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout.splitlines()[0])
    assert t["name"] == "list_head" and t["size"] == 16 and [m["name"] for m in t["members"]] == ["next", "prev"]
    r = btfctl(daemon, "lookup", "list_head", "--kind", "struct", "--format", "tree")
    assert r.returncode == 0, r.stderr
    assert "next;" in r.stdout and "/*     8     8 */" in r.stdout and "size: 16" in r.stdout


def test_lookup_tree_shows_holes(daemon, local: Spec) -> None:
    # Find a struct with a hole: a member starting after the previous one ends.
    for t in local.types(Kind.STRUCT):
        if 2 <= len(t.members) <= 6 and all(m.bitfield_size == 0 for m in t.members) and t.name \
                and len(local.find_ids(t.name, Kind.STRUCT)) == 1:
            m0, m1 = t.members[0], t.members[1]
            try:
                end = m0.bit_offset // 8 + local.size_of(m0.type)
            except Exception:  # noqa: BLE001
                continue
            if m1.bit_offset // 8 > end:
                break
    else:
        pytest.fail("no struct with a hole found")
    r = btfctl(daemon, "lookup", t.name, "--kind", "struct", "--format", "tree")
    assert f"XXX {m1.bit_offset // 8 - end} byte" in r.stdout, r.stdout


def test_lookup_by_id_depth_and_other_spec(daemon) -> None:
    old = Spec(blob("vmlinux-6.1.0-56-amd64"))
    tid = old.find_ids("task_struct", Kind.STRUCT)[0]
    r = btfctl(daemon, "lookup", "--id", str(tid), "--spec", "fleet-6.1", "--format", "json", "--depth", "1")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0]["id"] == tid and lines[0]["name"] == "task_struct" and len(lines) > 10


def test_lookup_local_file(tmp_path: Path) -> None:
    f = tmp_path / "v.btf"
    f.write_bytes(blob("vmlinux-6.12.95+deb12-s390x"))
    r = subprocess.run([BTFCTL, "lookup", "--file", str(f), "task_struct", "--kind", "struct"],
                       capture_output=True, text=True, timeout=60)
    spec = Spec(blob("vmlinux-6.12.95+deb12-s390x"))
    assert r.returncode == 0 and r.stdout == format_type_c(spec, spec.find_ids("task_struct", Kind.STRUCT)[0])


def test_exit_codes(daemon, tmp_path: Path) -> None:
    r = btfctl(daemon, "lookup", "no_such_type_anywhere")
    assert r.returncode == 1 and "no_such_type_anywhere" in r.stderr and "Traceback" not in r.stderr
    r = btfctl(daemon, "lookup")
    assert r.returncode == 2
    r = btfctl(daemon, "lookup", "x", "--kind", "nonsense")
    assert r.returncode == 2
    r = btfctl(None, "lookup", "task_struct")
    assert r.returncode == 3
    assert "btfd is not running at /nonexistent/btfd.sock" in r.stderr
    assert "start it with: btfd --socket /nonexistent/btfd.sock" in r.stderr and "Traceback" not in r.stderr
    assert btfctl(None, "health").returncode == 3
    assert btfctl(None, "info").returncode == 3
    r = btfctl(daemon, "raw", "--offset", "0", "--length", str(10**9))
    assert r.returncode == 2 and "outside" in r.stderr


def test_list_json_lines(daemon, local: Spec) -> None:
    r = btfctl(daemon, "list", "--kind", "struct", "--match", "bpf_prog*")
    assert r.returncode == 0
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    import fnmatch

    want = [t.name for t in local.types(Kind.STRUCT) if fnmatch.fnmatchcase(t.name, "bpf_prog*")]
    assert [x["name"] for x in rows] == want and all(x["kind"] == "STRUCT" for x in rows)
    assert btfctl(daemon, "list", "--match", "no_such_*_zz").returncode == 1


def test_raw_info_specs_fd_health(daemon, kernel_vmlinux: Path, tmp_path: Path) -> None:
    out = tmp_path / "head.bin"
    r = btfctl(daemon, "raw", "--offset", "0", "--length", "4096", "-o", str(out))
    assert r.returncode == 0 and out.read_bytes() == kernel_vmlinux.read_bytes()[:4096]
    r = btfctl(daemon, "info")
    assert r.returncode == 0 and "vmlinux" in r.stdout and "kernel-mmap" in r.stdout and "fleet-6.1" in r.stdout
    assert btfctl(daemon, "specs").stdout.split() == ["vmlinux", "fleet-6.1"]
    r = btfctl(daemon, "fd")
    assert r.returncode == 0 and "mode kernel-mmap" in r.stdout and "header ok" in r.stdout, r.stderr
    r = btfctl(daemon, "fd", "--spec", "fleet-6.1")
    assert "sealed-memfd" in r.stdout and "seals: write, grow, shrink, seal" in r.stdout, r.stdout
    r = btfctl(daemon, "health")
    assert r.returncode == 0 and r.stdout.strip() == "SERVING"


def test_dump_over_the_fd_socket(daemon, bpftool: str, kernel_vmlinux: Path) -> None:
    r = btfctl(daemon, "dump", "--format", "raw")
    want = subprocess.run([bpftool, "btf", "dump", "file", str(kernel_vmlinux)], capture_output=True,
                          text=True, check=True).stdout
    assert r.returncode == 0 and r.stdout == want


def test_core_and_min_btf_through_the_daemon(daemon, tmp_path: Path) -> None:
    obj = str(CORE_DATA / "objs" / "k_task_fields.bpf.o")
    remote = btfctl(daemon, "core", obj, "--spec", "fleet-6.1", "--json")
    old = tmp_path / "old.btf"
    old.write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    local = subprocess.run([BTFCTL, "core", obj, "--target", str(old), "--json"], capture_output=True, text=True)
    assert remote.returncode == local.returncode
    keys = ("sec", "prog", "insn", "kind", "status", "new_val", "mem_size", "target_type_id")
    rr = [json.loads(x) for x in remote.stdout.splitlines()]
    ll = [json.loads(x) for x in local.stdout.splitlines()]
    assert [{k: x[k] for k in keys} for x in rr] == [{k: x[k] for k in keys} for x in ll] and rr
    # The fleet matrix: every served spec, one column each.
    m = btfctl(daemon, "core", obj, "--all-specs")
    assert "vmlinux" in m.stdout.splitlines()[0] and "fleet-6.1" in m.stdout.splitlines()[0]
    verdicts = m.stdout.split("verdict per kernel:\n", 1)[1]
    statuses = {x["status"] for x in ll}
    want = ("fails" if "error" in statuses else "loads with" if "poison" in statuses else "loads cleanly")
    line = next(x for x in verdicts.splitlines() if x.split()[0] == "fleet-6.1")
    assert want in line, verdicts
    assert any(x.split()[0] == "vmlinux" for x in verdicts.splitlines())
    out = tmp_path / "min.btf"
    r = btfctl(daemon, "min-btf", obj, "--spec", "fleet-6.1", "-o", str(out))
    assert r.returncode == 0 and Spec(out.read_bytes()).count > 0


def test_help_teaches() -> None:
    r = subprocess.run([BTFCTL, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "examples:" in r.stdout and "exit codes" in r.stdout


def test_lookup_of_the_20_largest_structs_is_bpftools_text(daemon, local: Spec, bpftool: str,
                                                            kernel_vmlinux: Path) -> None:
    """`btfctl lookup NAME` against the daemon prints exactly the block bpftool's C dump
    has for that struct (nested anonymous members included)."""
    from btfd.btf.format_c import HEADER

    dump = subprocess.run([bpftool, "btf", "dump", "file", str(kernel_vmlinux), "format", "c"],
                          capture_output=True, text=True, check=True).stdout[len(HEADER):]
    blocks = {}
    for block in dump.split(";\n\n"):
        block = block.lstrip("\n")
        blocks[block.split("\n", 1)[0]] = block + ";\n\n"
    largest = []
    for t in sorted(local.types(Kind.STRUCT), key=lambda t: -t.size):
        if t.name and len(local.find_ids(t.name, Kind.STRUCT)) == 1 and f"struct {t.name} {{" in blocks:
            largest.append(t.name)
        if len(largest) == 20:
            break
    assert len(largest) == 20
    for name in largest:
        r = btfctl(daemon, "lookup", name, "--kind", "struct")
        assert r.returncode == 0 and r.stdout == blocks[f"struct {name} {{"], name
