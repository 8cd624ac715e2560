"""btfd.core: the CO-RE relocation engine (pure: no sockets, no files, no asyncio).

>>> from btfd.btf import load_spec
>>> from btfd.core import resolve_object
>>> result = resolve_object(obj_bytes, load_spec(vmlinux_bytes))
>>> [(r.prog, r.insn, r.kind, r.status, r.new_val) for r in result.records]
"""

from __future__ import annotations

from .errors import CoreError, ObjectError
from .obj import BpfObject, BtfExt, CoreRelo, Function, ProgSection, parse_btf_ext, parse_object
from .relo import (
    KIND_IDS,
    KIND_NAMES,
    CoreRecord,
    CoreResult,
    CoreTarget,
    RecordInput,
    find_candidates,
    resolve_object,
    resolve_records,
)

__all__ = [
    "BpfObject",
    "BtfExt",
    "CoreError",
    "CoreRecord",
    "CoreRelo",
    "CoreResult",
    "CoreTarget",
    "Function",
    "KIND_IDS",
    "KIND_NAMES",
    "ObjectError",
    "ProgSection",
    "RecordInput",
    "find_candidates",
    "parse_btf_ext",
    "parse_object",
    "resolve_object",
    "resolve_records",
]
