"""Opening BTF files for the subcommands that work without a daemon."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..btf import BTFError, Spec

__all__ = ["local_spec", "read_file", "split_hint"]


@contextmanager
def local_spec(path: str, base: str | None = None) -> Iterator[Spec]:
    """A spec over the file at ``path`` (raw BTF or an ELF with ``.BTF``), split over
    ``base`` when given; specs and their mappings are released when the block ends."""
    from ..source import open_source

    sources: list[Any] = []
    specs: list[Spec] = []
    try:
        base_spec = None
        if base:
            bsrc = open_source(base)
            sources.append(bsrc)
            base_spec = bsrc.spec(name=base)
            specs.append(base_spec)
        src = open_source(path)
        sources.append(src)
        try:
            spec = src.spec(base=base_spec, name=path)
        except BTFError as exc:
            hint = split_hint(exc, base)
            if hint:
                raise type(exc)(f"{path}: {hint}") from None
            raise
        specs.append(spec)
        yield spec
    finally:
        for s in reversed(specs):
            s.close()
        for src in reversed(sources):
            try:
                src.close()
            except BufferError:  # a view is still alive somewhere: the GC unmaps it later
                pass


def read_file(path: str) -> bytes:
    """The bytes of a (small) input file such as a BPF object."""
    from ..source import open_source

    src = open_source(path)
    try:
        return bytes(src.data)
    finally:
        src.close()


def split_hint(exc: BTFError, base: str | None) -> str:
    """What to say when a split (module) BTF was opened without its base: its string section
    continues the base's, so it does not start with the empty string. "" otherwise."""
    if "string section does not start" in str(exc) and not base:
        return ("this looks like split BTF (a module's: its strings and type ids continue a "
                "base's); pass --base with its base, e.g. --base /sys/kernel/btf/vmlinux")
    return ""
