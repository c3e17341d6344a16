"""The adaptive rate controller and its limiter: tables of cases and properties, no sockets."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async._adaptive import BETA, FLOOR, SCALE, SETTLE_SECONDS, SMOOTHING, RateController
from aopay_async._limiter import AdaptiveLimiter


def _steady(controller: RateController, rate: float, start: float, seconds: float) -> float:
    """Report sends at *rate* per second from *start* for *seconds*; return the end time."""
    n = int(rate * seconds)
    for i in range(n):
        controller.sent(start + i / rate)
    return start + n / rate


def test_starts_at_the_ceiling() -> None:
    """Before any throttle the rate is the ceiling, whatever the time."""
    controller = RateController(300.0)
    assert controller.rate(0.0) == 300.0
    assert controller.rate(1e9) == 300.0


@pytest.mark.parametrize("measured", [None, 150.0, 400.0])
def test_a_throttle_cuts_to_beta_of_the_allowed_rate(measured: float | None) -> None:
    """A throttle remembers w_max = the allowed rate and cuts to BETA × w_max, whatever the
    measured send rate (on a loaded loop it runs under the allowance)."""
    controller = RateController(300.0)
    now = 0.0
    if measured is not None:
        now = _steady(controller, measured, 0.0, 3.0)
        controller.sent(now)  # closes the last bucket
        assert controller.measured == pytest.approx(measured, rel=0.02)
    assert controller.throttled(now, controller.cuts)
    assert controller.w_max == pytest.approx(300.0)
    assert controller.rate(now) == pytest.approx(BETA * 300.0)


def test_climbs_back_cubic_style() -> None:
    """After a cut the rate climbs to w_max at K = ∛(w_max(1-β)/C), plateaus, then probes."""
    controller = RateController(1000.0)
    controller.throttled(10.0, 0)
    w_max = controller.w_max
    k = (w_max * (1 - BETA) / SCALE) ** (1 / 3)
    assert controller.rate(10.0) == pytest.approx(BETA * w_max)
    assert controller.rate(10.0 + k) == pytest.approx(w_max)
    assert controller.rate(10.0 + k / 2) < w_max
    assert controller.rate(10.0 + k + 2) == pytest.approx(min(1000.0, w_max + SCALE * 8))
    assert controller.rate(10.0 + 1e6) == 1000.0


def test_a_throttle_to_an_attempt_queued_before_the_cut_is_not_news() -> None:
    """Answers to attempts queued before the cut do not cut again (0.7**20 would be 0.08%)."""
    controller = RateController(100.0)
    epoch = controller.cuts
    assert controller.throttled(5.0, epoch)
    rate = controller.rate(5.0)
    for _ in range(20):
        assert not controller.throttled(5.01, epoch)
    assert controller.rate(5.0) == rate
    assert controller.cuts == 1
    assert not controller.throttled(5.2, controller.cuts)  # too soon: the settle time
    assert controller.throttled(5.3, controller.cuts)  # queued after the cut, settled: news
    assert controller.cuts == 2


def test_never_below_the_floor() -> None:
    """However many throttles, the rate stays at or above 0.5/s, so a client keeps asking."""
    controller = RateController(10.0)
    now = 0.0
    for _ in range(100):
        now += 0.3
        controller.throttled(now, controller.cuts)
    assert controller.rate(now) == FLOOR


def test_bad_ceiling_is_refused() -> None:
    """A ceiling of zero, a negative one or infinity makes no controller."""
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="ceiling"):
            RateController(bad)


@settings(max_examples=300, deadline=None)
@given(
    ceiling=st.floats(min_value=0.5, max_value=5000),
    events=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=5.0, allow_nan=False),
            st.sampled_from(["sent", "throttle", "late-throttle"]),
        ),
        max_size=200,
    ),
)
def test_rate_stays_in_bounds_and_only_climbs_between_cuts(
    ceiling: float, events: list[tuple[float, str]]
) -> None:
    """Any sequence: the rate is within [floor, ceiling], never rises at a cut, and never
    falls between cuts."""
    controller = RateController(ceiling)
    now = 0.0
    for step, kind in events:
        before = controller.rate(now)
        later = now + step
        assert controller.rate(later) >= before - 1e-9 * max(1.0, before)
        now = later
        if kind == "sent":
            controller.sent(now)
        elif kind == "throttle":
            prior = controller.rate(now)
            if controller.throttled(now, controller.cuts):
                assert controller.rate(now) <= prior + 1e-9
        else:
            controller.throttled(now, controller.cuts - 1)
        rate = controller.rate(now)
        assert min(FLOOR, ceiling) - 1e-12 <= rate <= ceiling


@pytest.mark.parametrize("rate", [10.0, 100.0])
def test_limiter_spaces_reservations_at_the_controller_rate(rate: float) -> None:
    """The adaptive limiter's reservations follow 1/rate, and slow down after a cut."""
    controller = RateController(rate)
    limiter = AdaptiveLimiter(controller)
    starts = [limiter.reserve(0.0) for _ in range(5)]
    assert starts == pytest.approx([i / rate for i in range(5)])
    controller.throttled(0.0, 0)
    slower = rate * BETA
    nxt = [limiter.reserve(0.0) for _ in range(2)]
    assert nxt[1] - nxt[0] == pytest.approx(1 / slower, rel=1e-6)


