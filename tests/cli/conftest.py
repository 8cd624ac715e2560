"""btfctl's tests talk to a real daemon serving this machine's vmlinux plus an older kernel's
BTF as ``fleet-6.1`` (one daemon per test module)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import blob
from tests.server.conftest import BtfdProcess


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("cli")
    old = d / "vmlinux-6.1.btf"
    old.write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    with BtfdProcess(d, "--btf", f"fleet-6.1={old}", "--metrics-address", "off") as proc:
        yield proc
