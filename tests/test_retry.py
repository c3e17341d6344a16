"""The retry decision as pure functions: what is retried, how long to wait, when to give up."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async import (
    APIConnectionError,
    APIResponseError,
    APITimeoutError,
    InvalidRequestError,
    ResponseDecodeError,
)
from aopay_async._errors import status_error
from aopay_async._retry import (
    RETRYABLE_STATUSES,
    Uniform,
    backoff_delay,
    is_retryable,
    next_wait,
    parse_retry_after,
    retrying,
)


def top(low: float, high: float) -> float:
    """A ``uniform`` that always draws the ceiling: the worst case of full jitter."""
    return high


def bottom(low: float, high: float) -> float:
    """A ``uniform`` that always draws the floor."""
    return low


def uniforms() -> st.SearchStrategy[Uniform]:
    """A ``uniform`` whose draws come from Hypothesis: either edge, or a seeded random source.

    Never the global ``random``: Hypothesis reseeds it per example, so its draws would be
    the same fraction every time and a property over them could not fail.
    """
    seeded: st.SearchStrategy[Uniform] = st.randoms(use_true_random=False).map(lambda r: r.uniform)
    return st.sampled_from([top, bottom]) | seeded


# -- what is retried ----------------------------------------------------------------------------

ALL_STATUSES = [301, 400, 401, 403, 404, 405, 408, 409, 413, 422, 429, 500, 501, 502, 503, 504, 505]


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_retry_decision_for_every_status(status: int) -> None:
    """Exactly 408, 429, 500, 502, 503 and 504 are retried."""
    expected = status in {408, 429, 500, 502, 503, 504}
    assert is_retryable(status_error(status, {}, "")) is expected


def test_retryable_statuses_are_the_documented_ones() -> None:
    """The table matches the contract, no more, no fewer."""
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (APIConnectionError("reset"), True),
        (APITimeoutError("slow"), True),
        (APIResponseError("207", code="207"), False),
        (ResponseDecodeError("cut"), False),
        (InvalidRequestError("bad"), False),
        (asyncio.CancelledError(), False),
        (KeyboardInterrupt(), False),
        (RuntimeError("bug"), False),
        (TimeoutError(), False),
        (ConnectionResetError(), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_retry_decision_for_every_error(exc: BaseException, expected: bool) -> None:
    """Connection errors and timeouts retry; API failures, decode errors, cancellation never.

    Raw builtins are never seen by the policy (the transport wraps them), so they are not
    retried either: only our own classified errors are.
    """
    assert is_retryable(exc) is expected


# -- Retry-After --------------------------------------------------------------------------------

NOW = 1_700_000_000.0  # a fixed "now" for HTTP dates


def http_date(offset: float) -> str:
    """An RFC 9110 date *offset* seconds from NOW."""
    return email.utils.formatdate(NOW + offset, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("3", 3.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("3 seconds", None),
        (http_date(30), 30.0),
        (http_date(-30), 0.0),
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an RFC 9110 date
        ("Mon, 99 Foo 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Delay-seconds and HTTP dates become seconds to wait; anything unreadable is None."""
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_without_now_is_relative_to_the_clock() -> None:
    """Without *now*, an HTTP date counts from the current time (what the decoder relies on)."""
    value = email.utils.formatdate(time.time() + 3600, usegmt=True)
    wait = parse_retry_after(value)
    assert wait is not None
    # Whole-second dates and a slow machine: generous on both sides, but it is ~an hour.
    assert 3500.0 < wait <= 3600.0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6))
def test_parse_retry_after_reads_any_whole_seconds(seconds: int) -> None:
    """Every delay-seconds value reads back as itself."""
    assert parse_retry_after(str(seconds)) == float(seconds)


@settings(max_examples=60, deadline=None)
@given(st.integers(-(10**5), 10**5))
def test_parse_retry_after_date_is_relative_to_now(offset: int) -> None:
    """An HTTP date means "that many seconds from now", never negative."""
    assert parse_retry_after(http_date(offset), now=NOW) == max(0.0, float(offset))


