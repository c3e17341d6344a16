"""The token bucket: its arithmetic as a pure table and properties, then on a real loop."""

from __future__ import annotations

import asyncio
import bisect
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aopay_async._limiter import RateLimiter, TokenBucket


def max_in_window(starts: list[float], window: float) -> int:
    """The most start times in any closed window ``[t, t + window]`` (t a start time)."""
    ordered = sorted(starts)
    return max(
        (bisect.bisect_right(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


# -- reserve(now): pure arithmetic --------------------------------------------------------------

RESERVE_TABLE: list[tuple[str, float, int, list[float], list[float]]] = [
    # (id, rate, burst, arrival times, expected start times)
    ("evenly-spaced", 10, 1, [0, 0, 0, 0], [0, 0.1, 0.2, 0.3]),
    ("idle-refills", 10, 1, [0, 0, 5, 5], [0, 0.1, 5, 5.1]),
    ("burst-then-rate", 10, 3, [0, 0, 0, 0, 0], [0, 0, 0, 0.1, 0.2]),
    ("partial-refill", 10, 3, [0, 0, 0, 0.15, 0.15], [0, 0, 0, 0.15, 0.2]),
    ("full-after-idle", 10, 3, [0, 0, 0, 9, 9, 9, 9], [0, 0, 0, 9, 9, 9, 9.1]),
    ("slow-arrivals-never-wait", 2, 1, [0, 0.5, 1.0, 2.0], [0, 0.5, 1.0, 2.0]),
    ("one-per-second", 1, 1, [0, 0.2, 0.4], [0, 1, 2]),
    ("big-burst", 1, 100, [0] * 101, [0] * 100 + [1]),
]


@pytest.mark.parametrize(
    ("rate", "burst", "arrivals", "starts"),
    [case[1:] for case in RESERVE_TABLE],
    ids=[case[0] for case in RESERVE_TABLE],
)
def test_reserve_table(rate: float, burst: int, arrivals: list[float], starts: list[float]) -> None:
    """The bucket starts full; each reservation gets the earliest slot that keeps the promise."""
    bucket = TokenBucket(rate, burst)
    got = [bucket.reserve(now) for now in arrivals]
    assert got == pytest.approx(starts, abs=1e-9)


arrival_gaps = st.lists(
    st.one_of(st.just(0.0), st.floats(0.0, 0.5, allow_nan=False)), min_size=1, max_size=300
)


@settings(max_examples=150, deadline=None)
@given(
    rate=st.floats(0.5, 500.0),
    burst=st.integers(1, 20),
    gaps=arrival_gaps,
    windows=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=5),
)
# Everyone at once: the plainest overshoot, checked on every run whatever Hypothesis draws.
@example(rate=10.0, burst=1, gaps=[0.0] * 5, windows=[0.0])
def test_no_window_holds_more_than_burst_plus_rate_times_t(
    rate: float, burst: int, gaps: list[float], windows: list[float]
) -> None:
    """For any arrivals, every window of T seconds holds at most ``burst + rate*T`` starts."""
    bucket = TokenBucket(rate, burst)
    now = 0.0
    starts = []
    for gap in gaps:
        now += gap
        start = bucket.reserve(now)
        assert start >= now  # never early
        starts.append(start)
    assert starts == sorted(starts)  # first come, first served
    for window in [*windows, 0.0, 1.0 / rate]:
        assert max_in_window(starts, window) <= burst + rate * window + 1e-6


@settings(max_examples=150, deadline=None)
@given(rate=st.floats(0.5, 500.0), burst=st.integers(1, 20), gaps=arrival_gaps)
@example(rate=10.0, burst=1, gaps=[0.0] * 5)
def test_every_window_bound_is_checked_between_any_two_starts(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Between start i and start j (inclusive) lie at most ``burst + rate*(s_j - s_i)`` starts."""
    bucket = TokenBucket(rate, burst)
    now = 0.0
    starts = []
    for gap in gaps:
        now += gap
        starts.append(bucket.reserve(now))
    for i in range(len(starts)):
        for j in range(i, min(len(starts), i + 60)):
            assert j - i + 1 <= burst + rate * (starts[j] - starts[i]) + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.5, 500.0), burst=st.integers(1, 20), n=st.integers(1, 3000))
def test_constant_demand_runs_at_exactly_the_rate(rate: float, burst: int, n: int) -> None:
    """Everyone asking at once: the burst goes at once, then one start per ``1/rate``."""
    bucket = TokenBucket(rate, burst)
    starts = [bucket.reserve(0.0) for _ in range(n)]
    assert starts[-1] == pytest.approx(max(0, n - burst) / rate, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.5, 500.0), burst=st.integers(1, 20), n=st.integers(2, 3000))
def test_closed_loop_demand_long_run_rate_is_the_rate(rate: float, burst: int, n: int) -> None:
    """A caller that asks again as soon as it starts gets ``rate`` per second, no drift."""
    bucket = TokenBucket(rate, burst)
    now = 0.0
    for _ in range(n):
        now = bucket.reserve(now)
    assert now == pytest.approx(max(0, n - burst) / rate, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    rate=st.floats(0.5, 500.0),
    burst=st.integers(1, 20),
    gaps=st.lists(st.floats(0.0, 0.5, allow_nan=False), min_size=1, max_size=120),
)
# All at once: a bucket 1% slow is caught on every run. (Hypothesis draws constants from the
# loaded modules' source, so a derandomized draw changes as modules are added: one missed it.)
@example(rate=10.0, burst=1, gaps=[0.0] * 5)
def test_each_start_is_the_earliest_the_bound_allows(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Exact, not merely safe: nobody waits longer than the window bound requires.

    Start n may not come before ``now_n``, nor before ``start_m + (n - m + 1 - burst)/rate``
    for any earlier m (else the window ``[start_m, start_n]`` would hold too many); the
    bucket picks the largest of these, no later.
    """
    bucket = TokenBucket(rate, burst)
    now = 0.0
    starts: list[float] = []
    for gap in gaps:
        now += gap
        n = len(starts)
        earliest = max(
            [now] + [starts[m] + (n - m + 1 - burst) / rate for m in range(n) if n - m >= burst]
        )
        start = bucket.reserve(now)
        assert start == pytest.approx(earliest, abs=1e-6)
        starts.append(start)


@pytest.mark.parametrize(
    ("rate", "burst", "error"),
    [
        (0, 1, ValueError),
        (-1, 1, ValueError),
        (math.nan, 1, ValueError),
        (math.inf, 1, ValueError),
        (True, 1, TypeError),
        ("10", 1, TypeError),
        (10, 0, ValueError),
        (10, -3, ValueError),
        (10, 1.5, TypeError),
        (10, True, TypeError),
    ],
)
def test_bucket_rejects_bad_settings(rate: object, burst: object, error: type[Exception]) -> None:
    """A rate must be a finite positive number and a burst an int of at least 1."""
    with pytest.raises(error):
        TokenBucket(rate, burst)  # type: ignore[arg-type]


def test_bucket_properties_and_repr() -> None:
    """The settings read back, and the repr says what the bucket is."""
    bucket = TokenBucket(200, 5)
    assert (bucket.rate, bucket.burst) == (200.0, 5)
    assert repr(bucket) == "TokenBucket(rate=200, burst=5)"


def test_limiters_speak_the_protocol() -> None:
    """The bucket satisfies the runtime-checkable ``RateLimiter`` protocol; a bare object not."""
    assert isinstance(TokenBucket(1), RateLimiter)
    assert not isinstance(object(), RateLimiter)


def test_burst_defaults_to_one() -> None:
    """Without a burst the bucket holds one token: no two starts at the same instant."""
    bucket = TokenBucket(10)
    assert bucket.burst == 1
    assert [bucket.reserve(0.0), bucket.reserve(0.0)] == [0.0, 0.1]


@pytest.mark.parametrize(
    ("rate", "burst", "error", "message"),
    [
        (0, 1, ValueError, "rate must be a finite number above 0, not 0"),
        (math.nan, 1, ValueError, "rate must be a finite number above 0, not nan"),
        (True, 1, TypeError, "rate must be a number, not bool"),
        ("10", 1, TypeError, "rate must be a number, not str"),
        (10, 0, ValueError, "burst must be at least 1, not 0"),
        (10, 1.5, TypeError, "burst must be an int, not float"),
        (10, None, TypeError, "burst must be an int, not NoneType"),
    ],
)
def test_bad_settings_say_what_and_why(
    rate: object, burst: object, error: type[Exception], message: str
) -> None:
    """The error names the setting, the rule and the value (or type) that broke it."""
    with pytest.raises(error) as caught:
        TokenBucket(rate, burst)  # type: ignore[arg-type]
    assert str(caught.value) == message


# -- on a real event loop -----------------------------------------------------------------------


def test_reserve_never_schedules_before_the_last_real_start() -> None:
    """Once real starts ran past the schedule (after a stall), reservations queue behind them.

    One slot at 0, started late at 10 (admit): the next slot is 11, one interval after the
    real start, not 10 (the schedule alone) nor 1.
    """
    bucket = TokenBucket(1.0, 1)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.admit(10.0) == 0.0
    assert bucket.reserve(10.0) == 11.0


async def test_a_free_token_is_taken_without_yielding() -> None:
    """With a token free, ``acquire`` returns without giving the loop to anyone else.

    The client's fast path relies on it: an attempt that may start now is not delayed behind
    other tasks, and there is no await point at which it could be cancelled.
    """
    bucket = TokenBucket(0.01, 2)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())  # runs at the first chance the loop gets
    await bucket.acquire()
    await bucket.acquire()
    assert ran == []
    await task
    assert ran == ["other"]


async def test_real_loop_holds_the_rate_in_every_sliding_window() -> None:
    """Rate 200, burst 5, for 1.5 s: start times per sliding window respect the bound.

    Start times are read when ``acquire`` returns, so event-loop lateness can bunch a couple
    of them together; the bound gets a slack of 2 for that, and none at all for the total.
    """
    rate, burst, duration = 200.0, 5, 1.5
    bucket = TokenBucket(rate, burst)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    starts: list[float] = []

    async def worker() -> None:
        while True:
            await bucket.acquire()
            now = loop.time()
            if now - t0 > duration:
                return
            starts.append(now - t0)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(8))), timeout=15)
    assert len(starts) <= burst + rate * duration + 1
    for window in (0.01, 0.05, 0.1, 0.5, 1.0):
        assert max_in_window(starts, window) <= burst + rate * window + 2, window
    # Nothing started early: the n-th start is no sooner than its slot on the grid.
    for n, start in enumerate(sorted(starts)):
        assert start >= max(0, n + 1 - burst) / rate - 1e-3


