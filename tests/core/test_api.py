"""The public API of btfd.core, and its purity (no I/O modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import btfd.core

CORE = Path(btfd.core.__file__).parent


def test_exported_names() -> None:
    assert sorted(btfd.core.__all__) == sorted([
        "BpfObject", "BtfExt", "ByteOrderError", "CoreError", "CoreRecord", "CoreRelo", "CoreResult", "CoreTarget",
        "Function", "KIND_IDS", "KIND_NAMES", "MinBtf", "ObjectError", "ProgSection", "RecordInput", "RecordStatus", "ReloKind",
        "find_candidates", "minimize", "minimize_btf", "parse_btf_ext", "parse_object",
        "resolve_object", "resolve_records",
    ])
    for name in btfd.core.__all__:
        assert getattr(btfd.core, name) is not None
    assert issubclass(btfd.core.ObjectError, btfd.core.CoreError)
    assert issubclass(btfd.core.ByteOrderError, btfd.core.CoreError)
    from btfd.btf import BTFError
    assert issubclass(btfd.core.CoreError, BTFError)


def test_core_is_pure() -> None:
    banned = {"socket", "mmap", "grpc", "asyncio", "os", "subprocess", "threading"}
    for f in CORE.glob("*.py"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module.split(".")[0]]
            assert not banned.intersection(names), (f.name, names)
        assert "open(" not in f.read_text().replace("_open(", ""), f.name
