"""The fd socket's protocol without sockets: bytes pushed through the two sans-I/O ends
(btfd.fdproto), and docs/PROTOCOL.md checked against it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from btfd.fdproto import (
    CODES,
    MAX_LINE,
    Answer,
    AnswerReader,
    FdError,
    Request,
    RequestReader,
    encode_answer,
    encode_error,
    encode_request,
    parse_request,
)

PROTOCOL_MD = Path(__file__).parent.parent / "docs" / "PROTOCOL.md"


def _closed() -> tuple[AnswerReader, list[int]]:
    closed: list[int] = []
    return AnswerReader(closed.append), closed


@pytest.mark.parametrize(("line", "want"), [
    (b"vmlinux", Request("vmlinux")),
    (b"", Request("vmlinux")),
    (b"  module/veth  ", Request("module/veth")),
    (b"vmlinux +index", Request("vmlinux", True)),
    (b"module/veth +index", Request("module/veth", True)),
    (b"+index", Request("vmlinux", True)),
    (b"vmlinux +c", Request("vmlinux", False, True)),
    (b"module/veth +c +index", Request("module/veth", True, True)),
])
def test_request_lines(line: bytes, want: Request) -> None:
    assert parse_request(line) == want


@pytest.mark.parametrize(("line", "message"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"vmlinux +everything", "unknown request option"),
    (b"x" * (MAX_LINE + 1), "longer than"),
])
def test_bad_request_lines(line: bytes, message: str) -> None:
    with pytest.raises(FdError, match=message) as e:
        parse_request(line)
    assert e.value.status == "INVALID_ARGUMENT"


def test_request_roundtrip_through_a_reader_in_pieces() -> None:
    wire = encode_request("vmlinux") + encode_request("module/veth", index=True)
    r = RequestReader()
    got = []
    for i in range(len(wire)):  # one byte at a time: a request is whole only at its \n
        r.feed(wire[i : i + 1])
        while (req := r.next()) is not None:
            got.append(req)
    assert got == [Request("vmlinux"), Request("module/veth", True)]


def test_request_reader_refuses_an_endless_line_before_its_end() -> None:
    r = RequestReader()
    r.feed(b"a" * MAX_LINE)
    assert r.next() is None
    r.feed(b"a")
    with pytest.raises(FdError, match="longer than"):
        r.next()


def test_answers_carry_their_fds() -> None:
    r, closed = _closed()
    a = Answer("vmlinux", 5519912, "kernel-mmap", None, 447876)
    wire = encode_answer(a)
    r.feed(wire[:10], [7, 8])  # the fds come with the first bytes
    assert r.next() is None
    r.feed(wire[10:], [])
    assert r.next() == (a, [7, 8])
    assert closed == []


def test_all_three_fds_in_their_order() -> None:
    r, closed = _closed()
    a = Answer("vmlinux", 100, "kernel-mmap", None, 64, 2_800_000)
    assert a.nfds == 3
    r.feed(encode_answer(a), [3, 4, 5])
    assert r.next() == (a, [3, 4, 5])
    only_c = Answer("vmlinux", 100, "kernel-mmap", None, 0, 10)
    r.feed(encode_answer(only_c), [6])
    with pytest.raises(FdError, match="expected 2 fd"):
        r.next()
    assert closed == [6]
    assert encode_request("vmlinux", index=True, c=True) == b"vmlinux +index +c\n"


def test_blob_only_answer_as_old_clients_see_it() -> None:
    import json

    a = Answer("module/veth", 4096, "sealed-memfd", "vmlinux")
    body = json.loads(encode_answer(a))
    assert body == {"spec": "module/veth", "size": 4096, "mode": "sealed-memfd", "base": "vmlinux"}
    r, _ = _closed()
    r.feed(encode_answer(a), [3])
    assert r.next() == (a, [3])


@pytest.mark.parametrize("code", CODES)
def test_error_answers_close_stray_fds(code: str) -> None:
    r, closed = _closed()
    r.feed(encode_error("no spec named 'x'", code), [9])
    with pytest.raises(FdError) as e:
        r.next()
    assert (e.value.status, str(e.value)) == (code, "no spec named 'x'") and closed == [9]


@pytest.mark.parametrize(("wire", "fds", "message"), [
    (b"not json\n", [4], "malformed"),
    (b"[1, 2]\n", [], "malformed"),
    (b'{"spec": "vmlinux"}\n', [4], "malformed"),
    (b'{"spec": "vmlinux", "size": -1, "mode": "x"}\n', [4], "malformed"),
    (b'{"spec": "vmlinux", "size": 10, "mode": "x", "index": {"size": 5}}\n', [4], "expected 2 fd"),
    (b'{"spec": "vmlinux", "size": 10, "mode": "x"}\n', [], "expected 1 fd"),
    (b'{"spec": "vmlinux", "size": 10, "mode": "x"}\n', [4, 5], "expected 1 fd"),
])
def test_malformed_answers_are_internal_errors(wire: bytes, fds: list[int], message: str) -> None:
    r, closed = _closed()
    r.feed(wire, fds)
    with pytest.raises(FdError, match=message) as e:
        r.next()
    assert e.value.status == "INTERNAL" and sorted(closed) == sorted(fds)


def test_endless_answer_is_refused() -> None:
    r, closed = _closed()
    r.feed(b"{" * (70 * 1024), [5])
    with pytest.raises(FdError, match="longer than"):
        r.next()
    assert closed == [5]


def test_protocol_doc_lists_exactly_the_codes() -> None:
    text = PROTOCOL_MD.read_text()
    section = text[text.index("On failure") : text.index("4. Ask again")]
    documented = set(re.findall(r"`([A-Z_]{5,})`", section))
    assert documented == set(CODES)
    assert f"at most {MAX_LINE} bytes" in text
    assert "+index" in text and "+c" in text