# -- backoff ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_number", "ceiling"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (30, 8.0), (10_000, 8.0)],
)
def test_backoff_ceiling(retry_number: int, ceiling: float) -> None:
    """Retry n waits at most ``min(8, 0.5 * 2**n)`` and at least 0 (full jitter)."""
    assert backoff_delay(retry_number, uniform=top) == ceiling
    assert backoff_delay(retry_number, uniform=bottom) == 0.0


def test_backoff_zero_base_never_waits() -> None:
    """A zero base (the test mode) gives zero waits without calling the random source."""

    def boom(low: float, high: float) -> float:
        raise AssertionError("random drawn for a zero wait")

    assert backoff_delay(5, base=0.0, uniform=boom) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    retry_number=st.integers(0, 200),
    base=st.floats(0.0, 10.0),
    cap=st.floats(0.0, 60.0),
    uniform=uniforms(),
)
def test_backoff_never_exceeds_its_cap(
    retry_number: int, base: float, cap: float, uniform: Uniform
) -> None:
    """Whatever the draw, the delay stays in ``[0, min(cap, base * 2**n)]``."""
    delay = backoff_delay(retry_number, base=base, cap=cap, uniform=uniform)
    assert 0.0 <= delay <= cap
    assert delay <= base * 2.0 ** min(retry_number, 64)


def test_backoff_defaults_are_half_a_second_doubling_to_eight() -> None:
    """The documented defaults: base 0.5 s, cap 8 s."""
    assert [backoff_delay(n, uniform=top) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


# -- next_wait: the whole decision --------------------------------------------------------------

SERVER_503 = status_error(503, {}, "")


@pytest.mark.parametrize(
    ("exc", "retry_number", "retries_left", "time_left", "expected"),
    [
        (SERVER_503, 0, 3, None, 0.5),
        (SERVER_503, 2, 1, None, 2.0),
        (SERVER_503, 10, 1, None, 8.0),  # the default cap
        (SERVER_503, 0, 0, None, None),  # no retries left
        (APIConnectionError("x"), 3, 1, 100.0, 4.0),
        (APIConnectionError("x"), 3, 1, 4.0, None),  # would reach the deadline
        (APIConnectionError("x"), 3, 1, 3.9, None),  # would pass it
        (APIConnectionError("x"), 3, 1, 4.1, 4.0),
        (status_error(404, {}, ""), 0, 3, None, None),
        (APIResponseError("x", code="207"), 0, 3, None, None),
        (ResponseDecodeError("x"), 0, 3, None, None),
        (status_error(429, {}, "", retry_after=5.0), 0, 3, None, 5.0),
        (status_error(429, {}, "", retry_after=5.0), 0, 3, 10.0, 5.0),
        (status_error(429, {}, "", retry_after=5.0), 0, 3, 4.0, None),
        (status_error(503, {}, "", retry_after=0.0), 3, 3, 1.0, 0.0),
        (status_error(503, {}, "", retry_after=30.0), 0, 3, 10.0, None),
        (status_error(429, {}, "", retry_after=None), 1, 3, None, 1.0),
        # No deadline: a Retry-After of up to 60 s is slept through, a longer one fails now.
        (status_error(429, {}, "", retry_after=60.0), 0, 3, None, 60.0),
        (status_error(503, {}, "", retry_after=3600.0), 0, 3, None, None),
        (status_error(429, {}, "", retry_after=3600.0), 0, 3, 7200.0, 3600.0),
    ],
)
def test_next_wait_table(
    exc: BaseException,
    retry_number: int,
    retries_left: int,
    time_left: float | None,
    expected: float | None,
) -> None:
    """Backoff (worst case drawn), Retry-After instead of it, give up at the deadline or limit."""
    got = next_wait(exc, retry_number, retries_left=retries_left, time_left=time_left, uniform=top)
    assert got == expected


@pytest.mark.parametrize(
    ("retry_number", "base", "cap", "expected"),
    [
        (0, 1.0, 5.0, 1.0),
        (1, 1.0, 5.0, 2.0),
        (2, 1.0, 5.0, 4.0),
        (3, 1.0, 5.0, 5.0),
        (9, 0.1, 60.0, 51.2),
    ],
)
def test_next_wait_uses_the_base_and_cap_it_is_given(
    retry_number: int, base: float, cap: float, expected: float
) -> None:
    """The client's ``backoff_base``/``backoff_cap`` reach the backoff, not the defaults."""
    got = next_wait(
        SERVER_503, retry_number, retries_left=1, time_left=None, base=base, cap=cap, uniform=top
    )
    assert got == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from(sorted(RETRYABLE_STATUSES)),
    retry_after=st.none() | st.floats(0.0, 1000.0),
    retry_number=st.integers(0, 50),
    time_left=st.none() | st.floats(0.0, 200.0),
    uniform=uniforms(),
)
def test_wait_never_passes_the_deadline_nor_the_cap(
    status: int,
    retry_after: float | None,
    retry_number: int,
    time_left: float | None,
    uniform: Uniform,
) -> None:
    """Any wait chosen ends strictly before the deadline; a backoff wait stays under its cap.

    The draw comes from Hypothesis (both edges and a seeded source), with the default base
    and cap: a cap of 9 instead of 8 is caught by the top edge.
    """
    exc = status_error(status, {}, "", retry_after=retry_after if status in (429, 503) else None)
    wait = next_wait(exc, retry_number, retries_left=1, time_left=time_left, uniform=uniform)
    if wait is None:
        return
    assert wait >= 0.0
    if time_left is not None:
        assert wait < time_left
    if exc.retry_after is None:
        assert wait <= min(8.0, 0.5 * 2.0 ** min(retry_number, 64))
    else:
        assert wait == exc.retry_after


