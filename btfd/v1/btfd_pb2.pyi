from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_UNSPECIFIED: _ClassVar[Kind]
    KIND_INT: _ClassVar[Kind]
    KIND_PTR: _ClassVar[Kind]
    KIND_ARRAY: _ClassVar[Kind]
    KIND_STRUCT: _ClassVar[Kind]
    KIND_UNION: _ClassVar[Kind]
    KIND_ENUM: _ClassVar[Kind]
    KIND_FWD: _ClassVar[Kind]
    KIND_TYPEDEF: _ClassVar[Kind]
    KIND_VOLATILE: _ClassVar[Kind]
    KIND_CONST: _ClassVar[Kind]
    KIND_RESTRICT: _ClassVar[Kind]
    KIND_FUNC: _ClassVar[Kind]
    KIND_FUNC_PROTO: _ClassVar[Kind]
    KIND_VAR: _ClassVar[Kind]
    KIND_DATASEC: _ClassVar[Kind]
    KIND_FLOAT: _ClassVar[Kind]
    KIND_DECL_TAG: _ClassVar[Kind]
    KIND_TYPE_TAG: _ClassVar[Kind]
    KIND_ENUM64: _ClassVar[Kind]

class NameMatch(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NAME_MATCH_ANY: _ClassVar[NameMatch]
    NAME_MATCH_EXACT: _ClassVar[NameMatch]
    NAME_MATCH_PREFIX: _ClassVar[NameMatch]
    NAME_MATCH_GLOB: _ClassVar[NameMatch]
KIND_UNSPECIFIED: Kind
KIND_INT: Kind
KIND_PTR: Kind
KIND_ARRAY: Kind
KIND_STRUCT: Kind
KIND_UNION: Kind
KIND_ENUM: Kind
KIND_FWD: Kind
KIND_TYPEDEF: Kind
KIND_VOLATILE: Kind
KIND_CONST: Kind
KIND_RESTRICT: Kind
KIND_FUNC: Kind
KIND_FUNC_PROTO: Kind
KIND_VAR: Kind
KIND_DATASEC: Kind
KIND_FLOAT: Kind
KIND_DECL_TAG: Kind
KIND_TYPE_TAG: Kind
KIND_ENUM64: Kind
NAME_MATCH_ANY: NameMatch
NAME_MATCH_EXACT: NameMatch
NAME_MATCH_PREFIX: NameMatch
NAME_MATCH_GLOB: NameMatch

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SpecInfo(_message.Message):
    __slots__ = ("name", "path", "size", "type_count", "start_id", "byte_order", "base", "mode", "fd_socket", "index_bytes", "loaded", "mmap_refused", "note")
    class IndexBytesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TYPE_COUNT_FIELD_NUMBER: _ClassVar[int]
    START_ID_FIELD_NUMBER: _ClassVar[int]
    BYTE_ORDER_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FD_SOCKET_FIELD_NUMBER: _ClassVar[int]
    INDEX_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    MMAP_REFUSED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    size: int
    type_count: int
    start_id: int
    byte_order: str
    base: str
    mode: str
    fd_socket: str
    index_bytes: _containers.ScalarMap[str, int]
    loaded: bool
    mmap_refused: bool
    note: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., size: _Optional[int] = ..., type_count: _Optional[int] = ..., start_id: _Optional[int] = ..., byte_order: _Optional[str] = ..., base: _Optional[str] = ..., mode: _Optional[str] = ..., fd_socket: _Optional[str] = ..., index_bytes: _Optional[_Mapping[str, int]] = ..., loaded: _Optional[bool] = ..., mmap_refused: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class GetInfoResponse(_message.Message):
    __slots__ = ("version", "kernel_release", "specs", "fd_socket")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_RELEASE_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    FD_SOCKET_FIELD_NUMBER: _ClassVar[int]
    version: str
    kernel_release: str
    specs: _containers.RepeatedCompositeFieldContainer[SpecInfo]
    fd_socket: str
    def __init__(self, version: _Optional[str] = ..., kernel_release: _Optional[str] = ..., specs: _Optional[_Iterable[_Union[SpecInfo, _Mapping]]] = ..., fd_socket: _Optional[str] = ...) -> None: ...

class LookupTypeRequest(_message.Message):
    __slots__ = ("spec", "name", "id", "kind", "depth", "all_specs")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    ALL_SPECS_FIELD_NUMBER: _ClassVar[int]
    spec: str
    name: str
    id: int
    kind: Kind
    depth: int
    all_specs: bool
    def __init__(self, spec: _Optional[str] = ..., name: _Optional[str] = ..., id: _Optional[int] = ..., kind: _Optional[_Union[Kind, str]] = ..., depth: _Optional[int] = ..., all_specs: _Optional[bool] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("name", "type_id", "bit_offset", "bitfield_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    BIT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    BITFIELD_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int
    def __init__(self, name: _Optional[str] = ..., type_id: _Optional[int] = ..., bit_offset: _Optional[int] = ..., bitfield_size: _Optional[int] = ...) -> None: ...

class EnumValue(_message.Message):
    __slots__ = ("name", "value", "unsigned_value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNSIGNED_VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: int
    unsigned_value: int
    def __init__(self, name: _Optional[str] = ..., value: _Optional[int] = ..., unsigned_value: _Optional[int] = ...) -> None: ...

class Param(_message.Message):
    __slots__ = ("name", "type_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    type_id: int
    def __init__(self, name: _Optional[str] = ..., type_id: _Optional[int] = ...) -> None: ...

class VarSecinfo(_message.Message):
    __slots__ = ("type_id", "offset", "size")
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    type_id: int
    offset: int
    size: int
    def __init__(self, type_id: _Optional[int] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class Type(_message.Message):
    __slots__ = ("id", "kind", "name", "spec", "size", "type_id", "members", "values", "is_signed", "int_encoding", "int_bits", "int_offset", "index_type_id", "nelems", "is_union", "params", "linkage", "vars", "component_idx", "c_decl")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    IS_SIGNED_FIELD_NUMBER: _ClassVar[int]
    INT_ENCODING_FIELD_NUMBER: _ClassVar[int]
    INT_BITS_FIELD_NUMBER: _ClassVar[int]
    INT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    NELEMS_FIELD_NUMBER: _ClassVar[int]
    IS_UNION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    LINKAGE_FIELD_NUMBER: _ClassVar[int]
    VARS_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_IDX_FIELD_NUMBER: _ClassVar[int]
    C_DECL_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: Kind
    name: str
    spec: str
    size: int
    type_id: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    values: _containers.RepeatedCompositeFieldContainer[EnumValue]
    is_signed: bool
    int_encoding: int
    int_bits: int
    int_offset: int
    index_type_id: int
    nelems: int
    is_union: bool
    params: _containers.RepeatedCompositeFieldContainer[Param]
    linkage: str
    vars: _containers.RepeatedCompositeFieldContainer[VarSecinfo]
    component_idx: int
    c_decl: str
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[_Union[Kind, str]] = ..., name: _Optional[str] = ..., spec: _Optional[str] = ..., size: _Optional[int] = ..., type_id: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., values: _Optional[_Iterable[_Union[EnumValue, _Mapping]]] = ..., is_signed: _Optional[bool] = ..., int_encoding: _Optional[int] = ..., int_bits: _Optional[int] = ..., int_offset: _Optional[int] = ..., index_type_id: _Optional[int] = ..., nelems: _Optional[int] = ..., is_union: _Optional[bool] = ..., params: _Optional[_Iterable[_Union[Param, _Mapping]]] = ..., linkage: _Optional[str] = ..., vars: _Optional[_Iterable[_Union[VarSecinfo, _Mapping]]] = ..., component_idx: _Optional[int] = ..., c_decl: _Optional[str] = ...) -> None: ...

class LookupTypeResponse(_message.Message):
    __slots__ = ("types", "referenced")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    REFERENCED_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedCompositeFieldContainer[Type]
    referenced: _containers.RepeatedCompositeFieldContainer[Type]
    def __init__(self, types: _Optional[_Iterable[_Union[Type, _Mapping]]] = ..., referenced: _Optional[_Iterable[_Union[Type, _Mapping]]] = ...) -> None: ...

class ListTypesRequest(_message.Message):
    __slots__ = ("spec", "kind", "name", "match", "page_size", "start_id", "limit")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    START_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    spec: str
    kind: Kind
    name: str
    match: NameMatch
    page_size: int
    start_id: int
    limit: int
    def __init__(self, spec: _Optional[str] = ..., kind: _Optional[_Union[Kind, str]] = ..., name: _Optional[str] = ..., match: _Optional[_Union[NameMatch, str]] = ..., page_size: _Optional[int] = ..., start_id: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class TypeSummary(_message.Message):
    __slots__ = ("id", "kind", "name", "size")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: Kind
    name: str
    size: int
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[_Union[Kind, str]] = ..., name: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class ListTypesResponse(_message.Message):
    __slots__ = ("types", "next_start_id")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    NEXT_START_ID_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedCompositeFieldContainer[TypeSummary]
    next_start_id: int
    def __init__(self, types: _Optional[_Iterable[_Union[TypeSummary, _Mapping]]] = ..., next_start_id: _Optional[int] = ...) -> None: ...

class ReadRawRequest(_message.Message):
    __slots__ = ("spec", "offset", "length", "chunk_size")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    spec: str
    offset: int
    length: int
    chunk_size: int
    def __init__(self, spec: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class ReadRawResponse(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class CoreRelocation(_message.Message):
    __slots__ = ("sec", "prog", "insn", "sec_insn", "kind", "type_id", "type_name", "access", "status", "new_val", "mem_size_from", "mem_size_to", "target_type_id", "target_access", "error", "orig_val")
    SEC_FIELD_NUMBER: _ClassVar[int]
    PROG_FIELD_NUMBER: _ClassVar[int]
    INSN_FIELD_NUMBER: _ClassVar[int]
    SEC_INSN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NEW_VAL_FIELD_NUMBER: _ClassVar[int]
    MEM_SIZE_FROM_FIELD_NUMBER: _ClassVar[int]
    MEM_SIZE_TO_FIELD_NUMBER: _ClassVar[int]
    TARGET_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ACCESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ORIG_VAL_FIELD_NUMBER: _ClassVar[int]
    sec: str
    prog: str
    insn: int
    sec_insn: int
    kind: str
    type_id: int
    type_name: str
    access: str
    status: str
    new_val: int
    mem_size_from: int
    mem_size_to: int
    target_type_id: int
    target_access: str
    error: str
    orig_val: int
    def __init__(self, sec: _Optional[str] = ..., prog: _Optional[str] = ..., insn: _Optional[int] = ..., sec_insn: _Optional[int] = ..., kind: _Optional[str] = ..., type_id: _Optional[int] = ..., type_name: _Optional[str] = ..., access: _Optional[str] = ..., status: _Optional[str] = ..., new_val: _Optional[int] = ..., mem_size_from: _Optional[int] = ..., mem_size_to: _Optional[int] = ..., target_type_id: _Optional[int] = ..., target_access: _Optional[str] = ..., error: _Optional[str] = ..., orig_val: _Optional[int] = ...) -> None: ...

class PatchedProgram(_message.Message):
    __slots__ = ("sec", "prog", "insns")
    SEC_FIELD_NUMBER: _ClassVar[int]
    PROG_FIELD_NUMBER: _ClassVar[int]
    INSNS_FIELD_NUMBER: _ClassVar[int]
    sec: str
    prog: str
    insns: bytes
    def __init__(self, sec: _Optional[str] = ..., prog: _Optional[str] = ..., insns: _Optional[bytes] = ...) -> None: ...

class CoreRecord(_message.Message):
    __slots__ = ("sec", "insn_off", "type_id", "access", "kind")
    SEC_FIELD_NUMBER: _ClassVar[int]
    INSN_OFF_FIELD_NUMBER: _ClassVar[int]
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    sec: str
    insn_off: int
    type_id: int
    access: str
    kind: int
    def __init__(self, sec: _Optional[str] = ..., insn_off: _Optional[int] = ..., type_id: _Optional[int] = ..., access: _Optional[str] = ..., kind: _Optional[int] = ...) -> None: ...

class CoreRecords(_message.Message):
    __slots__ = ("local_btf", "records")
    LOCAL_BTF_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    local_btf: bytes
    records: _containers.RepeatedCompositeFieldContainer[CoreRecord]
    def __init__(self, local_btf: _Optional[bytes] = ..., records: _Optional[_Iterable[_Union[CoreRecord, _Mapping]]] = ...) -> None: ...

class ResolveCoreRequest(_message.Message):
    __slots__ = ("spec", "specs", "object", "records", "want_patched", "include_modules")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    WANT_PATCHED_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_MODULES_FIELD_NUMBER: _ClassVar[int]
    spec: str
    specs: _containers.RepeatedScalarFieldContainer[str]
    object: bytes
    records: CoreRecords
    want_patched: bool
    include_modules: bool
    def __init__(self, spec: _Optional[str] = ..., specs: _Optional[_Iterable[str]] = ..., object: _Optional[bytes] = ..., records: _Optional[_Union[CoreRecords, _Mapping]] = ..., want_patched: _Optional[bool] = ..., include_modules: _Optional[bool] = ...) -> None: ...

class CoreResult(_message.Message):
    __slots__ = ("spec", "relocations", "programs", "errors", "refused")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    RELOCATIONS_FIELD_NUMBER: _ClassVar[int]
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    spec: str
    relocations: _containers.RepeatedCompositeFieldContainer[CoreRelocation]
    programs: _containers.RepeatedCompositeFieldContainer[PatchedProgram]
    errors: int
    refused: str
    def __init__(self, spec: _Optional[str] = ..., relocations: _Optional[_Iterable[_Union[CoreRelocation, _Mapping]]] = ..., programs: _Optional[_Iterable[_Union[PatchedProgram, _Mapping]]] = ..., errors: _Optional[int] = ..., refused: _Optional[str] = ...) -> None: ...

class ResolveCoreResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CoreResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CoreResult, _Mapping]]] = ...) -> None: ...

class MinimizeBtfRequest(_message.Message):
    __slots__ = ("spec", "objects")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    spec: str
    objects: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, spec: _Optional[str] = ..., objects: _Optional[_Iterable[bytes]] = ...) -> None: ...

class MinimizeBtfResponse(_message.Message):
    __slots__ = ("btf", "type_count")
    BTF_FIELD_NUMBER: _ClassVar[int]
    TYPE_COUNT_FIELD_NUMBER: _ClassVar[int]
    btf: bytes
    type_count: int
    def __init__(self, btf: _Optional[bytes] = ..., type_count: _Optional[int] = ...) -> None: ...

class DumpCRequest(_message.Message):
    __slots__ = ("spec", "chunk_size")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    spec: str
    chunk_size: int
    def __init__(self, spec: _Optional[str] = ..., chunk_size: _Optional[int] = ...) -> None: ...

class DumpCResponse(_message.Message):
    __slots__ = ("offset", "data", "total_size")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    total_size: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_size: _Optional[int] = ...) -> None: ...
