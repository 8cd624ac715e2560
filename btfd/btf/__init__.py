"""btfd.btf: a pure, zero-copy, lazily decoded BTF library.

Files are opened elsewhere (btfd.source); this package only reads buffers:

>>> from btfd.source import open_kernel_btf
>>> spec = open_kernel_btf().spec()         # or load_spec(some_bytes_or_mmap)
>>> spec.find_one("task_struct", Kind.STRUCT).size
"""

from __future__ import annotations

from typing import Any

from . import types
from .elf import find_section, is_elf
from .errors import (
    BTFClosedError,
    BTFCycleError,
    BTFError,
    BTFFormatError,
    BTFNotFoundError,
    BTFRangeError,
    BTFUnsupportedError,
)
from .header import Header
from .kinds import Kind, kind_from_name
from .spec import CHECKPOINT, Spec, essential_name
from .types import (
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Member,
    Param,
    Ptr,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
)

__all__ = [
    "BTFClosedError",
    "BTFCycleError",
    "BTFError",
    "BTFFormatError",
    "BTFNotFoundError",
    "BTFRangeError",
    "BTFUnsupportedError",
    "CHECKPOINT",
    "Header",
    "Kind",
    "Spec",
    "essential_name",
    "kind_from_name",
    "load_spec",
    "types",
    "Array",
    "Const",
    "Datasec",
    "DeclTag",
    "Enum",
    "EnumValue",
    "Float",
    "Func",
    "FuncProto",
    "Fwd",
    "Int",
    "Member",
    "Param",
    "Ptr",
    "Restrict",
    "Struct",
    "Type",
    "Typedef",
    "TypeTag",
    "Union",
    "Var",
    "VarSecinfo",
    "Void",
    "Volatile",
]


def load_spec(data: Any, *, base: Spec | None = None, name: str = "") -> Spec:
    """A :class:`Spec` from raw BTF or from an ELF file's ``.BTF`` section (no copy)."""
    if is_elf(data):
        off, size = find_section(data, ".BTF")
        return Spec(data, base=base, start=off, length=size, name=name)
    return Spec(data, base=base, name=name)