# -- the tenacity wiring ------------------------------------------------------------------------


async def run_retrying(
    errors: list[BaseException], *, max_retries: int, deadline_at: float | None = None
) -> tuple[int, BaseException | None]:
    """Drive :func:`retrying` over a scripted list of failures (then success); count attempts."""
    attempts = 0
    clock_now = [0.0]
    try:
        async for attempt in retrying(
            max_retries=max_retries,
            deadline_at=deadline_at,
            clock=lambda: clock_now[0],
            base=0.0,
            cap=0.0,
        ):
            with attempt:
                attempts += 1
                if attempts <= len(errors):
                    raise errors[attempts - 1]
    except BaseException as exc:
        return attempts, exc
    return attempts, None


async def test_retrying_stops_after_max_retries() -> None:
    """``max_retries=2`` allows three attempts, then re-raises the last error itself."""
    errors: list[BaseException] = [APIConnectionError(f"e{i}") for i in range(5)]
    attempts, exc = await run_retrying(errors, max_retries=2)
    assert attempts == 3
    assert exc is errors[2]


async def test_retrying_stops_at_a_non_retryable_error() -> None:
    """A non-retryable error ends the loop at once and is raised as itself."""
    final = ResponseDecodeError("cut")
    attempts, exc = await run_retrying([APIConnectionError("x"), final], max_retries=5)
    assert (attempts, exc) == (2, final)


async def test_retrying_returns_on_success() -> None:
    """A success after failures ends the loop without an error."""
    attempts, exc = await run_retrying([SERVER_503, SERVER_503], max_retries=3)
    assert (attempts, exc) == (3, None)


async def test_retrying_gives_up_when_the_wait_would_pass_the_deadline() -> None:
    """With the deadline already reached, the first failure is final."""
    first = APIConnectionError("x")
    attempts, exc = await run_retrying([first], max_retries=3, deadline_at=0.0)
    assert (attempts, exc) == (1, first)


