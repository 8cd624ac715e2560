"""The library's exported API is pinned, and the library stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import btfd.btf

BTF_DIR = Path(btfd.btf.__file__).parent


def test_exported_api_is_pinned() -> None:
    assert sorted(btfd.btf.__all__) == sorted([
        "BTFClosedError", "BTFCycleError", "BTFError", "BTFFormatError", "BTFNotFoundError", "BTFRangeError",
        "BTFUnsupportedError", "CHECKPOINT", "Header", "Kind", "Spec", "essential_name",
        "kind_from_name", "load_spec", "types", "Array", "Const", "Datasec", "DeclTag", "Enum",
        "EnumValue", "Float", "Func", "FuncProto", "Fwd", "Int", "Member", "Param", "Ptr",
        "Restrict", "Struct", "Type", "Typedef", "TypeTag", "Union", "Var", "VarSecinfo", "Void",
        "Volatile",
    ])
    for name in btfd.btf.__all__:
        assert hasattr(btfd.btf, name), name


def test_library_does_no_io() -> None:
    """No sockets, mmaps, gRPC or asyncio in btfd/btf: files are opened in btfd/source.py."""
    banned = {"socket", "mmap", "grpc", "asyncio", "subprocess", "os"}
    for f in BTF_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & banned, (f.name, names & banned)
        assert "open(" not in f.read_text().replace("def open", ""), f.name
