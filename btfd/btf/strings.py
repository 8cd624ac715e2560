"""One blob's string section, read in place.

Split BTF continues its base's string offsets: offset ``off`` of a module's string section is
its base's when ``off < start`` (the base's length), else ``off - start`` into its own.
"""

from __future__ import annotations

from typing import Any

from .errors import BTFClosedError, BTFFormatError

__all__ = ["Strings"]


class Strings:
    """The NUL-terminated strings of ``data[begin:end]``, over an optional ``base``."""

    __slots__ = ("data", "begin", "end", "start", "base", "_closed_as")

    def __init__(self, data: Any, begin: int, end: int, base: Strings | None) -> None:
        self.data = data
        self.begin, self.end = begin, end  # absolute byte range of this blob's own section
        self.base = base
        #: The first offset this section answers (0, or its base's size for split BTF).
        self.start: int = 0 if base is None else base.size
        self._closed_as: str | None = None

    @property
    def size(self) -> int:
        """Offsets this section and its bases answer: the next one a split blob starts at."""
        return self.start + (self.end - self.begin)

    def bytes_at(self, off: int) -> bytes:
        """The string at offset ``off`` (its bytes, without the NUL)."""
        s: Strings = self
        while off < s.start:
            assert s.base is not None
            s = s.base
        if s._closed_as is not None:
            raise BTFClosedError(f"spec {s._closed_as} is closed")
        a = s.begin + off - s.start
        if a >= s.end:
            raise BTFFormatError(f"string offset {off} is past the string section", offset=a)
        e = s.data.find(b"\0", a, s.end)
        if e < 0:
            raise BTFFormatError(f"string at {off} is not NUL-terminated", offset=a)
        return bytes(s.data[a:e])

    def text(self, off: int) -> str:
        """The string at ``off`` as text (invalid UTF-8 shown as backslash escapes)."""
        return self.bytes_at(off).decode("utf-8", "backslashreplace")

    def close(self, name: str) -> None:
        """Drop the buffer; reading afterwards raises BTFClosedError naming ``name``."""
        self._closed_as = name or "(unnamed)"
        self.data = b""
