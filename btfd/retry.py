"""The retry rules every btfd client path shares (gRPC calls and fd requests): exponential
backoff with jitter, within a budget of wall time counted from the first attempt (attempts
included, not only sleeps). No gRPC and no BTF library here: both client paths import it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Backoff for one logical call: sleeps start at ``first`` seconds and double up to
    ``cap`` (each jittered to 50-100%), and never reach past ``budget`` seconds after the
    first attempt (``clock`` is :func:`time.monotonic`)."""

    def __init__(self, budget: float, *, first: float = 0.05, cap: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.deadline = clock() + budget
        self.first = self.next = first
        self.cap = cap

    def pause(self) -> float | None:
        """Seconds to sleep before the next attempt; None: the budget is spent, give up."""
        left = self.deadline - self.clock()
        if left <= 0:
            return None
        d = min(self.next * (0.5 + random.random() / 2), left)
        self.next = min(self.next * 2, self.cap)
        return d

    def progress(self) -> None:
        """The call got somewhere (a page of a stream): start backing off from scratch."""
        self.next = self.first
