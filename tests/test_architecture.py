"""The layers, checked on every import of every module (absolute and relative, at the top or
inside a function): pure logic in the middle, I/O at the edges.

    btfd.btf      the BTF library: imports nothing else of btfd, and no I/O module
    btfd.core     CO-RE over specs: btfd.btf only, no I/O module
    btfd.fdproto  the fd socket's protocol without I/O: btfd.btf (its error type) only
    btfd.source   the one place that opens and maps files: btfd.btf
    btfd.paths, btfd.retry   small helpers: nothing of btfd
    btfd.shared   the fd path of the client: the library, the protocol, source, paths, retry
    btfd.client   the gRPC client: generated code, paths, retry (and the fd path, lazily)
    btfd.convert  the type model -> wire messages (daemon and btfctl): the library, generated code
    btfd.server   the daemon: anything but btfctl
    btfd.cli      btfctl: anything but the daemon
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "btfd"

#: layer -> btfd layers it may import (a module always may import its own layer).
ALLOWED: dict[str, set[str]] = {
    "btfd.btf": set(),
    "btfd.core": {"btfd.btf"},
    "btfd.fdproto": {"btfd.btf"},
    "btfd.source": {"btfd.btf"},
    "btfd.paths": set(),
    "btfd.retry": set(),
    "btfd.shared": {"btfd.btf", "btfd.fdproto", "btfd.source", "btfd.paths", "btfd.retry", "btfd.client"},
    "btfd.client": {"btfd.v1", "btfd.paths", "btfd.retry", "btfd.shared", "btfd.btf", "btfd.fdproto"},
    "btfd.convert": {"btfd.btf", "btfd.v1"},
    "btfd.server": {"btfd.btf", "btfd.core", "btfd.fdproto", "btfd.source", "btfd.paths", "btfd.retry",
                    "btfd.v1", "btfd", "btfd.shared", "btfd.convert"},
    "btfd.cli": {"btfd.btf", "btfd.core", "btfd.fdproto", "btfd.source", "btfd.paths", "btfd.retry",
                 "btfd.v1", "btfd", "btfd.shared", "btfd.client", "btfd.convert"},
    "btfd.v1": {"btfd.v1"},
    "btfd": set(),
}
#: Standard-library and third-party modules that do I/O or concurrency: not in pure layers.
IO_MODULES = {"socket", "mmap", "asyncio", "subprocess", "threading", "grpc", "google", "os", "io",
              "selectors", "signal", "fcntl", "uvloop", "prometheus_client", "pathlib", "shutil",
              "tempfile", "logging"}
PURE = {"btfd.btf", "btfd.core", "btfd.fdproto"}
#: Pure modules' imports that are fine although listed above (none today).
PURE_EXCEPTIONS: dict[str, set[str]] = {"btfd.core.obj": {"io"}}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    raise AssertionError(f"{module} belongs to no layer: add it to ALLOWED")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x: x may be a module
                    out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
                    continue
            else:
                target = node.module or ""
            out.append((node.lineno, target))
    return out


FILES = sorted(p for p in ROOT.rglob("*.py") if "v1" not in p.relative_to(ROOT).parts)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_follow_the_layers(path: Path) -> None:
    module = _module_name(path)
    layer = _layer(module)
    bad = []
    for line, target in _imports(path):
        top = target.split(".")[0]
        if top == "btfd":
            t_layer = _layer(target) if target != "btfd" else "btfd"
            if t_layer != layer and t_layer not in ALLOWED[layer]:
                bad.append(f"line {line}: {target} ({t_layer} is not allowed in {layer})")
        elif layer in PURE and top in IO_MODULES and top not in PURE_EXCEPTIONS.get(module, set()):
            bad.append(f"line {line}: {target} (I/O module in the pure layer {layer})")
    assert not bad, f"{module}:\n" + "\n".join(bad)


def test_the_checker_resolves_relative_imports() -> None:
    # A relative import that climbs out of btf/ is caught like an absolute one.
    got = dict((t, n) for n, t in _imports(ROOT / "btf" / "spec.py"))
    assert "btfd.btf.index" in got and "btfd.btf.errors" in got
    assert _layer("btfd.server.fdpass") == "btfd.server" and _layer("btfd.btf.index") == "btfd.btf"


def test_private_names_do_not_cross_modules() -> None:
    """``from x import _name`` between modules hides coupling: each fact has one public home."""
    bad = []
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        bad.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {a.name}")
    assert not bad, "\n".join(bad)
