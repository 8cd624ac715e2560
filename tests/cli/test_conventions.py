"""btfctl's conventions (issue: from clone to a working node): --version, global options
anywhere, --format and -o on every printing command, one JSON schema in both modes (checked
against bpftool's -j), core --fail-on poison and one row format, a closed stdout, split BTF
without --base, socket discovery. Against a real daemon, real files, real bpftool."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from btfd.btf import Kind, Spec
from tests.conftest import CORE_DATA, SPLIT_BASES, blob

BTFCTL = str(Path(sys.executable).with_name("btfctl"))
BTFD = str(Path(sys.executable).with_name("btfd"))
OBJ = str(CORE_DATA / "objs" / "k_task_fields.bpf.o")


def run(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BTFCTL, *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def lines(r: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def test_version_on_both_tools() -> None:
    from btfd import __version__

    for tool, name in ((BTFCTL, "btfctl"), (BTFD, "btfd")):
        r = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == f"{name} {__version__}", r


def test_global_options_before_or_after_the_command(daemon, tmp_path: Path) -> None:
    before = run("--socket", daemon.socket, "--timeout", "5", "specs")
    after = run("specs", "--socket", daemon.socket, "--timeout", "5")
    middle = run("--timeout", "5", "lookup", "list_head", "--socket", daemon.socket, "--kind", "struct")
    assert before.returncode == after.returncode == middle.returncode == 0, (before, after, middle)
    assert before.stdout == after.stdout == "vmlinux\nfleet-6.1\n"
    assert middle.stdout.startswith("struct list_head {")
    # a value given after the command wins and is checked like one given before
    r = run("--socket", "/nonexistent/x.sock", "health", "--socket", daemon.socket)
    assert r.returncode == 0 and r.stdout == "SERVING\n", r.stderr
    r = run("health", "--socket", daemon.socket, "--timeout", "-1")
    assert r.returncode == 2 and "--timeout: must be a positive number" in r.stderr
    r = run("fd", "--fd-socket", daemon.fd_socket, "--socket", "/nonexistent/x.sock")
    assert r.returncode == 0 and f"fd socket {daemon.fd_socket}" in r.stdout, r.stderr


def _flags(parser: Any) -> dict[str, set[str]]:
    from btfd.cli._gen import options, subcommands

    return {name: {o for a in options(sp) for o in a.option_strings} for name, sp in subcommands(parser).items()}


def test_every_printing_command_has_format_and_output() -> None:
    from btfd.cli import build_parser

    flags = _flags(build_parser())
    prints = {"lookup", "list", "dump", "info", "specs", "fd", "core"}
    for cmd in prints:
        assert {"--format", "-o", "--output"} <= flags[cmd], cmd
    assert "--format" in flags["health"]  # prints one word: --format json, no file
    for cmd in ("raw", "min-btf"):        # binary: -o only
        assert {"-o", "--output"} <= flags[cmd], cmd
    assert set(flags) == prints | {"health", "raw", "min-btf"}


def test_kind_names_are_one_table() -> None:
    """--kind's choices, the JSON kind spelling and the wire enum all derive from the same
    names as btfd.btf.Kind."""
    from btfd.cli import KIND_CHOICES
    from btfd.cli._json import kind_name
    from btfd.v1 import btfd_pb2 as pb

    assert KIND_CHOICES == [k.name.lower() for k in Kind if k]
    for k in Kind:
        assert pb.Kind.Name(int(k)) == ("KIND_UNSPECIFIED" if k == 0 else f"KIND_{k.name}")
        assert kind_name(int(k)) == ("UNKNOWN" if k == 0 else k.name)
    assert kind_name(99) == "UNKNOWN"


def _contains(small: Any, big: Any) -> bool:
    """Every key of bpftool's object is in ours with the same value (ours may have more)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _contains(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_contains, small, big))
    return bool(small == big)


def _bpftool_compatible(theirs: dict[str, Any], ours: dict[str, Any]) -> bool:
    if _contains(theirs, ours):
        return True
    # The one documented difference (docs/JSON.md): bpftool 7.1 sign-extends an unsigned
    # 32-bit enum value with the top bit set; ours is the value the enum has.
    if ours["kind"] != "ENUM" or ours["encoding"] != "UNSIGNED":
        return False
    fixed = dict(theirs, values=[dict(v, val=v["val"] & 0xFFFFFFFF) for v in theirs["values"]])
    return _contains(fixed, ours)


