"""Queries over a :class:`~btfd.btf.Spec`: names (exact, prefix, glob), the types a type refers
to, and the reference walk to a depth. Pure: no I/O, only the Spec's public API.

Every query takes an optional :class:`Budget` it checks as it goes, so a caller (the daemon)
can stop one that runs too long or was cancelled: the check raises :class:`BudgetError`.

Glob patterns have fnmatch's syntax and meaning (``*``, ``?``, ``[...]``, ``[!...]``, a ``[``
without its ``]`` is literal), but are matched by :class:`Glob` in time linear in the name and
compiled in time linear in the pattern (``fnmatch.translate`` is quadratic on a pattern of
unclosed ``[``, and its regular expressions can backtrack).
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .errors import BTFError
from .kinds import Kind
from .spec import Spec

__all__ = [
    "Budget",
    "BudgetError",
    "Glob",
    "Match",
    "Summary",
    "SIZED_KINDS",
    "matching",
    "prefix_names",
    "name_starts_with",
    "ids_by_prefix",
    "literal_prefix",
    "refs",
    "walk_refs",
    "MAX_DEPTH",
    "MAX_REFERENCED",
]

#: Kinds whose third record word is a size (the others': a type id, or nothing).
SIZED_KINDS = frozenset({Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.DATASEC, Kind.FLOAT})
_CHECK_EVERY = 256  # records walked between budget checks


class Match(IntEnum):
    """How a name pattern matches (the values of btfd.v1.NameMatch)."""

    ANY = 0
    EXACT = 1
    PREFIX = 2
    GLOB = 3


class BudgetError(BTFError):
    """A query stopped by its :class:`Budget`: too long (``RESOURCE_EXHAUSTED`` or
    ``DEADLINE_EXCEEDED``) or cancelled (``CANCELLED``)."""

    def __init__(self, message: str, status: str = "RESOURCE_EXHAUSTED") -> None:
        super().__init__(message)
        self.status = status


class Budget:
    """A time budget a query checks as it works. ``seconds`` None: no time limit (it can
    still be cancelled). ``why`` completes the message when the time runs out (which limit,
    how to raise it). Thread-safe enough: :meth:`cancel` only sets a flag."""

    __slots__ = ("deadline", "clock", "why", "cancelled", "status", "seconds", "restart", "probe")

    def __init__(self, seconds: float | None = None, *, why: str = "", status: str = "RESOURCE_EXHAUSTED",
                 clock: Callable[[], float] = time.monotonic, restart: bool = False,
                 probe: Callable[[], str] | None = None) -> None:
        #: ``probe``: another resource to watch; returns why to stop ("" to go on).
        self.probe = probe
        self.clock = clock
        self.seconds = seconds
        self.restart = restart
        self.deadline = None if seconds is None else clock() + seconds
        self.why = why
        self.status = status
        self.cancelled = ""

    def start(self) -> None:
        """Work starts (again): a ``restart`` budget counts ``seconds`` from now (a budget
        of working time, not of waiting); others keep their deadline."""
        if self.restart and self.seconds is not None:
            self.deadline = self.clock() + self.seconds

    def cancel(self, reason: str = "cancelled", status: str = "CANCELLED") -> None:
        self.cancelled, self.status = reason, status

    def check(self) -> None:
        """Raise :class:`BudgetError` once the time is up or the budget was cancelled."""
        if self.cancelled:
            raise BudgetError(self.cancelled, self.status)
        if self.deadline is not None and self.clock() > self.deadline:
            raise BudgetError(self.why or "the request ran out of time", self.status)
        if self.probe is not None:
            why = self.probe()
            if why:
                raise BudgetError(why, "RESOURCE_EXHAUSTED")


_NO_BUDGET = Budget()


@dataclass(frozen=True, slots=True)
class Summary:
    """One line of a listing: id, kind (the raw kind number), name, size (0 unless sized)."""

    id: int
    kind: int
    name: str
    size: int


# ---------------------------------------------------------------------- globs


class Glob:
    """An fnmatch pattern compiled to a small automaton over pattern positions, run with
    bit sets (a Python int): each character of a name costs a few integer operations,
    whatever the pattern; the pattern is compiled in one pass."""

    __slots__ = ("pattern", "_tests", "_stars", "_final", "_accepts", "_start")

    _CACHE_MAX = 4096  # distinct characters whose acceptance masks are remembered

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tests: list[Callable[[str], bool] | None] = []  # None: a star
        n = len(pattern)
        # close[j]: index of the first "]" at or after j (n when none): finding a class's end
        # is O(1), so a pattern of unclosed "[" compiles in linear time.
        close = [n] * (n + 1)
        for j in range(n - 1, -1, -1):
            close[j] = j if pattern[j] == "]" else close[j + 1]
        i = 0
        while i < n:
            c = pattern[i]
            i += 1
            if c == "*":
                if not tests or tests[-1] is not None:
                    tests.append(None)
            elif c == "?":
                tests.append(_any_char)
            elif c == "[":
                j = i
                if j < n and pattern[j] == "!":
                    j += 1
                if j < n and pattern[j] == "]":
                    j += 1
                j = close[j] if j <= n else n
                if j >= n:
                    tests.append("[".__eq__)
                else:
                    # One bracket expression alone: fnmatch's own meaning (ranges, "!",
                    # escapes), compiled in time linear in its length.
                    tests.append(_class_test(pattern[i - 1 : j + 1]))
                    i = j + 1
            else:
                tests.append(c.__eq__)
        self._tests = tests
        stars = 0
        for k, t in enumerate(tests):
            if t is None:
                stars |= 1 << k
        self._stars = stars
        self._final = 1 << len(tests)
        self._accepts: dict[str, int] = {}
        self._start = self._closure(1)

    def _closure(self, d: int) -> int:
        # A star can match nothing: from its position, the next one too (stars are never
        # adjacent, so one step reaches everything).
        return d | ((d & self._stars) << 1)

    def _accept(self, c: str) -> int:
        m = self._accepts.get(c)
        if m is None:
            m = 0
            for k, t in enumerate(self._tests):
                if t is not None and t(c):
                    m |= 1 << k
            if len(self._accepts) < self._CACHE_MAX:
                self._accepts[c] = m
        return m

    def match(self, name: str) -> bool:
        """Does the whole of ``name`` match (as ``fnmatch.fnmatchcase``)?"""
        d = self._start
        stars = self._stars
        for c in name:
            d = ((d & self._accept(c)) << 1) | (d & stars)
            if not d:
                return False
            d |= (d & stars) << 1
        return bool(d & self._final)


def _any_char(c: str) -> bool:
    return True


def _class_test(text: str) -> Callable[[str], bool]:
    m = re.compile(fnmatch.translate(text), re.S).match
    return lambda c: m(c) is not None


def literal_prefix(glob: str) -> str:
    """The part of a glob before its first wildcard (``[``, ``*``, ``?``)."""
    for i, c in enumerate(glob):
        if c in "*?[":
            return glob[:i]
    return glob


# ---------------------------------------------------------------------- names


def _string_sections(spec: Spec) -> Iterator[tuple[Any, int, int, int]]:
    """(buffer, start, end, first string offset) of a spec's string section and its bases'."""
    chain = []
    s: Spec | None = spec
    while s is not None:
        chain.append(s)
        s = s.base
    base_off = 0
    for x in reversed(chain):  # the base's strings come first in the offset space
        h = x.header
        yield x.data, h.strs_start, h.strs_end, base_off
        base_off += h.strs_end - h.strs_start


def prefix_names(spec: Spec, prefix: bytes, most: int) -> set[bytes] | None:
    """Every string a name can be that starts with ``prefix`` (no NUL in it): from each place
    the prefix occurs in the string sections, found by the buffer's own (C) search, to the
    next NUL. Any place counts, not only starts of strings: a name_off may point into a
    string. None when there are more than ``most`` (too many to look up one by one)."""
    names: set[bytes] = set()
    for data, ss, se, _ in _string_sections(spec):
        p = data.find(prefix, ss, se)
        while p >= 0:
            e = data.find(b"\0", p, se)
            names.add(bytes(data[p : e if e >= 0 else se]))
            if len(names) > most:
                return None
            p = data.find(prefix, p + 1, se)
    return names


def name_starts_with(spec: Spec, prefix: bytes) -> Callable[[int], bool]:
    """A test of a name_off: does the string there start with ``prefix``? Compared in place
    (the buffer's own search bounded to the prefix's length), nothing decoded or collected."""
    sections = list(_string_sections(spec))
    n = len(prefix)

    def test(name_off: int) -> bool:
        for data, ss, se, off0 in reversed(sections):  # own strings last in the offset space
            if name_off >= off0:
                at = ss + name_off - off0
                return at + n <= se and bool(data.find(prefix, at, at + n) == at)
        return False

    return test


def ids_by_prefix(spec: Spec, prefix: bytes, kind: Kind | None, lo: int) -> list[int] | None:
    """Own ids >= lo of the types whose name starts with ``prefix``, through the name index
    (every string the prefix starts, found at C speed, looked up by name); None when that
    would take longer than walking every record (a short, common prefix)."""
    if b"\0" in prefix:
        return []  # no name has a NUL in it
    names = prefix_names(spec, prefix, most=max(1024, spec.count // 16))
    if names is None:
        return None
    ids: list[int] = []
    for n in names:
        try:
            name = n.decode("utf-8")
        except UnicodeDecodeError:
            return None  # the walk compares names as the listing shows them
        ids.extend(t for t in spec.find_ids(name, kind) if t >= lo)
    ids.sort()
    return ids


def _summary(tid: int, info: int, name: str, st: int) -> Summary:
    k = (info >> 24) & 0x7F
    return Summary(tid, k, name, st if k in SIZED_KINDS else 0)


def matching(spec: Spec, pattern: str = "", match: Match | int = Match.ANY, *, kind: Kind | None = None,
             start_id: int = 0, budget: Budget | None = None) -> Iterator[Summary]:
    """Summaries of the spec's own types from ``start_id`` on whose name matches, in id order.

    EXACT uses the name index; PREFIX (and a glob's literal prefix) finds the strings that can
    match in the string sections and looks them up in the name index, or, for a short common
    prefix, walks the records testing each one's name in place (only matches are decoded). A
    glob without a literal prefix walks them all. ANY lists everything (of ``kind``)."""
    b = budget or _NO_BUDGET
    b.check()
    lo = max(start_id, spec.start_id)
    if match == Match.EXACT:
        for t in spec.find_ids(pattern, kind):
            if t >= lo:
                _, info, st = spec.raw(t)
                yield _summary(t, info, pattern, st)
        return
    want: Callable[[str], bool] | None = None
    lit = pattern if match == Match.PREFIX else ""
    if match == Match.GLOB:
        want = Glob(pattern).match
        lit = literal_prefix(pattern)
    starts: Callable[[int], bool] | None = None
    if lit:
        ids = ids_by_prefix(spec, lit.encode(), kind, lo)
        if ids is not None:
            for i, t in enumerate(ids):
                if i % _CHECK_EVERY == 0:
                    b.check()
                name_off, info, st = spec.raw(t)
                name = spec.string(name_off)
                if want is None or want(name):
                    yield _summary(t, info, name, st)
            return
        starts = name_starts_with(spec, lit.encode())
    n = 0
    for tid, name_off, info, st in spec.iter_raw(start_id or None):
        n += 1
        if n % _CHECK_EVERY == 0:
            b.check()
        if kind is not None and (info >> 24) & 0x7F != kind:
            continue
        if starts is not None and not starts(name_off):
            continue
        name = spec.string(name_off) if name_off else ""
        if want is not None and not want(name):
            continue
        yield _summary(tid, info, name, st)


# ---------------------------------------------------------------------- references


#: How deep LookupType follows references, and how many referenced types it returns at most
#: (the daemon's defaults: ``btfd --max-depth``; btfctl's local path reads with these too).
MAX_DEPTH = 64
MAX_REFERENCED = 10_000


def refs(spec: Spec, tid: int) -> list[int]:
    """Ids type ``tid`` refers to directly (members, element and index, return and parameter
    types, variables, the one referenced type), without the void id 0."""
    return [r for r in spec.refs(tid) if r]


def walk_refs(starts: list[tuple[Spec, int]], depth: int, *, most: int,
              budget: Budget | None = None) -> list[tuple[Spec, int]]:
    """The types reachable from ``starts`` ((spec, id) pairs) in 1 to ``depth`` steps, breadth
    first, each once per spec and the starts left out, as (spec, id) pairs: at most ``most``
    of them. A type reached through a split spec is reported with that spec (which can
    decode its base's ids too)."""
    b = budget or _NO_BUDGET
    seen = {(id(s), t) for s, t in starts}
    frontier = list(starts)
    out: list[tuple[Spec, int]] = []
    for _ in range(depth):
        if not frontier:
            break
        b.check()
        nxt: list[tuple[Spec, int]] = []
        for spec, t in frontier:
            for r in refs(spec, t):
                key = (id(spec), r)
                if key not in seen and len(out) < most:
                    seen.add(key)
                    out.append((spec, r))
                    nxt.append((spec, r))
        frontier = nxt
    return out
