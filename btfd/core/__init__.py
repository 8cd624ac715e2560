"""btfd.core: the CO-RE relocation engine (pure: no sockets, no files, no asyncio).

>>> from btfd.btf import load_spec
>>> from btfd.core import resolve_object
>>> result = resolve_object(obj_bytes, load_spec(vmlinux_bytes))
>>> [(r.prog, r.insn, r.kind, r.status, r.new_val) for r in result.records]

A daemon keeps one :class:`CoreTarget` per served spec (decoded types and candidate lists
survive between calls) and passes it instead of the spec; :func:`minimize` builds the minimal
BTF for a set of objects (MinimizeBtf).
"""

from __future__ import annotations

from .errors import ByteOrderError, CoreError, ObjectError
from .minimize import MinBtf, minimize, minimize_btf
from .obj import BpfObject, BtfExt, CoreRelo, Function, ProgSection, parse_btf_ext, parse_object
from .relo import (
    KIND_IDS,
    KIND_NAMES,
    CoreRecord,
    CoreResult,
    CoreTarget,
    RecordInput,
    RecordStatus,
    ReloKind,
    find_candidates,
    resolve_object,
    resolve_records,
)

__all__ = [
    "RecordStatus",
    "ReloKind",
    "BpfObject",
    "ByteOrderError",
    "BtfExt",
    "CoreError",
    "CoreRecord",
    "CoreRelo",
    "CoreResult",
    "CoreTarget",
    "Function",
    "KIND_IDS",
    "KIND_NAMES",
    "MinBtf",
    "ObjectError",
    "ProgSection",
    "RecordInput",
    "find_candidates",
    "minimize",
    "minimize_btf",
    "parse_btf_ext",
    "parse_object",
    "resolve_object",
    "resolve_records",
]
