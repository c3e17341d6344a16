"""The adaptive rate: a 429 pushes the send rate down; time without one lets it climb back.

This module owns the arithmetic of ``AOPayClient(adaptive=True)``: :class:`RateController`
is a value with transitions that take the time as an argument (the client passes its loop's
monotonic clock). It must never await, sleep, read a clock of its own, or import aiohttp; the
limiter that spaces attempts at :meth:`RateController.rate` lives in ``_limiter.py``.

The shape is botocore's adaptive retry mode (itself TCP CUBIC, RFC 8312), with its constants:

- on a throttle (a 429, or any answer carrying ``Retry-After``) at allowed rate ``r``,
  remember ``w_max = r`` and cut to ``beta × w_max`` (``beta`` = 0.7);
- afterwards the rate is ``w_max + C × (t − K)³`` with ``K = ∛(w_max × (1 − beta) / C)``
  (``C`` = 0.4): a fast climb back, a plateau just under ``w_max`` (where the quota was
  found), then a probe above it; never above the ceiling (``rate_limit``), never below the
  floor (0.5/s, so a client always keeps asking);
- the measured send rate is an exponentially weighted average over 0.5 s buckets (weight 0.8
  on the newest bucket, botocore's smoothing); it is reported, not used to cut.

A second change from botocore, measured: botocore takes ``w_max = min(r, measured rate)``.
On a loaded machine the measured rate runs 10-20% under the allowed one (every late wake-up
of the event loop is lost at burst 1), so the plateau settled 15-20% under the quota and the
client reached 78% of a 100/s quota. Taking the allowed rate puts the plateau where the
*actual* rate meets the quota, and a client sending under its allowance is still brought
down, by the next cut (each new epoch may cut again).
One change from botocore: a throttle answering an attempt that took its place in the queue
before the last cut is not news (the cut already answered it), so it does not cut again.
Each attempt notes the cut count (its *epoch*) as the limiter lets it go (a caller whose
wait spans a cut takes a new place at the new rate first). Without
this, the attempts queued or in flight when the first 429 arrives (measured: 16 callers at
a 120/s ceiling against a 40/s quota) each cut by 0.7 and drove the rate to the 0.5/s
floor within 0.2 s; 20 such answers leave 0.7**20 ≈ 0.08% of the rate.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["BETA", "FLOOR", "SCALE", "SETTLE_SECONDS", "SMOOTHING", "RateController"]

#: botocore's multiplicative decrease: keep 70% of the rate at a throttle.
BETA: Final = 0.7
#: botocore's CUBIC scale constant C (rates in requests/s, time in seconds).
SCALE: Final = 0.4
#: The lowest rate the controller ever sets (botocore's minimum fill rate).
FLOOR: Final = 0.5
#: Weight of the newest bucket in the measured send rate (botocore's smoothing).
SMOOTHING: Final = 0.8
#: Width of one bucket of the measured send rate, in seconds (botocore's).
BUCKET_SECONDS: Final = 0.5
#: After a cut, throttles are not news for this long. The overshoot that drew the 429 has
#: emptied the server's bucket, which refills at only 30% of the quota's rate at the new
#: rate, so the first attempts after a cut can meet a 429 from timing jitter alone;
#: measured: one 30 s run in three cut twice in one episode (to 49% of the rate).
SETTLE_SECONDS: Final = 0.25


class RateController:
    """The allowed send rate over time, below a fixed *ceiling*.

    Starts at the ceiling. :meth:`sent` counts an attempt going out (for the measured rate);
    :meth:`throttled` reports a throttling answer and returns whether the rate was cut;
    :meth:`rate` is the rate allowed at a time.
    """

    __slots__ = (
        "_bucket_count",
        "_bucket_start",
        "_k",
        "ceiling",
        "cut_at",
        "cuts",
        "floor",
        "measured",
        "w_max",
    )

    def __init__(self, ceiling: float, *, floor: float = FLOOR) -> None:
        if not (math.isfinite(ceiling) and ceiling > 0):
            raise ValueError(f"ceiling must be a finite number above 0, not {ceiling!r}")
        self.ceiling = float(ceiling)
        self.floor = min(float(floor), self.ceiling)
        #: When the rate was last cut (monotonic seconds); -inf before the first cut.
        self.cut_at = -math.inf
        #: The rate at the last cut (where the quota was met).
        self.w_max = self.ceiling
        #: Times the rate was cut.
        self.cuts = 0
        #: The smoothed send rate (attempts/s), 0 until the first bucket closes.
        self.measured = 0.0
        self._k = 0.0
        self._bucket_start = -math.inf
        self._bucket_count = 0

    def rate(self, now: float) -> float:
        """The rate allowed at *now* (requests per second)."""
        if self.cuts == 0:
            return self.ceiling
        t = now - self.cut_at - self._k
        rate = self.w_max + SCALE * t * t * t
        if rate >= self.ceiling:
            return self.ceiling
        return rate if rate > self.floor else self.floor

    def sent(self, now: float) -> None:
        """Count one attempt going out at *now*."""
        elapsed = now - self._bucket_start
        if elapsed >= BUCKET_SECONDS:
            if self._bucket_start != -math.inf:
                bucket_rate = self._bucket_count / elapsed
                self.measured = SMOOTHING * bucket_rate + (1 - SMOOTHING) * self.measured
            self._bucket_start = now
            self._bucket_count = 0
        self._bucket_count += 1

    def throttled(self, now: float, epoch: int) -> bool:
        """A throttling answer at *now* to an attempt of *epoch* (the value of :attr:`cuts`
        when it was queued); True if it cut the rate."""
        if epoch != self.cuts or now - self.cut_at < SETTLE_SECONDS:
            return False
        self.w_max = self.rate(now)  # never under the floor: rate() clamps to it
        self._k = (self.w_max * (1.0 - BETA) / SCALE) ** (1.0 / 3.0)
        self.cut_at = now
        self.cuts += 1
        return True

    def __repr__(self) -> str:
        return f"RateController(ceiling={self.ceiling:g}, w_max={self.w_max:.3g}, cuts={self.cuts})"
