"""The fd socket's protocol, without I/O: what a request line and an answer line are.

Both ends use this module -- the daemon (:mod:`btfd.server.fdpass`) and the client
(:mod:`btfd.shared`) -- and feed it the bytes and fds their sockets gave them; nothing here
touches a socket, so the protocol is tested by pushing bytes through two in-memory peers
(``tests/test_fdproto.py``). ``docs/PROTOCOL.md`` is the prose; a test checks that it lists
exactly :data:`CODES`.

A request is one line: a spec name, optionally followed by options, each a space and a ``+``
word (``vmlinux\\n``, ``module/veth +index\\n``). An answer is one line of JSON: success
(:class:`Answer`) carries the blob's fd, and with ``+index`` the fd of the spec's shared index
after it, in one ``SCM_RIGHTS`` message; failure (:class:`FdError`) carries none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .btf import BTFError

__all__ = [
    "CODES",
    "MAX_LINE",
    "OPTIONS",
    "Answer",
    "AnswerReader",
    "FdError",
    "Request",
    "RequestReader",
    "encode_answer",
    "encode_error",
    "encode_request",
    "parse_request",
]

#: Longest request line, without its ``\n``.
MAX_LINE = 4096
#: Every error code an answer may carry (the gRPC status names of the same errors).
CODES = (
    "NOT_FOUND",
    "INVALID_ARGUMENT",
    "PERMISSION_DENIED",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "INTERNAL",
)
#: Request options this protocol knows.
OPTIONS = frozenset({"index", "c"})
#: Longest answer line a client accepts (answers are ~150 bytes; errors quote at most 128
#: characters of the request).
MAX_ANSWER = 64 * 1024


class FdError(BTFError):
    """An error answer (or a broken exchange); ``status`` is one of :data:`CODES`,
    ``str(exc)`` the message."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    """One request: the spec's name ("" means vmlinux), whether its index and its rendered C
    header are wanted."""

    spec: str
    index: bool = False
    c: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """A success answer. ``index_size`` > 0: the spec's index (format in
    :mod:`btfd.btf.index`) follows the blob's fd; ``c_size`` > 0: then its rendered C header."""

    spec: str
    size: int
    mode: str
    base: str | None = None
    index_size: int = 0
    c_size: int = 0

    @property
    def nfds(self) -> int:
        return 1 + (self.index_size > 0) + (self.c_size > 0)


def encode_request(spec: str, *, index: bool = False, c: bool = False) -> bytes:
    return (spec + (" +index" if index else "") + (" +c" if c else "") + "\n").encode()


def parse_request(line: bytes) -> Request:
    """A request line without its ``\\n``; FdError ``INVALID_ARGUMENT`` when it is not one."""
    if len(line) > MAX_LINE:
        raise FdError(f"request line longer than {MAX_LINE} bytes", "INVALID_ARGUMENT")
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise FdError("spec name is not UTF-8", "INVALID_ARGUMENT") from None
    spec, *opts = (" " + text).split(" +")
    for o in opts:
        if o not in OPTIONS:
            raise FdError(f"unknown request option +{o[:64]} (known: "
                          f"{', '.join('+' + k for k in sorted(OPTIONS))})", "INVALID_ARGUMENT")
    return Request(spec.strip() or "vmlinux", "index" in opts, "c" in opts)


def encode_answer(a: Answer) -> bytes:
    body: dict[str, Any] = {"spec": a.spec, "size": a.size, "mode": a.mode, "base": a.base}
    if a.index_size:
        body["index"] = {"size": a.index_size}
    if a.c_size:
        body["c"] = {"size": a.c_size}
    return (json.dumps(body) + "\n").encode()


def encode_error(message: str, code: str) -> bytes:
    assert code in CODES, code
    return (json.dumps({"error": message, "code": code}) + "\n").encode()


class RequestReader:
    """The daemon's side: bytes in (:meth:`feed`), requests out (:meth:`next`)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> Request | None:
        """The next whole request, None until one is complete; FdError for a bad line (a line
        over :data:`MAX_LINE` is refused as soon as it is that long, without its end)."""
        i = self._buf.find(b"\n")
        if i < 0:
            if len(self._buf) > MAX_LINE:
                raise FdError(f"request line longer than {MAX_LINE} bytes", "INVALID_ARGUMENT")
            return None
        line, self._buf = self._buf[:i], self._buf[i + 1 :]
        return parse_request(line)


class AnswerReader:
    """The client's side: bytes and the fds that came with them in (:meth:`feed`), answers
    out (:meth:`next`). It owns the fds it was fed until :meth:`next` hands them over; fds
    that belong to no success answer are given to ``close`` (``os.close`` in real use)."""

    def __init__(self, close: Any) -> None:
        self._buf = b""
        self._fds: list[int] = []
        self._close = close

    def feed(self, data: bytes, fds: list[int]) -> None:
        self._buf += data
        self._fds.extend(fds)

    def next(self) -> tuple[Answer, list[int]] | None:
        """``(answer, fds)`` once a line is whole, None before; FdError for an error answer
        or a malformed one (``INTERNAL``). Split pipelined answers yourself: this reader
        expects one answer's fds to arrive with (or before) its line."""
        i = self._buf.find(b"\n")
        if i < 0:
            if len(self._buf) > MAX_ANSWER:
                self.close()
                raise FdError(f"answer line longer than {MAX_ANSWER} bytes", "INTERNAL")
            return None
        line, self._buf = self._buf[:i], self._buf[i + 1 :]
        try:
            body = json.loads(line)
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            self.close()
            raise FdError(f"malformed answer: {line[:200]!r}", "INTERNAL") from None
        if "error" in body:
            self.close()
            code = str(body.get("code", "UNKNOWN"))
            raise FdError(str(body["error"]), code)
        try:
            idx, hdr = body.get("index") or {}, body.get("c") or {}
            a = Answer(str(body["spec"]), int(body["size"]), str(body["mode"]),
                       str(body["base"]) if body.get("base") else None,
                       int(idx.get("size", 0)) if isinstance(idx, dict) else -1,
                       int(hdr.get("size", 0)) if isinstance(hdr, dict) else -1)
            if a.size <= 0 or a.index_size < 0 or a.c_size < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            self.close()
            raise FdError(f"malformed answer: {line[:200]!r}", "INTERNAL") from None
        if len(self._fds) != a.nfds:
            n = len(self._fds)
            self.close()
            raise FdError(f"expected {a.nfds} fd(s) with the answer, got {n}", "INTERNAL")
        fds, self._fds = self._fds, []
        return a, fds

    def close(self) -> None:
        """Close every fd not handed over."""
        while self._fds:
            self._close(self._fds.pop())
