"""The sliding window: two counts over the last few seconds, kept as a ring of time slices.

This module owns one small value, :class:`SlidingWindow`, and its transitions; the retry
budget (deposits ``a``, withdrawals ``b``) and the circuit breaker (outcomes ``a``, failures
``b``) each keep one. Every transition takes the time as an argument (the client passes its
loop's monotonic clock). It must never await, sleep, read a clock of its own, allocate while
the current slice lasts, or import aiohttp: it only counts; the budget and the breaker decide.

How it counts: the window of ``seconds`` is ``SLICES`` slices wide. An event lands in the
slice its time falls in (slice number ``now // width``); a slice's counts leave the totals
when the ring reaches it again, so an event expires ``seconds`` after it was counted, to one
slice. A time earlier than the newest slice counts in the newest slice (a clock that never
goes backwards never sees this). Why slices and not a log of times: a count costs an index
check and two additions, with no allocation, and both users count on every call's fast path
(a budget deposit and a breaker success per call: at 200 calls/s a log would hold 2,000
entries per 10 s window, the ring 20 integers).
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["SLICES", "SlidingWindow"]

#: Slices the window is kept in (10 slices of 1 s for a 10 s window).
SLICES: Final = 10


class SlidingWindow:
    """Two counts, ``a`` and ``b``, over the last ``seconds`` (to one slice).

    ``a`` and ``b`` are the totals over the window as of the last transition; read them
    after :meth:`advance` (or any ``add_*``) at the current time. *now* is monotonic seconds.
    """

    __slots__ = ("_end", "_index", "_newest", "_ring_a", "_ring_b", "_width", "a", "b")

    def __init__(self, seconds: float) -> None:
        self._width = seconds / SLICES
        self.reset()

    def reset(self) -> None:
        """Forget every count (a fresh, empty window)."""
        self._ring_a = [0] * SLICES
        self._ring_b = [0] * SLICES
        self.a = 0
        self.b = 0
        self._newest = -(2**62)  # the slice number the ring's newest entry belongs to
        self._index = 0  # its place in the ring
        self._end = -math.inf  # when it ends: before then, no slice expires (the fast path)

    def advance(self, now: float) -> int:
        """Expire slices older than the window at *now*; return the ring index of its slice."""
        if now < self._end:
            return self._index
        number = int(now // self._width)
        newest = self._newest
        if number > newest:
            if number - newest >= SLICES:
                self._ring_a = [0] * SLICES
                self._ring_b = [0] * SLICES
                self.a = 0
                self.b = 0
            else:
                ring_a, ring_b = self._ring_a, self._ring_b
                for n in range(newest + 1, number + 1):
                    i = n % SLICES
                    self.a -= ring_a[i]
                    self.b -= ring_b[i]
                    ring_a[i] = 0
                    ring_b[i] = 0
            self._newest = number
            self._index = number % SLICES
            self._end = (number + 1) * self._width
        return self._index

    def add_a(self, now: float) -> None:
        """Count one in ``a`` at *now* (the fast path: one comparison before the slice ends)."""
        i = self._index if now < self._end else self.advance(now)
        self._ring_a[i] += 1
        self.a += 1

    def add_b(self, now: float) -> None:
        """Count one in ``b`` at *now*."""
        i = self._index if now < self._end else self.advance(now)
        self._ring_b[i] += 1
        self.b += 1

    def add_ab(self, now: float) -> None:
        """Count one in both ``a`` and ``b`` at *now* (the breaker's failure: an outcome too)."""
        i = self._index if now < self._end else self.advance(now)
        self._ring_a[i] += 1
        self._ring_b[i] += 1
        self.a += 1
        self.b += 1

    def totals(self, now: float) -> tuple[int, int]:
        """``(a, b)`` over the window at *now*."""
        self.advance(now)
        return self.a, self.b

    def __repr__(self) -> str:
        return f"SlidingWindow(a={self.a}, b={self.b})"
