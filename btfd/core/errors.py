"""Errors of the CO-RE engine: part of the one :class:`~btfd.btf.BTFError` hierarchy."""

from __future__ import annotations

from ..btf.errors import BTFError

__all__ = ["CoreError", "ObjectError"]


class CoreError(BTFError):
    """Input the CO-RE engine cannot work with (bad relocation records, bad local BTF)."""


class ObjectError(CoreError):
    """A BPF object that is not ELF, not BPF, or whose ``.BTF``/``.BTF.ext``/program sections
    are truncated or inconsistent. The message names the section and the offset in it."""