@pytest.mark.parametrize("name", ["vmlinux-6.18-amd64", "vmlinux-6.12.95+deb12-s390x", "synthetic-tags",
                                  "synthetic-enums"])
def test_dump_json_contains_bpftools_json_for_every_type(name: str, tmp_path: Path, bpftool: str) -> None:
    f = tmp_path / f"{name}.btf"
    f.write_bytes(blob(name))
    want = json.loads(subprocess.run([bpftool, "btf", "dump", "file", str(f), "-j"], capture_output=True,
                                     text=True, check=True).stdout)["types"]
    r = run("dump", "--file", str(f), "--format", "json", "-o", str(tmp_path / "out.json"))
    assert r.returncode == 0 and r.stdout == "", r.stderr
    ours = [json.loads(x) for x in (tmp_path / "out.json").read_text().splitlines()]
    assert len(ours) == len(want)
    bad = [(t, o) for t, o in zip(want, ours, strict=True) if not _bpftool_compatible(t, o)]
    assert not bad, bad[:3]
    # every field of the kind present, even when zero
    for o in ours:
        for m in o.get("members", []):
            assert set(m) == {"name", "type_id", "bits_offset", "bitfield_size"}
        if o["kind"] == "INT":
            assert set(o) == {"id", "kind", "name", "size", "bits_offset", "nr_bits", "encoding"}


def test_lookup_json_is_one_schema_in_both_modes(daemon, tmp_path: Path, kernel_vmlinux: Path) -> None:
    """Every field present (a first member's bits_offset 0), kinds spelled STRUCT, 64-bit
    values as numbers; local (--file) and daemon answers equal, spec aside."""
    remote = lines(run("--socket", daemon.socket, "lookup", "sk_buff", "--kind", "struct", "--format", "json"))
    local = lines(run("lookup", "sk_buff", "--kind", "struct", "--format", "json", "--file", str(kernel_vmlinux)))
    assert remote[0]["kind"] == "STRUCT" and remote[0]["members"][0]["bits_offset"] == 0
    assert remote[0]["spec"] == "vmlinux" and local[0]["spec"] == str(kernel_vmlinux)
    for x in remote + local:
        x.pop("spec")
    assert remote == local
    # an ENUM64 with a value above 2**32: a JSON number, in full
    spec = Spec(kernel_vmlinux.read_bytes())
    e64 = next(t for t in spec.types(Kind.ENUM64) if t.name and any(v.value >= 1 << 32 for v in t.values))
    [obj] = lines(run("--socket", daemon.socket, "lookup", e64.name, "--kind", "enum64", "--format", "json"))
    vals = {v["name"]: v["val"] for v in obj["values"]}
    assert all(isinstance(v, int) for v in vals.values())
    assert vals == {v.name: v.value & ((1 << 64) - 1) if not e64.signed else v.value for v in e64.values}


def test_list_format_json_columns_and_output(daemon, tmp_path: Path) -> None:
    js = lines(run("--socket", daemon.socket, "list", "--kind", "struct", "--match", "bpf_prog*", "--format", "json"))
    assert js and all(set(x) == {"id", "kind", "name", "size"} and x["kind"] == "STRUCT" for x in js)
    cols = run("--socket", daemon.socket, "list", "--kind", "struct", "--match", "bpf_prog*", "--format", "columns")
    assert cols.returncode == 0 and cols.stdout.splitlines()[0].startswith(f"[{js[0]['id']:>6}] STRUCT")
    out = tmp_path / "list.json"
    r = run("--socket", daemon.socket, "list", "--kind", "struct", "--match", "bpf_prog*", "-o", str(out))
    assert r.returncode == 0 and r.stdout == "" and [json.loads(x) for x in out.read_text().splitlines()] == js


