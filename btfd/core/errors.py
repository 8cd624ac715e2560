"""Errors of the CO-RE engine: part of the one :class:`~btfd.btf.BTFError` hierarchy."""

from __future__ import annotations

from ..btf.errors import BTFError

__all__ = ["ByteOrderError", "CoreError", "ObjectError"]


class CoreError(BTFError):
    """Input the CO-RE engine cannot work with (bad relocation records, bad local BTF)."""


class ObjectError(CoreError):
    """A BPF object that is not ELF, not BPF, or whose ``.BTF``/``.BTF.ext``/program sections
    are truncated or inconsistent. The message names the section and the offset in it."""


class ByteOrderError(CoreError):
    """Object and target BTF have different byte orders. libbpf relocates only objects of the
    host's (= the kernel's) byte order, and FIELD_LSHIFT_U64 and the patched instructions
    depend on it: a big-endian object cannot be relocated for a little-endian kernel."""