async def test_limiter_acquires_its_inner_limiter_too() -> None:
    """A configured limiter (e.g. Redis) still gets its token behind the adaptive gate."""
    calls: list[str] = []

    class Inner:
        async def acquire(self) -> None:
            calls.append("inner")

    limiter = AdaptiveLimiter(RateController(1000.0), inner=Inner())
    await limiter.acquire()
    await limiter.acquire()
    assert calls == ["inner", "inner"]


async def test_a_cancelled_wait_hands_its_slot_back() -> None:
    """A waiter cancelled while it is the newest reservation gives its slot back."""
    limiter = AdaptiveLimiter(RateController(2.0))
    await limiter.acquire()  # takes the slot at now
    tat = limiter._tat
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter._tat == tat


async def test_a_wait_that_spans_a_cut_takes_a_new_place() -> None:
    """A caller queued at the old rate re-reserves at the new one when a cut lands meanwhile."""
    reservations: list[float] = []

    class Recording(RateController):
        __slots__ = ()

        def sent(self, now: float) -> None:
            reservations.append(now)
            super().sent(now)

    controller = Recording(20.0)
    limiter = AdaptiveLimiter(controller)
    await limiter.acquire()  # the slot at now
    waiter = asyncio.ensure_future(limiter.acquire())  # waits ~1/20 s
    await asyncio.sleep(0)
    controller.throttled(asyncio.get_running_loop().time(), controller.cuts)
    async with asyncio.timeout(10):
        await waiter
    assert len(reservations) == 3  # first, queued, and the new place after the cut
    assert reservations[2] >= reservations[1]


def test_a_cut_gives_up_the_queue_reserved_at_the_old_rate() -> None:
    """After a cut the next slot starts now, then follows the new spacing (no old backlog)."""
    controller = RateController(20.0)
    limiter = AdaptiveLimiter(controller)
    assert [limiter.reserve(0.0) for _ in range(4)] == pytest.approx([0.0, 0.05, 0.10, 0.15])
    controller.throttled(0.01, controller.cuts)
    first = limiter.reserve(0.01)
    second = limiter.reserve(0.01)
    assert first == pytest.approx(0.01)
    assert second - first == pytest.approx(1 / controller.rate(0.01))


def test_the_measured_rate_smooths_each_closed_bucket() -> None:
    """A bucket closes once BUCKET_SECONDS have passed since it began (exactly 0.5 s counts):
    its rate enters the measured rate with weight SMOOTHING; 0 before the first closes."""
    controller = RateController(100.0)
    assert controller.measured == 0.0
    for i in range(5):
        controller.sent(i / 10)  # 5 sends in the bucket opened at 0.0
    assert controller.measured == 0.0
    controller.sent(0.5)  # closes it: 5 sends / 0.5 s = 10/s
    assert controller.measured == pytest.approx(SMOOTHING * 10.0)
    controller.sent(1.5)  # the bucket opened at 0.5 held one send over 1 s
    assert controller.measured == pytest.approx(SMOOTHING * 1.0 + (1 - SMOOTHING) * 8.0)


def test_the_settle_time_ends_at_settle_seconds_exactly() -> None:
    """A throttle SETTLE_SECONDS after a cut is news again; a moment sooner it is not."""
    controller = RateController(100.0)
    assert controller.throttled(5.0, 0)
    assert not controller.throttled(5.0 + SETTLE_SECONDS - 0.001, 1)
    assert controller.throttled(5.0 + SETTLE_SECONDS, 1)
    assert controller.cuts == 2


@pytest.mark.parametrize(
    ("cut_times", "expected"),
    [
        ((), "RateController(ceiling=300, w_max=300, cuts=0)"),
        ((10.0,), "RateController(ceiling=300, w_max=300, cuts=1)"),
        # cut again as soon as the first has settled: w_max is the rate then, 300 × 0.7 plus
        # a quarter second's climb (220.65...)
        ((10.0, 10.25), "RateController(ceiling=300, w_max=221, cuts=2)"),
    ],
)
def test_repr_shows_ceiling_w_max_and_cuts(cut_times: tuple[float, ...], expected: str) -> None:
    """The repr names the ceiling, the rate where the quota was last met, and the cuts."""
    controller = RateController(300.0)
    for epoch, now in enumerate(cut_times):
        assert controller.throttled(now, epoch)
    assert repr(controller) == expected