def test_info_specs_fd_health_json(daemon) -> None:
    [info] = lines(run("--socket", daemon.socket, "info", "--format", "json"))
    assert info["socket"] == daemon.socket and info["fd_socket"] == daemon.fd_socket
    names = [s["name"] for s in info["specs"]]
    assert names == ["vmlinux", "fleet-6.1"]
    vm = info["specs"][0]
    assert vm["mode"] == "kernel-mmap" and vm["loaded"] and vm["base"] == "" and vm["mmap_refused"] is False
    assert vm["size"] == os.path.getsize("/sys/kernel/btf/vmlinux")
    assert lines(run("--socket", daemon.socket, "specs", "--format", "json")) == [
        {"name": "vmlinux", "loaded": True}, {"name": "fleet-6.1", "loaded": True}]
    [fd] = lines(run("--socket", daemon.socket, "fd", "--spec", "fleet-6.1", "--format", "json"))
    assert fd["mode"] == "sealed-memfd" and fd["seals"] == ["write", "grow", "shrink", "seal"] and fd["read_only"]
    assert fd["type_count"] == Spec(blob("vmlinux-6.1.0-56-amd64")).count
    assert lines(run("--socket", daemon.socket, "health", "--format", "json")) == [
        {"status": "SERVING", "socket": daemon.socket}]


def test_dump_and_lookup_output_files(daemon, tmp_path: Path, bpftool: str, kernel_vmlinux: Path) -> None:
    h = tmp_path / "vmlinux.h"
    r = run("--socket", daemon.socket, "dump", "--format", "c", "-o", str(h))
    want = subprocess.run([bpftool, "btf", "dump", "file", str(kernel_vmlinux), "format", "c"],
                          capture_output=True, text=True, check=True).stdout
    assert r.returncode == 0 and r.stdout == "" and h.read_text() == want
    # a failure leaves no file behind (and no temporary one)
    bad = tmp_path / "none.h"
    r = run("--socket", str(tmp_path / "no.sock"), "lookup", "task_struct", "-o", str(bad))
    assert r.returncode == 3 and not bad.exists() and sorted(os.listdir(tmp_path)) == ["vmlinux.h"]
    r = run("--socket", daemon.socket, "lookup", "task_struct", "-o", "/nonexistent/dir/x.h")
    assert r.returncode == 2 and "cannot write /nonexistent/dir/x.h" in r.stderr
    # not a regular file: written in place, never replaced by a rename
    r = run("--socket", daemon.socket, "dump", "-o", "/dev/null")
    assert r.returncode == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def _poisoned_object() -> tuple[str, list[dict[str, Any]]]:
    """An object of the corpus with a poisoned relocation and no error against this kernel."""
    for obj in sorted((CORE_DATA / "objs").glob("*.bpf.o")):
        r = run("core", str(obj), "--target", "/sys/kernel/btf/vmlinux", "--format", "json")
        recs = [json.loads(x) for x in r.stdout.splitlines()]
        st = {x["status"] for x in recs}
        if r.returncode == 0 and "poison" in st and "error" not in st:
            return str(obj), recs
    pytest.fail("no corpus object with poisoned relocations and no errors")


def test_core_fail_on_poison_and_one_row_format(daemon, tmp_path: Path) -> None:
    obj, recs = _poisoned_object()
    remote = run("--socket", daemon.socket, "core", obj, "--format", "json")
    assert remote.returncode == 0 and [json.loads(x) for x in remote.stdout.splitlines()] == recs
    # --json is --format json
    assert run("--socket", daemon.socket, "core", obj, "--json").stdout == remote.stdout
    # the table: identical in both modes
    t_local = run("core", obj, "--target", "/sys/kernel/btf/vmlinux")
    t_remote = run("--socket", daemon.socket, "core", obj)
    assert t_local.returncode == t_remote.returncode == 0 and t_local.stdout == t_remote.stdout
    assert "poisoned" in t_local.stdout
    for args in (("--target", "/sys/kernel/btf/vmlinux"), ("--socket", daemon.socket),
                 ("--socket", daemon.socket, "--all-specs")):
        r = run("core", obj, *args, "--fail-on", "poison")
        assert r.returncode == 1, (args, r.stderr)
    # every record has every field, values as numbers or null
    keys = {"sec", "prog", "insn", "sec_insn", "kind", "type_id", "type_name", "access", "status", "new_val",
            "orig_val", "mem_size", "target_type_id", "target_access", "error"}
    for x in recs:
        assert set(x) == keys
        assert (x["new_val"] is None) == (x["status"] != "ok")
    out = tmp_path / "core.json"
    assert run("--socket", daemon.socket, "core", obj, "--format", "json", "-o", str(out)).returncode == 0
    assert out.read_text() == remote.stdout


