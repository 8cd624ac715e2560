"""Differential oracle: Debian's libbpf (libbpf.so.1, through ctypes) relocating an object
against a custom target BTF, its verdicts read back from its debug log.

``bpf_object__load()`` relocates every program before loading any, logging one line per
relocation ("patched insn ...", "substituting insn ... w/ invalid insn", "failed to relocate");
it needs the privileges to load BPF (else it stops before CO-RE and :func:`libbpf_verdicts`
returns None). The programs then fail verification: nothing is attached or kept.
"""

from __future__ import annotations

import ctypes
import random
import re
from collections import Counter

from btfd.btf import Kind, Spec
from btfd.btf import types as T

__all__ = ["libbpf_verdicts", "generate_program_source"]


class _OpenOpts(ctypes.Structure):
    # struct bpf_object_open_opts of libbpf 1.x (sz first; later fields stay zero).
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


_PRINT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_LINE = re.compile(r"libbpf: prog '(\w+)': relo #(\d+): (.*)")
_PATCH = re.compile(r"patched insn #\d+ \((LDX/ST/STX|ALU/ALU64|LDIMM64)\) (?:off|imm|imm64) (\d+) -> (\d+)")
_MEMSZ = re.compile(r"patched insn #\d+ \(LDX/ST/STX\) mem_sz (\d+) -> (\d+)")


Verdicts = dict[tuple[str, int], tuple[str, int | None, int | None]]


def libbpf_verdicts(obj_path: str, target_path: str) -> Verdicts | None:
    """{(prog, relo #): (status, new value, new load size)} as libbpf logged them; None when
    libbpf could not get to CO-RE (no libbpf.so.1, no privileges)."""
    try:
        lib = ctypes.CDLL("libbpf.so.1")
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    buf = ctypes.create_string_buffer(16384)
    log: list[str] = []

    def cb(level: int, fmt: bytes, args: int) -> int:
        libc.vsnprintf(buf, len(buf), fmt, ctypes.c_void_p(args))
        log.append(buf.value.decode(errors="replace"))
        return 0

    printer = _PRINT(cb)
    old = lib.libbpf_set_print(printer)
    try:
        lib.bpf_object__open_file.restype = ctypes.c_void_p
        lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.POINTER(_OpenOpts)]
        lib.bpf_object__load.argtypes = [ctypes.c_void_p]
        lib.bpf_object__close.argtypes = [ctypes.c_void_p]
        opts = _OpenOpts(sz=ctypes.sizeof(_OpenOpts), btf_custom_path=target_path.encode())
        h = lib.bpf_object__open_file(obj_path.encode(), ctypes.byref(opts))
        if not h or h > (1 << 64) - 4096:
            return None
        lib.bpf_object__load(h)
        lib.bpf_object__close(h)
    finally:
        lib.libbpf_set_print(old)
    out: Verdicts = {}
    for line in "".join(log).splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        key, msg = (m.group(1), int(m.group(2))), m.group(3)
        if p := _PATCH.match(msg):
            out[key] = ("ok", int(p.group(3)), None)
        elif p := _MEMSZ.match(msg):
            out[key] = (out[key][0], out[key][1], int(p.group(2)))
        elif "substituting insn" in msg:
            out[key] = ("poison", None, None)
        elif "failed to" in msg:
            out[key] = ("error", None, None)
    if not out and "CO-RE" not in "".join(log):
        return None
    return out


def _skip(s: Spec, tid: int) -> T.Type:
    while True:
        t = s.type(tid)
        if isinstance(t, (T.Typedef, T.Const, T.Volatile, T.Restrict, T.TypeTag)):
            tid = t.type
            continue
        return t


def generate_program_source(s: Spec, seed: int, nprogs: int) -> str:
    """C source (over vmlinux.h of ``s``) with ``nprogs`` kprobe programs, each doing a few
    random CO-RE accesses into one of ``s``'s structs: loads, field info, type info, enum
    values. Only inputs are random; the expected answers come from libbpf."""
    rng = random.Random(seed)
    by_name: dict[str, list[int]] = {}
    for t in s.types(Kind.STRUCT):
        if t.name and t.size and t.members and "___" not in t.name:
            by_name.setdefault(t.name, []).append(t.id)
    structs = sorted(ids[0] for ids in by_name.values() if len(ids) == 1)
    names = Counter(v.name for k in (Kind.ENUM, Kind.ENUM64) for t in s.types(k) for v in t.values)
    enum_names = Counter(t.name for t in s.types(Kind.ENUM) if t.name)
    enums = [t for t in s.types(Kind.ENUM) if t.name and enum_names[t.name] == 1
             and any(names[v.name] == 1 for v in t.values)]

    def path(sid: int, depth: int = 0) -> tuple[str, bool, T.Type] | None:
        t = s.type(sid)
        assert isinstance(t, (T.Struct, T.Union))
        m = rng.choice(t.members)
        mt = _skip(s, m.type)
        if not m.name:
            return path(mt.id, depth + 1) if isinstance(mt, (T.Struct, T.Union)) and mt.members else None
        expr = "." + m.name
        if m.bitfield_size:
            return expr, True, mt
        if isinstance(mt, T.Array):
            if mt.nelems == 0:
                return None
            expr += f"[{rng.randrange(mt.nelems)}]"
            mt = _skip(s, mt.type)
            if isinstance(mt, T.Array):
                return None
        if isinstance(mt, (T.Struct, T.Union)) and depth < 3 and mt.members:
            sub = path(mt.id, depth + 1)
            return None if sub is None else (expr + sub[0], sub[1], sub[2])
        if isinstance(mt, (T.Int, T.Ptr, T.Enum)):
            return expr, False, mt
        return None

    out = ['#include "vmlinux.h"', '#define SEC(n) __attribute__((section(n), used))']
    for pi in range(nprogs):
        st = s.type(rng.choice(structs))
        body = []
        for _ in range(rng.randint(3, 10)):
            p = path(st.id)
            if p is None:
                continue
            expr, bitfield, mt = p
            acc = f"p->{expr[1:]}"
            scalar_ok = isinstance(mt, T.Ptr) or (isinstance(mt, (T.Int, T.Enum)) and mt.size in (1, 2, 4, 8))
            if not bitfield and scalar_ok and rng.random() < 0.4:
                body.append(f"r += (long){acc};")
                continue
            # libbpf refuses shifts/signedness on array elements: keep those to plain fields.
            ints = (bitfield or isinstance(mt, T.Int)) and not expr.endswith("]")
            k = rng.choice([1, 2, 3, 4, 5] if bitfield else [0, 1, 2, 3, 4, 5] if ints else [0, 1, 2])
            body.append(f"r += __builtin_preserve_field_info({acc}, {k});")
        if rng.random() < 0.5:
            body.append(f"r += __builtin_preserve_type_info(*(struct {st.name} *)0, {rng.choice([0, 1])});")
        if rng.random() < 0.3:
            body.append(f"r += __builtin_btf_type_id(*(struct {st.name} *)0, 1);")
        if enums and rng.random() < 0.5:
            en = rng.choice(enums)
            assert isinstance(en, T.Enum)
            v = rng.choice([v for v in en.values if names[v.name] == 1])
            flag = rng.choice([0, 1])
            body.append(f"r += __builtin_preserve_enum_value(*(enum {en.name} *){v.name}, {flag});")
        out.append(f'SEC("kprobe/p{pi}") int p{pi}(struct {st.name} *p) {{ long r = 0; '
                   + " ".join(body) + " return r; }")
    out.append('char _license[] SEC("license") = "GPL";')
    return "\n".join(out) + "\n"
