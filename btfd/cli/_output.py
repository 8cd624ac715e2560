"""``-o FILE``: where a command's output goes. A regular file is written whole or not at all
(a temporary file beside it, renamed on success), so a failed run leaves no truncated file;
anything else that exists (``/dev/null``, a fifo) is written in place."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from . import EXIT_USAGE

__all__ = ["output"]


@contextmanager
def output(args: argparse.Namespace) -> Iterator[TextIO]:
    """The text stream to print to: stdout, or ``--output`` (``-`` means stdout)."""
    from ._rpc import CliExit

    path = getattr(args, "output", None)
    if path in (None, "-"):
        yield sys.stdout
        return
    try:
        special = not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        special = False  # does not exist yet (or cannot be looked at: open says why)
    if special:  # /dev/null, a fifo, a tty: written in place, never replaced
        try:
            g = open(path, "w")
        except OSError as e:
            raise CliExit(EXIT_USAGE, f"cannot write {path}: {e.strerror}") from None
        try:
            yield g
        finally:
            f_close(g, path)
        return
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        f = open(tmp, "w")
    except OSError as e:
        raise CliExit(EXIT_USAGE, f"cannot write {path}: {e.strerror}") from None
    done = False
    try:
        try:
            yield f
        finally:
            f_close(f, path)
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise CliExit(EXIT_USAGE, f"cannot write {path}: {e.strerror}") from None
        done = True
    finally:
        if not done:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def f_close(f: TextIO, path: str) -> None:
    from ._rpc import CliExit

    try:
        f.close()
    except OSError as e:  # the last buffered write failed (disk full)
        raise CliExit(EXIT_USAGE, f"cannot write {path}: {e.strerror}") from None
