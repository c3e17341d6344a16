"""The retry decision: what is retried, how long to wait, and when to give up.

Everything here but :func:`retrying` is a pure function of values (an error, a retry number,
the time left): no awaiting, no sockets, no clock reads unless a clock is passed in. The
client runs a call's first attempt outside tenacity and only builds :func:`retrying` after a
failure, so retries cost nothing when nothing fails.

Rules (the README, "Retries, rate limit, deadline"):
- retried: connection errors and resets before a complete response, attempt timeouts,
  HTTP 408, 429, 500, 502, 503, 504, and a shared limiter (Redis) that failed (nothing was sent);
- never retried: other statuses, an error the API reports in a 2xx body, a body that
  fails to decode, cancellation;
- wait before retry n (n = 0 for the first retry): ``uniform(0, min(cap, base * 2**n))``,
  or what ``Retry-After`` asks on a 429 or 503;
- no wait may end past the call's deadline: if it would, give up now with the last error.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from ._errors import APIConnectionError, APIStatusError, RateLimiterError

# Re-exported: parse_retry_after was defined here first, and tests import it from here.
from ._headers import RETRY_AFTER_STATUSES, parse_retry_after

__all__ = [
    "RETRYABLE_STATUSES",
    "backoff_delay",
    "is_retryable",
    "next_wait",
    "parse_retry_after",
    "retrying",
]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: With no deadline, the longest ``Retry-After`` a call sleeps through; a longer one (an
#: outage announced in hours) fails the call at once instead of hanging it silently.
MAX_RETRY_AFTER_WITHOUT_DEADLINE = 60.0

Uniform = Callable[[float, float], float]


def is_retryable(exc: BaseException) -> bool:
    """True when another attempt of the same request may succeed where *exc* failed."""
    if isinstance(exc, APIConnectionError | RateLimiterError):  # incl. APITimeoutError
        return True
    if isinstance(exc, APIStatusError):
        return exc.status_code in RETRYABLE_STATUSES
    return False


def backoff_delay(
    retry_number: int, *, base: float = 0.5, cap: float = 8.0, uniform: Uniform = random.uniform
) -> float:
    """Full-jitter exponential backoff: ``uniform(0, min(cap, base * 2**retry_number))``."""
    ceiling = min(cap, base * 2.0 ** min(retry_number, 64))
    if ceiling <= 0:
        return 0.0
    return uniform(0.0, ceiling)


def next_wait(
    exc: BaseException,
    retry_number: int,
    *,
    retries_left: int,
    time_left: float | None,
    base: float = 0.5,
    cap: float = 8.0,
    uniform: Uniform = random.uniform,
) -> float | None:
    """How long to wait before retrying after *exc*, or None to give up now.

    *retry_number* counts from 0 for the first retry; *time_left* is the seconds left to
    the call's deadline (None: no deadline). Gives up when *exc* is not retryable, when no
    retries are left, when the wait would reach the deadline, or (with no deadline) when the
    server asks for more than ``MAX_RETRY_AFTER_WITHOUT_DEADLINE`` seconds.
    """
    if retries_left <= 0 or not is_retryable(exc):
        return None
    wait: float | None = None
    if isinstance(exc, APIStatusError) and exc.status_code in RETRY_AFTER_STATUSES:
        wait = exc.retry_after
        if wait is not None and time_left is None and wait > MAX_RETRY_AFTER_WITHOUT_DEADLINE:
            return None
    if wait is None:
        wait = backoff_delay(retry_number, base=base, cap=cap, uniform=uniform)
    if time_left is not None and wait >= time_left:
        return None
    return wait


class _CallRetry:
    """One call's retry rules, asked by tenacity: wait, then stop, then before_sleep.

    Tenacity asks wait, then stop, for each failure: the decision is made once, in
    :meth:`wait`, and :meth:`stop` reads it (one instance serves one call).
    """

    def __init__(
        self,
        *,
        max_retries: int,
        deadline_at: float | None,
        clock: Callable[[], float],
        base: float,
        cap: float,
        uniform: Uniform,
        on_retry: Callable[[BaseException, float], None] | None,
        may_retry: Callable[[BaseException], bool] | None,
    ) -> None:
        self._max_retries = max_retries
        self._deadline_at = deadline_at
        self._clock = clock
        self._base = base
        self._cap = cap
        self._uniform = uniform
        self._on_retry = on_retry
        self._may_retry = may_retry
        self._decision: float | None = None

    def _decide(self, state: RetryCallState) -> float | None:
        outcome = state.outcome
        assert outcome is not None
        exc = outcome.exception()
        assert exc is not None
        deadline_at = self._deadline_at
        time_left = None if deadline_at is None else deadline_at - self._clock()
        wait = next_wait(
            exc,
            state.attempt_number - 1,
            retries_left=self._max_retries + 1 - state.attempt_number,
            time_left=time_left,
            base=self._base,
            cap=self._cap,
            uniform=self._uniform,
        )
        if wait is not None and self._may_retry is not None and not self._may_retry(exc):
            return None
        return wait

    def wait(self, state: RetryCallState) -> float:
        self._decision = self._decide(state)
        return self._decision or 0.0

    def stop(self, state: RetryCallState) -> bool:
        return self._decision is None

    def before_sleep(self, state: RetryCallState) -> None:
        assert self._on_retry is not None
        assert state.outcome is not None
        assert state.next_action is not None
        exc = state.outcome.exception()
        assert exc is not None
        self._on_retry(exc, state.next_action.sleep)


def retrying(
    *,
    max_retries: int,
    deadline_at: float | None,
    clock: Callable[[], float],
    base: float,
    cap: float,
    uniform: Uniform = random.uniform,
    on_retry: Callable[[BaseException, float], None] | None = None,
    may_retry: Callable[[BaseException], bool] | None = None,
) -> AsyncRetrying:
    """The tenacity loop for one call, built only once its first attempt has failed.

    Tenacity's attempt 1 is that first failure, replayed so the same rules judge it;
    attempt k is the call's attempt k. The wait is :func:`next_wait`; the stop is "no wait".
    *on_retry* is told each failure that will be retried and the wait before the retry.
    *may_retry* (the retry budget) is asked last, only for a retry the rules would make:
    False gives up now with the last error.
    """
    rules = _CallRetry(
        max_retries=max_retries,
        deadline_at=deadline_at,
        clock=clock,
        base=base,
        cap=cap,
        uniform=uniform,
        on_retry=on_retry,
        may_retry=may_retry,
    )
    return AsyncRetrying(
        retry=retry_if_exception(is_retryable),
        wait=rules.wait,
        stop=rules.stop,
        before_sleep=None if on_retry is None else rules.before_sleep,
        reraise=True,
    )
