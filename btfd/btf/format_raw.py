"""The raw text form of BTF, byte-identical to ``bpftool btf dump file F`` (bpftool 7.1), and
a JSON-able structured form of one type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import types as T
from .kinds import is_known_kind, kind_of
from .spec import Spec

__all__ = ["dump_raw", "format_type_raw", "format_unknown_raw", "type_to_dict"]

_INT_ENC = {0: "(none)", T.INT_SIGNED: "SIGNED", T.INT_CHAR: "CHAR", T.INT_BOOL: "BOOL"}


def _q(name: str) -> str:
    return f"'{name or '(anon)'}'"


def format_type_raw(spec: Spec, t: T.Type) -> str:
    """One type as bpftool's raw dump prints it (with its member lines), newline-terminated."""
    head = f"[{t.id}] {t.kind.name} {_q(t.name)}"
    if isinstance(t, T.Int):
        enc = _INT_ENC.get(t.encoding, "UNKN")
        return f"{head} size={t.size} bits_offset={t.offset} nr_bits={t.bits} encoding={enc}\n"
    if isinstance(t, (T.Ptr, T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)):
        return f"{head} type_id={t.type}\n"
    if isinstance(t, T.Array):
        return f"{head} type_id={t.type} index_type_id={t.index_type} nr_elems={t.nelems}\n"
    if isinstance(t, (T.Struct, T.Union)):
        lines = [f"{head} size={t.size} vlen={len(t.members)}"]
        for m in t.members:
            line = f"\t{_q(m.name)} type_id={m.type} bits_offset={m.bit_offset}"
            if m.bitfield_size:
                line += f" bitfield_size={m.bitfield_size}"
            lines.append(line)
        return "\n".join(lines) + "\n"
    if isinstance(t, T.Enum):
        enc = "SIGNED" if t.signed else "UNSIGNED"
        lines = [f"{head} encoding={enc} size={t.size} vlen={len(t.values)}"]
        for v in t.values:
            if t.is64:
                lines.append(f"\t{_q(v.name)} val={v.value}{'LL' if t.signed else 'ULL'}")
            else:
                lines.append(f"\t{_q(v.name)} val={v.value}")
        return "\n".join(lines) + "\n"
    if isinstance(t, T.Fwd):
        return f"{head} fwd_kind={'union' if t.is_union else 'struct'}\n"
    if isinstance(t, T.Func):
        return f"{head} type_id={t.type} linkage={T.LINKAGE_NAMES.get(t.linkage, '(unknown)')}\n"
    if isinstance(t, T.FuncProto):
        lines = [f"{head} ret_type_id={t.return_type} vlen={len(t.params)}"]
        lines += [f"\t{_q(p.name)} type_id={p.type}" for p in t.params]
        return "\n".join(lines) + "\n"
    if isinstance(t, T.Var):
        return f"{head} type_id={t.type}, linkage={T.LINKAGE_NAMES.get(t.linkage, '(unknown)')}\n"
    if isinstance(t, T.Datasec):
        lines = [f"{head} size={t.size} vlen={len(t.vars)}"]
        for vs in t.vars:
            vk = spec.kind(vs.type)
            lines.append(f"\ttype_id={vs.type} offset={vs.offset} size={vs.size} "
                         f"({vk.name} {_q(spec.type_name(vs.type))})")
        return "\n".join(lines) + "\n"
    if isinstance(t, T.Float):
        return f"{head} size={t.size}\n"
    if isinstance(t, T.DeclTag):
        return f"{head} type_id={t.type} component_idx={t.component_idx}\n"
    return f"[{t.id}] UNKNOWN\n"


def format_unknown_raw(spec: Spec, tid: int) -> str:
    """The line for a type of a kind this code does not know (stepped over thanks to a
    kind-layout section): bpftool's ``[N] UNKNOWN 'name'`` prefix, then the raw fields,
    ``kind=K vlen=V size_or_type=X``. bpftool 7.1 cannot print such blobs at all."""
    name_off, info, st = spec.raw(tid)
    name = spec.string(name_off) if name_off else ""
    return f"[{tid}] UNKNOWN {_q(name)} kind={kind_of(info)} vlen={spec.vlen(tid)} size_or_type={st}\n"


def dump_raw(spec: Spec) -> Iterator[str]:
    """Every own type (a split spec's own types only, ids continuing its base's), as
    ``bpftool btf dump file F [-B BASE]`` prints them; a type of an unknown kind as
    :func:`format_unknown_raw` prints it."""
    with spec.dense():
        batch: list[str] = []
        for tid, _name_off, info, _st in spec.iter_raw():
            if is_known_kind(kind_of(info)):
                batch.append(format_type_raw(spec, spec.type(tid)))
            else:
                batch.append(format_unknown_raw(spec, tid))
            if len(batch) >= 512:
                yield "".join(batch)
                batch.clear()
        if batch:
            yield "".join(batch)


def type_to_dict(spec: Spec, t: T.Type) -> dict[str, Any]:
    """A JSON-able form of one type, with bpftool's ``-j`` field names where it has them."""
    d: dict[str, Any] = {"id": t.id, "kind": t.kind.name, "name": t.name or "(anon)"}
    if isinstance(t, T.Int):
        d.update(size=t.size, bits_offset=t.offset, nr_bits=t.bits,
                 encoding=_INT_ENC.get(t.encoding, "UNKN"))
    elif isinstance(t, (T.Ptr, T.Typedef, T.Volatile, T.Const, T.Restrict, T.TypeTag)):
        d["type_id"] = t.type
    elif isinstance(t, T.Array):
        d.update(type_id=t.type, index_type_id=t.index_type, nr_elems=t.nelems)
    elif isinstance(t, (T.Struct, T.Union)):
        d.update(size=t.size, vlen=len(t.members), members=[
            {"name": m.name or "(anon)", "type_id": m.type, "bits_offset": m.bit_offset,
             **({"bitfield_size": m.bitfield_size} if m.bitfield_size else {})}
            for m in t.members])
    elif isinstance(t, T.Enum):
        d.update(encoding="SIGNED" if t.signed else "UNSIGNED", size=t.size, vlen=len(t.values),
                 values=[{"name": v.name, "val": v.value} for v in t.values])
    elif isinstance(t, T.Fwd):
        d["fwd_kind"] = "union" if t.is_union else "struct"
    elif isinstance(t, T.Func):
        d.update(type_id=t.type, linkage=T.LINKAGE_NAMES.get(t.linkage, "(unknown)"))
    elif isinstance(t, T.FuncProto):
        d.update(ret_type_id=t.return_type, vlen=len(t.params),
                 params=[{"name": p.name or "(anon)", "type_id": p.type} for p in t.params])
    elif isinstance(t, T.Var):
        d.update(type_id=t.type, linkage=T.LINKAGE_NAMES.get(t.linkage, "(unknown)"))
    elif isinstance(t, T.Datasec):
        d.update(size=t.size, vlen=len(t.vars),
                 vars=[{"type_id": v.type, "offset": v.offset, "size": v.size} for v in t.vars])
    elif isinstance(t, T.Float):
        d["size"] = t.size
    elif isinstance(t, T.DeclTag):
        d.update(type_id=t.type, component_idx=t.component_idx)
    return d