async def test_cancelled_waiter_hands_its_slot_back() -> None:
    """A caller cancelled while waiting returns its slot, so the next one does not wait longer."""
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(10, 1)
    await bucket.acquire()  # the first token is immediate
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    now = loop.time()
    # Without the hand-back this would be ~0.2 s away; with it, at most the next 0.1 s slot.
    assert bucket.reserve(now) - now <= 0.1 + 1e-6


async def test_a_cancelled_waiter_restores_the_schedule_exactly() -> None:
    """The hand-back moves the schedule back by exactly one interval: not less, not more.

    Rate 0.01/s (a 100 s interval) keeps the loop's own lateness out of the arithmetic: the
    next reservation after the cancellation is the slot the cancelled waiter had, to the
    nanosecond (early would overshoot the rate; late would slow everyone).
    """
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(0.01, 1)
    first = bucket.reserve(loop.time())  # the first token, taken at once
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bucket.reserve(loop.time()) == pytest.approx(first + 100.0, abs=1e-6)
    assert bucket.reserve(loop.time()) == pytest.approx(first + 200.0, abs=1e-6)


async def test_an_older_cancelled_slot_is_not_handed_back() -> None:
    """A cancelled waiter with a later reservation behind it keeps its slot (unused).

    Handing it back would move the later caller's slot too; leaving it costs one start and
    can never cost an extra one.
    """
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(0.01, 1)
    first = bucket.reserve(loop.time())  # the first token, taken at once
    older = asyncio.create_task(bucket.acquire())
    newer = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    older.cancel()
    with pytest.raises(asyncio.CancelledError):
        await older
    newer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await newer
    # The newer slot (first + 200) came back; the older one (first + 100) stays spent.
    assert bucket.reserve(loop.time()) == pytest.approx(first + 200.0, abs=1e-6)


async def test_cancelled_waiters_do_not_slow_the_rest() -> None:
    """Many cancelled waiters (newest first) leave the bucket as it was."""
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(10, 1)
    await bucket.acquire()
    waiters = [asyncio.create_task(bucket.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    for task in reversed(waiters):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    now = loop.time()
    assert bucket.reserve(now) - now <= 0.1 + 1e-6
