"""The token bucket's real starts stay within the bucket even when the event loop stalls.

Pure arithmetic with an injected clock: callers reserve slots on the grid (``reserve``), wake
when the loop gets round to them (late by a drawn stall), and are admitted (``admit``) at the
times a real ``acquire`` would retry. Before ``admit`` existed, every caller woken after a stall
started at once, which is how the demo saw 8 and 11 429s from a server with the same rate.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async._limiter import TokenBucket


def _starts(rate: float, burst: int, wakes: list[float]) -> list[float]:
    """Real start times of callers whose slots were reserved at 0 and who woke at *wakes*."""
    bucket = TokenBucket(rate, burst)
    slots = [bucket.reserve(0.0) for _ in wakes]
    pending = sorted((max(slot, wake), slot) for slot, wake in zip(slots, wakes, strict=True))
    starts: list[float] = []
    for wake, slot in pending:  # the loop runs woken callers in timer order
        now = wake
        while (wait := bucket.admit(now, slot)) > 0.0:
            now += wait
        starts.append(now)
    return starts


def _max_in_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    best, low = 0, 0
    for high, t in enumerate(starts):
        while t - starts[low] >= window:
            low += 1
        best = max(best, high - low + 1)
    return best


@settings(max_examples=300, deadline=None)
@given(
    rate=st.sampled_from([5.0, 10.0, 50.0, 200.0]),
    burst=st.integers(1, 4),
    stall_at=st.floats(0.0, 1.0),
    stall=st.floats(0.0, 2.0),
    n=st.integers(2, 120),
)
def test_real_starts_hold_the_bucket_through_a_stall(
    rate: float, burst: int, stall_at: float, stall: float, n: int
) -> None:
    """Whatever the stall, in every window T at most ``burst + rate*T`` callers really start."""
    # Every caller due inside [stall_at, stall_at + stall) wakes at its end.
    interval = 1 / rate
    wakes = [
        stall_at + stall if stall_at <= k * interval < stall_at + stall else k * interval
        for k in range(n)
    ]
    starts = _starts(rate, burst, wakes)
    assert len(starts) == n
    for window in (interval, 0.1, 0.5, 1.0):
        assert _max_in_window(starts, window) <= burst + rate * window + 1e-9


def test_without_a_stall_every_caller_starts_on_its_slot() -> None:
    """No lateness: admit never adds a wait, so the long-run rate is exactly the rate."""
    starts = _starts(50.0, 1, [k / 50 for k in range(500)])
    assert starts == [k / 50 for k in range(500)] or all(
        abs(a - k / 50) < 1e-9 for k, a in enumerate(starts)
    )


def test_a_timer_late_by_under_a_quarter_interval_does_not_slow_the_rate() -> None:
    """Every caller woken 1 ms late (asyncio's timer, at 50/s): the slots stay on the grid,
    so 500 starts take 10 s, not 10.5 (before: each start counted from when it happened)."""
    starts = _starts(50.0, 1, [k / 50 + 0.001 for k in range(500)])
    assert all(abs(a - (k / 50 + 0.001)) < 1e-9 for k, a in enumerate(starts))
    # A caller later than a quarter interval (a stall) moves the schedule, as before.
    late = _starts(50.0, 1, [0.0, 0.02 + 0.006, 0.04])
    assert late[2] == late[1] + 0.02


async def test_acquire_after_a_stall_spaces_the_woken_callers() -> None:
    """Callers woken together after a blocked loop start one interval apart, not at once."""
    bucket = TokenBucket(100.0, 1)
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def caller() -> None:
        await bucket.acquire()
        starts.append(loop.time())

    tasks = [asyncio.create_task(caller()) for _ in range(10)]
    await asyncio.sleep(0)  # every caller has reserved its slot
    time.sleep(0.15)  # noqa: ASYNC251 - the point: the loop stalls past every slot (10 ms apart)
    await asyncio.gather(*tasks)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Never closer than the interval (a loaded machine only widens the gaps).
    assert min(gaps) >= 0.01 * 0.9
