"""Fixtures shared by the BTF library tests."""

from __future__ import annotations

import pytest

from btfd.btf import Spec
from btfd.btf.writer import sort_by_name
from tests.conftest import blob


@pytest.fixture(scope="session")
def sorted_vmlinux() -> tuple[Spec, Spec, dict[int, int]]:
    """(original vmlinux 6.1 spec, its name-sorted copy laid out like newer kernels', id map
    original -> sorted)."""
    spec = Spec(blob("vmlinux-6.1.0-56-amd64"))
    data, m = sort_by_name(spec)
    return spec, Spec(data), m
