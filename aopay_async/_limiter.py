"""Rate limiting: the small protocol every limiter speaks, and the in-process token bucket.

This module owns *when* an attempt may start. It must never send anything, import aiohttp,
or let an attempt start early: the promise is that in every window of T seconds at most
``burst + rate * T`` attempts start, and that over a long run the rate achieved is the rate
asked for (within 1%).

Why not aiolimiter: its bucket starts full and drains by elapsed time, so
``AsyncLimiter(50, 1)`` lets ~99 through in the first second, and ``AsyncLimiter(1, 1/50)``
(which never overshoots) runs ~1.6% slow because each wake-up schedules from the moment it
happened to run. The bucket here is GCRA ("virtual scheduling"): each caller reserves the
next slot on a fixed grid of ``1/rate`` seconds, computed from the previous slot, not from
when the loop got round to it, so lateness never accumulates and nothing starts early.

The grid alone promises start *times*, not starts: when the event loop stalls (GC, a big
decode, a loaded machine), every caller whose slot passed during the stall wakes at once and
sends together, a burst of stall × rate. That is why the demo saw 8 and 11 429s from a server
enforcing the same rate. So a woken caller is also admitted against the starts that really
happened (a second GCRA over actual start times, :meth:`TokenBucket.admit`): after a stall at
most ``burst`` go at once and the rest follow one interval apart. A stall shifts the schedule
once, by its length; it is never caught up.

But the timer itself is late: ``asyncio.sleep`` wakes ~1 ms after its time (epoll's timeout is
in whole milliseconds), and had each real start counted from when it happened, that lateness
piled up: 47.1/s for 50/s (-5.8%, ``python -m benchmarks.bench_limiter``), the very flaw of
``AsyncLimiter(1, 1/50)``. So a start at most a quarter of an interval after its own slot
counts at its slot; only a later one (a stall) moves the schedule. The price: two real starts
may stand up to a quarter interval closer than the grid (at 50/s, 15 ms instead of 20), never
more than ``burst`` of them at once.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._adaptive import RateController

__all__ = ["AdaptiveLimiter", "RateLimiter", "TokenBucket"]


@runtime_checkable
class RateLimiter(Protocol):
    """What the client needs of a limiter: wait until one more attempt may start.

    ``acquire`` returns once the caller may send; it may be cancelled at any point (the
    client bounds it by the call's deadline), and a cancelled acquire must never let the
    limiter exceed its rate (handing the unused slot back where it can). A Redis-backed or
    adaptive limiter plugs in here.
    """

    async def acquire(self) -> None:
        """Wait for one token."""


class TokenBucket:
    """An exact token bucket of ``burst`` tokens refilled at ``rate`` per second.

    Starts full. ``acquire`` reserves a start time ``max(now, tat - tolerance)`` where ``tat``
    (theoretical arrival time) advances by ``1/rate`` per reservation; the caller sleeps until
    then. If the caller is cancelled while waiting and its slot is still the newest, the slot
    is handed back, so cancelled callers do not slow the others; an older slot cannot be
    returned without moving later callers' slots, so it goes unused (one start fewer, never
    one too many).
    """

    __slots__ = ("_burst", "_interval", "_jitter", "_rate", "_started", "_tat", "_tolerance")

    def __init__(self, rate: float, burst: int = 1) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise TypeError(f"rate must be a number, not {type(rate).__name__}")
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"rate must be a finite number above 0, not {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int):
            raise TypeError(f"burst must be an int, not {type(burst).__name__}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._rate = float(rate)
        self._burst = burst
        self._interval = 1.0 / self._rate
        self._tolerance = (burst - 1) * self._interval
        # A start this late after its slot still counts at its slot (the timer's lateness).
        self._jitter = self._interval / 4
        self._tat = -math.inf
        # The theoretical arrival time over the starts that really happened (see admit).
        self._started = -math.inf

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def burst(self) -> int:
        """The bucket's capacity."""
        return self._burst

    def reserve(self, now: float) -> float:
        """Reserve the next slot at loop time *now*; return when it may start (≥ *now*).

        Pure bookkeeping, no waiting: the building block of :meth:`acquire`, and what a test
        uses to check the arithmetic without an event loop.
        """
        tat = max(self._tat, self._started, now)
        start = tat - self._tolerance
        if start < now:
            start = now
        self._tat = tat + self._interval
        return start

    def admit(self, now: float, slot: float = -math.inf) -> float:
        """At loop time *now*, after the caller's *slot* came: may it really start now?

        Returns 0.0 and records the start when the starts that really happened stay within
        the bucket (``burst + rate * T`` in any window T, less the timer's jitter); else the
        seconds to wait first. A start at most a quarter interval after *slot* is recorded
        at *slot*, so the timer's lateness never slows the rate. Pure bookkeeping, like
        :meth:`reserve`.
        """
        earliest = self._started - self._tolerance
        if now < earliest:
            return earliest - now
        at = slot if now - slot <= self._jitter else now
        self._started = (self._started if self._started > at else at) + self._interval
        return 0.0

    async def acquire(self) -> None:
        """Wait until this caller's slot comes and starting keeps the real starts in bounds."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = self.reserve(now)
        if start > now:
            my_tat = self._tat
            try:
                await asyncio.sleep(start - now)
            except asyncio.CancelledError:
                if self._tat == my_tat:
                    # Nobody reserved after us: give the slot back.
                    self._tat -= self._interval
                raise
        # Without a stall this admits at once; after one it spaces the callers that woke
        # together one interval apart.
        while (wait := self.admit(loop.time(), start)) > 0.0:  # noqa: ASYNC110 - a timed wait
            await asyncio.sleep(wait)

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate:g}, burst={self._burst})"


class AdaptiveLimiter:
    """``adaptive=True``: a local bucket at the controller's rate, in front of *inner*.

    The rate comes from a :class:`~aopay_async._adaptive.RateController` (the client reports
    throttles to it); the spacing is the same GCRA as :class:`TokenBucket`, with the interval
    read afresh at each reservation. *inner* (a Redis or custom limiter, or None) is then
    acquired as usual, so the shared limit still holds and the adaptive cut is this
    process's own: each process learns from the 429s it receives.
    """

    __slots__ = ("_burst", "_epoch", "_inner", "_tat", "controller")

    def __init__(
        self, controller: RateController, burst: int = 1, inner: RateLimiter | None = None
    ) -> None:
        self.controller = controller
        self._burst = burst
        self._inner = inner
        self._tat = -math.inf
        self._epoch = 0

    def reserve(self, now: float) -> float:
        """Reserve the next slot at loop time *now*; return when it may start (≥ *now*)."""
        controller = self.controller
        if controller.cuts != self._epoch:
            # A cut: the slots queued at the old rate are given up (their callers take new
            # places when they wake), so the new rate starts now, not after the old queue.
            self._epoch = controller.cuts
            if self._tat > now:
                self._tat = now
        interval = 1.0 / controller.rate(now)
        tat = self._tat if self._tat > now else now
        start = tat - (self._burst - 1) * interval
        if start < now:
            start = now
        self._tat = tat + interval
        self.controller.sent(start)
        return start

    async def acquire(self) -> None:
        """Wait for this caller's slot at the adaptive rate, then for *inner*'s token.

        A caller whose wait spans a cut takes a new place at the new rate: the slots
        reserved at the old rate would otherwise go out back to back just after the cut,
        meet a server bucket the overshoot had emptied, and cut the rate a second time
        (measured: two cuts per 429 episode, the rate dipping to 60% of the quota).
        """
        loop = asyncio.get_running_loop()
        controller = self.controller
        while True:
            now = loop.time()
            epoch = controller.cuts
            before = self._tat
            start = self.reserve(now)
            if start > now:
                my_tat = self._tat
                try:
                    await asyncio.sleep(start - now)
                except asyncio.CancelledError:
                    if self._tat == my_tat:
                        self._tat = before  # nobody reserved after us: give the slot back
                    raise
            if controller.cuts == epoch:
                break
        if self._inner is not None:
            await self._inner.acquire()

    def __repr__(self) -> str:
        return f"AdaptiveLimiter({self.controller!r}, burst={self._burst}, inner={self._inner!r})"
