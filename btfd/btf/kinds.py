"""BTF kinds and the fixed wire layout of each (include/uapi/linux/btf.h)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Kind", "INFO_SIZE", "ELEM_SIZE", "KIND_NAMES", "kind_from_name", "kind_of", "is_known_kind"]


class Kind(IntEnum):
    """BTF_KIND_* values."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


#: Bytes after the 12-byte ``struct btf_type`` that every record of a kind carries.
INFO_SIZE: dict[int, int] = {
    Kind.INT: 4,
    Kind.ARRAY: 12,
    Kind.VAR: 4,
    Kind.DECL_TAG: 4,
}
#: Bytes per vlen element of a kind (struct btf_member, btf_enum, btf_param, ...).
ELEM_SIZE: dict[int, int] = {
    Kind.STRUCT: 12,
    Kind.UNION: 12,
    Kind.ENUM: 8,
    Kind.FUNC_PROTO: 8,
    Kind.DATASEC: 12,
    Kind.ENUM64: 12,
}

KIND_NAMES: dict[int, str] = {k.value: k.name for k in Kind}


def kind_from_name(name: str) -> Kind:
    """``"struct"`` / ``"STRUCT"`` / ``"func_proto"`` -> :class:`Kind`; ValueError otherwise."""
    try:
        return Kind[name.strip().upper().replace("-", "_")]
    except KeyError:
        raise ValueError(
            f"unknown BTF kind {name!r}; expected one of "
            + ", ".join(k.name.lower() for k in Kind if k)
        ) from None


def kind_of(info: int) -> int:
    """The kind number in a ``btf_type.info`` word (bits 24-30; values past
    :class:`Kind`'s are kinds this code does not know). The vlen is ``info & spec.vlen_mask``:
    16 bits, or 24 in blobs with a kind-layout section."""
    return (info >> 24) & 0x7F


def is_known_kind(k: int) -> bool:
    """A kind this library decodes (UNKN, 0, never appears in a type section)."""
    return 0 < k < len(Kind)
