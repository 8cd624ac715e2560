"""The public type model: frozen, slotted dataclasses decoded on demand from the wire records.

A :class:`Type` is a value: it holds ids of the types it refers to, never other Type objects,
so decoding one type never decodes another.
"""

from __future__ import annotations

from dataclasses import dataclass

from .kinds import Kind

__all__ = [
    "Type",
    "Void",
    "Int",
    "Ptr",
    "Array",
    "Member",
    "Struct",
    "Union",
    "EnumValue",
    "Enum",
    "Fwd",
    "Typedef",
    "Volatile",
    "Const",
    "Restrict",
    "Func",
    "Param",
    "FuncProto",
    "Var",
    "VarSecinfo",
    "Datasec",
    "Float",
    "DeclTag",
    "TypeTag",
    "INT_SIGNED",
    "INT_CHAR",
    "INT_BOOL",
    "LINKAGE_NAMES",
]

INT_SIGNED = 1 << 0
INT_CHAR = 1 << 1
INT_BOOL = 1 << 2

#: BTF_FUNC_STATIC/GLOBAL/EXTERN and BTF_VAR_STATIC/GLOBAL_ALLOCATED/GLOBAL_EXTERN.
LINKAGE_NAMES = {0: "static", 1: "global", 2: "extern"}


@dataclass(frozen=True, slots=True)
class Type:
    """Common fields: ``id`` (0 is void) and ``name`` ("" when anonymous)."""

    id: int
    name: str

    @property
    def kind(self) -> Kind:
        return _KIND_OF[type(self)]


@dataclass(frozen=True, slots=True)
class Void(Type):
    pass


@dataclass(frozen=True, slots=True)
class Int(Type):
    size: int
    encoding: int  # INT_SIGNED | INT_CHAR | INT_BOOL
    offset: int  # bit offset (always 0 in practice)
    bits: int

    @property
    def signed(self) -> bool:
        return bool(self.encoding & INT_SIGNED)


@dataclass(frozen=True, slots=True)
class Ptr(Type):
    type: int


@dataclass(frozen=True, slots=True)
class Array(Type):
    type: int
    index_type: int
    nelems: int


@dataclass(frozen=True, slots=True)
class Member:
    """A struct/union member. ``bit_offset`` from the start of the composite;
    ``bitfield_size`` is 0 for a normal member."""

    name: str
    type: int
    bit_offset: int
    bitfield_size: int


@dataclass(frozen=True, slots=True)
class Struct(Type):
    size: int
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Union(Type):
    size: int
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class EnumValue:
    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Enum(Type):
    """ENUM and ENUM64 both decode to this; ``is64`` tells which."""

    size: int
    signed: bool
    values: tuple[EnumValue, ...]
    is64: bool = False

    @property
    def kind(self) -> Kind:
        return Kind.ENUM64 if self.is64 else Kind.ENUM


@dataclass(frozen=True, slots=True)
class Fwd(Type):
    is_union: bool


@dataclass(frozen=True, slots=True)
class Typedef(Type):
    type: int


@dataclass(frozen=True, slots=True)
class Volatile(Type):
    type: int


@dataclass(frozen=True, slots=True)
class Const(Type):
    type: int


@dataclass(frozen=True, slots=True)
class Restrict(Type):
    type: int


@dataclass(frozen=True, slots=True)
class TypeTag(Type):
    type: int


@dataclass(frozen=True, slots=True)
class Func(Type):
    type: int  # the FUNC_PROTO
    linkage: int


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: int  # 0 with an empty name: variadic "..."


@dataclass(frozen=True, slots=True)
class FuncProto(Type):
    return_type: int
    params: tuple[Param, ...]


@dataclass(frozen=True, slots=True)
class Var(Type):
    type: int
    linkage: int


@dataclass(frozen=True, slots=True)
class VarSecinfo:
    type: int
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Datasec(Type):
    size: int
    vars: tuple[VarSecinfo, ...]


@dataclass(frozen=True, slots=True)
class Float(Type):
    size: int


@dataclass(frozen=True, slots=True)
class DeclTag(Type):
    type: int
    component_idx: int  # -1: the tag applies to the type itself


_KIND_OF: dict[type, Kind] = {
    Void: Kind.UNKN,
    Int: Kind.INT,
    Ptr: Kind.PTR,
    Array: Kind.ARRAY,
    Struct: Kind.STRUCT,
    Union: Kind.UNION,
    Enum: Kind.ENUM,
    Fwd: Kind.FWD,
    Typedef: Kind.TYPEDEF,
    Volatile: Kind.VOLATILE,
    Const: Kind.CONST,
    Restrict: Kind.RESTRICT,
    Func: Kind.FUNC,
    FuncProto: Kind.FUNC_PROTO,
    Var: Kind.VAR,
    Datasec: Kind.DATASEC,
    Float: Kind.FLOAT,
    DeclTag: Kind.DECL_TAG,
    TypeTag: Kind.TYPE_TAG,
}
