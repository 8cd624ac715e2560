"""`btfctl core` and `btfctl min-btf` as a user runs them (a real process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import CORE_DATA

OBJS = CORE_DATA / "objs"
TARGET = str(CORE_DATA / "targets" / "custom-a.btf")


def btfctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "btfd.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_json_one_object_per_record_exit_0() -> None:
    p = btfctl("core", str(OBJS / "c_types.bpf.o"), "--target", TARGET, "--json")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(recs) == 27
    # in the library's order (libbpf's processing order), one row per .BTF.ext record
    from btfd.btf import Spec
    from btfd.core import resolve_object

    want = resolve_object((OBJS / "c_types.bpf.o").read_bytes(), Spec(Path(TARGET).read_bytes())).records
    assert [(r["sec"], r["insn"]) for r in recs] == [(w.sec, w.insn) for w in sorted(want, key=lambda w: w.order)]
    for r in recs:
        assert {"sec", "prog", "insn", "kind", "status", "new_val", "mem_size", "target_type_id",
                "target_access", "error", "type_id", "type_name", "access", "sec_insn"} <= r.keys()
        assert r["status"] in ("ok", "poison")


def test_error_record_exit_1_and_table() -> None:
    p = btfctl("core", str(OBJS / "c_enums.bpf.o"), "--target", TARGET)
    assert p.returncode == 1
    assert "unexpected insn #0 (ALU/ALU64) value: got 1, exp 0 -> 1" in p.stdout
    assert "PROG+INSN" in p.stdout.splitlines()[0]
    assert p.stdout.rstrip().endswith("1 errors")
    assert "Traceback" not in p.stderr


def test_bad_input_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"\x7fELF" + b"\0" * 10)
    p = btfctl("core", str(junk), "--target", TARGET)
    assert p.returncode == 2
    assert p.stderr.startswith("btfctl core: ") and "Traceback" not in p.stderr
    p = btfctl("core", str(tmp_path / "missing.o"), "--target", TARGET)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = btfctl("core", str(OBJS / "c_types.bpf.o"), "--target", str(junk))
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_without_target_asks_the_daemon() -> None:
    p = btfctl("--socket", "/nonexistent/btfd.sock", "core", str(OBJS / "c_types.bpf.o"))
    assert p.returncode == 3
    assert "Traceback" not in p.stderr and p.stderr.strip()