def test_a_closed_stdout_is_not_an_unreachable_daemon(daemon, tmp_path: Path, kernel_vmlinux: Path) -> None:
    """`btfctl ... | head`: quiet (no message at all), exit 141 as for SIGPIPE; in both modes."""
    for args in (("--socket", daemon.socket, "list", "--format", "json"),
                 ("--socket", daemon.socket, "dump"),
                 ("dump", "--file", str(kernel_vmlinux)),
                 ("lookup", "--file", str(kernel_vmlinux), "task_struct", "--depth", "8", "--format", "json")):
        p = subprocess.Popen([BTFCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout is not None and p.stderr is not None
        p.stdout.read(100)
        p.stdout.close()
        err = p.stderr.read().decode()
        p.stderr.close()
        rc = p.wait(timeout=120)
        assert rc == 141 and err == "", (args, rc, err)


def test_split_btf_without_base_says_so(tmp_path: Path) -> None:
    name = "veth-6.1.0-56-amd64"
    f = tmp_path / "veth.btf"
    f.write_bytes(blob(name))
    base = tmp_path / "base.btf"
    base.write_bytes(blob(SPLIT_BASES[name]))
    for args in (("lookup", "veth_priv", "--file", str(f)), ("dump", "--file", str(f)),
                 ("core", OBJ, "--target", str(f))):
        r = run(*args)
        assert r.returncode == 2 and "this looks like split BTF" in r.stderr and "pass --base" in r.stderr, r.stderr
        assert "string section" not in r.stderr
    r = run("lookup", "veth_priv", "--file", str(f), "--base", str(base))
    assert r.returncode == 0 and r.stdout.startswith("struct veth_priv {"), r.stderr


def test_socket_discovery_order(tmp_path: Path) -> None:
    """--socket, then $BTFD_SOCKET, then the first existing of the system path, the per-user
    path and the checkout's run/btfd.sock; when none exists, every place is named."""
    from btfd import paths

    env = {k: v for k, v in os.environ.items() if k not in ("BTFD_SOCKET", "XDG_RUNTIME_DIR")}
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    code = "from btfd import paths; print(paths.default_socket())"

    def discovered(**extra: str) -> str:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **extra},
                           timeout=60)
        return r.stdout.strip()

    if os.path.exists(paths.SYSTEM_SOCKET):
        pytest.fail(f"{paths.SYSTEM_SOCKET} exists on this machine: the order below cannot be observed")
    tree = paths.tree_socket()
    assert tree == str(Path(__file__).resolve().parents[2] / "run" / "btfd.sock")
    assert discovered(BTFD_SOCKET="/x/y.sock") == "/x/y.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(xdg / "btfd.sock"))
    try:
        assert discovered(XDG_RUNTIME_DIR=str(xdg)) == str(xdg / "btfd.sock")
    finally:
        s.close()
    if not os.path.exists(tree):  # nothing anywhere: the daemon's own default (root: system path)
        assert discovered(XDG_RUNTIME_DIR=str(xdg)) == str(xdg / "btfd.sock")  # stale file still exists
        os.unlink(xdg / "btfd.sock")
        assert discovered() == paths.SYSTEM_SOCKET
        r = subprocess.run([BTFCTL, "health"], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 3 and f"no socket at {paths.SYSTEM_SOCKET}, {tree}" in r.stderr, r.stderr
        assert "make run" in r.stderr



def test_progress_shows_done_and_total(daemon, tmp_path: Path) -> None:
    """On a terminal stderr, a long listing says how far it is: done/total (percent)."""
    import pty

    total = Spec(Path("/sys/kernel/btf/vmlinux").read_bytes()).count
    master, slave = pty.openpty()
    try:
        r = subprocess.run([BTFCTL, "--socket", daemon.socket, "list", "-o", str(tmp_path / "all.json")],
                           stderr=slave, stdout=subprocess.DEVNULL, timeout=180,
                           env={**os.environ, "BTFCTL_PROGRESS_AFTER": "0"})
        os.set_blocking(master, False)
        seen = b""
        try:
            while chunk := os.read(master, 65536):
                seen += chunk
        except (BlockingIOError, OSError):
            pass
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 0
    assert re.search(rf"btfctl list: types \d+/{total} \(\d+%\)", seen.decode()), seen[-500:]
    assert len((tmp_path / "all.json").read_text().splitlines()) == total
