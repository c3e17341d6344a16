"""The retry decision as pure functions: what is retried, how long to wait, when to give up."""

from __future__ import annotations

import asyncio
import email.utils

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
)
def test_backoff_never_exceeds_its_cap(retry_number: int, base: float, cap: float) -> None:
    """With the real random source, the delay stays in ``[0, min(cap, base * 2**n)]``."""
    delay = backoff_delay(retry_number, base=base, cap=cap)
    assert 0.0 <= delay <= cap
    assert delay <= base * 2.0 ** min(retry_number, 64)


# -- next_wait: the whole decision --------------------------------------------------------------

SERVER_503 = status_error(503, {}, "")


@pytest.mark.parametrize(
    ("exc", "retry_number", "retries_left", "time_left", "expected"),
    [
        (SERVER_503, 0, 3, None, 0.5),
        (SERVER_503, 2, 1, None, 2.0),
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


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from(sorted(RETRYABLE_STATUSES)),
    retry_after=st.none() | st.floats(0.0, 1000.0),
    retry_number=st.integers(0, 50),
    time_left=st.none() | st.floats(0.0, 200.0),
)
def test_wait_never_passes_the_deadline_nor_the_cap(
    status: int, retry_after: float | None, retry_number: int, time_left: float | None
) -> None:
    """Any wait chosen ends strictly before the deadline; a backoff wait stays under its cap."""
    exc = status_error(status, {}, "", retry_after=retry_after if status in (429, 503) else None)
    wait = next_wait(exc, retry_number, retries_left=1, time_left=time_left)
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