class FakeTime:
    """A clock that moves only when told: each attempt costs *attempt_cost*, each sleep its wait."""

    def __init__(self, attempt_cost: float) -> None:
        self.now = 0.0
        self.attempt_cost = attempt_cost
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """The current fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """What tenacity sleeps, recorded; the clock moves by it and nothing really waits."""
        self.sleeps.append(seconds)
        self.now += seconds


async def run_with_fake_time(
    errors: list[BaseException],
    *,
    max_retries: int,
    deadline_at: float | None,
    base: float = 1.0,
    cap: float = 4.0,
    uniform: Uniform = top,
    attempt_cost: float = 0.5,
) -> tuple[int, BaseException | None, list[float], FakeTime]:
    """Drive :func:`retrying` with a non-zero backoff, a moving clock and a recording sleep."""
    fake = FakeTime(attempt_cost)
    loop = retrying(
        max_retries=max_retries,
        deadline_at=deadline_at,
        clock=fake.clock,
        base=base,
        cap=cap,
        uniform=uniform,
    )
    loop.sleep = fake.sleep  # tenacity awaits this between attempts
    attempts = 0
    try:
        async for attempt in loop:
            with attempt:
                attempts += 1
                fake.now += fake.attempt_cost
                if attempts <= len(errors):
                    raise errors[attempts - 1]
    except BaseException as exc:
        return attempts, exc, fake.sleeps, fake
    return attempts, None, fake.sleeps, fake


async def test_retrying_sleeps_the_backoff_of_each_retry_number() -> None:
    """Retry n sleeps ``min(cap, base * 2**n)`` (top draw): 1, 2, 4, then the cap 4."""
    errors: list[BaseException] = [APIConnectionError(f"e{i}") for i in range(4)]
    attempts, exc, sleeps, _ = await run_with_fake_time(errors, max_retries=4, deadline_at=None)
    assert (attempts, exc) == (5, None)
    assert sleeps == [1.0, 2.0, 4.0, 4.0]


async def test_retrying_draws_from_the_uniform_it_is_given() -> None:
    """The injected random source decides the wait: the floor draw sleeps zero every time."""
    errors: list[BaseException] = [APIConnectionError(f"e{i}") for i in range(3)]
    attempts, exc, sleeps, _ = await run_with_fake_time(
        errors, max_retries=3, deadline_at=None, uniform=bottom
    )
    assert (attempts, exc) == (4, None)
    assert sleeps == [0.0, 0.0, 0.0]


async def test_retrying_sleeps_what_retry_after_asks() -> None:
    """A 429's Retry-After replaces the backoff, whatever the retry number."""
    errors: list[BaseException] = [
        status_error(429, {}, "", retry_after=3.0),
        status_error(429, {}, "", retry_after=0.25),
    ]
    attempts, exc, sleeps, _ = await run_with_fake_time(errors, max_retries=3, deadline_at=None)
    assert (attempts, exc) == (3, None)
    assert sleeps == [3.0, 0.25]


async def test_retrying_gives_up_when_the_next_wait_would_reach_the_deadline() -> None:
    """Time left is the deadline minus the moving clock; a wait that would reach it ends the call.

    Deadline 10, each attempt costs 0.5 s: failures at 0.5, 2.0 and 4.5 (after sleeps of 1 and
    2 s); at 4.5 the 4 s wait still fits (8.5 < 10); at the fourth failure (9.0) the capped
    4 s would pass 10, so the call gives up there and raises the fourth error as itself.
    """
    errors: list[BaseException] = [APIConnectionError(f"e{i}") for i in range(6)]
    attempts, exc, sleeps, fake = await run_with_fake_time(errors, max_retries=10, deadline_at=10.0)
    assert sleeps == [1.0, 2.0, 4.0]
    assert attempts == 4
    assert exc is errors[3]
    assert fake.now == pytest.approx(9.0)


async def test_retrying_never_sleeps_past_a_deadline_some_way_off() -> None:
    """A deadline far ahead never cuts a wait short; the retry limit ends the call instead."""
    errors: list[BaseException] = [APIConnectionError(f"e{i}") for i in range(6)]
    attempts, exc, sleeps, _ = await run_with_fake_time(errors, max_retries=2, deadline_at=1000.0)
    assert sleeps == [1.0, 2.0]
    assert (attempts, exc) == (3, errors[2])
