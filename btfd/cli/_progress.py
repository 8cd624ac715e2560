"""Progress on stderr for commands that take over a second, only when stderr is a terminal:
``btfctl CMD: what  done/total (pct%)  Ns``."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress", "Elapsed"]


class Progress:
    """``tick(what, done, total)`` redraws the line at most 4 times a second once the command
    has run for ``after`` seconds; ``done()`` ends the line. Silent off a tty."""

    def __init__(self, command: str, *, after: float | None = None) -> None:
        import os

        self.command = command
        self.on = sys.stderr.isatty()
        self.t0 = time.monotonic()
        # $BTFCTL_PROGRESS_AFTER: seconds before the first line (tests set 0)
        self.after = after if after is not None else float(os.environ.get("BTFCTL_PROGRESS_AFTER", "1"))
        self.last = 0.0
        self.shown = False

    def tick(self, what: str, done: int | None = None, total: int | None = None) -> None:
        if not self.on:
            return
        now = time.monotonic()
        if now - self.t0 < self.after or now - self.last < 0.25:
            return
        self.last = now
        count = ""
        if done is not None and total:
            count = f" {done}/{total} ({100 * done // total}%)"
        elif done is not None:
            count = f" {done}"
        sys.stderr.write(f"\r\033[Kbtfctl {self.command}: {what}{count} ({now - self.t0:.0f}s)")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


class Elapsed:
    """Context manager for one long step with no steps of its own (a single RPC, a local
    minimisation): a thread shows the elapsed time on a tty stderr after a second."""

    def __init__(self, command: str, what: str) -> None:
        import threading

        self.p = Progress(command)
        self.what = what
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.25):
            self.p.tick(self.what)

    def __enter__(self) -> Elapsed:
        if self.p.on:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.p.done()
