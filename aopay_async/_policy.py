"""The call policy: whether an attempt may go out, when, and what its end says about the API.

This module owns one client's resilience state and the decisions made with it:

- the wiring, from the client's options: the rate limiter (a ``TokenBucket``, the caller's
  own, or the adaptive gate in front of either), the retry budget's state, the circuit, the
  adaptive rate controller and the retry settings (a bad limiter, budget, breaker or
  ``adaptive`` is refused here, before any I/O; the numbers are ``_config``'s);
- admission: the circuit's look before any wait, then a concurrency slot and then a token
  (in that order, so tokens are never hoarded by attempts that cannot start yet), both bounded
  by the call's deadline, then the circuit's admission of the attempt itself;
- verdicts: what an attempt that ended without an answer tells the circuit, what a 429 tells
  the adaptive rate, whether a failure is retried (the tenacity loop of ``_retry``, the budget
  asked last), and bulk's question whether a failure is the API's outage or the item's own.

It must never send, decode or see a request (so no credential or customer value can reach a
message or an event from here), never read a clock other than the running loop's, and never
add a call to the path of an attempt that is admitted at once and answered. The client reads
:attr:`CallPolicy.circuit`, :attr:`~CallPolicy.budget` and :attr:`~CallPolicy.limiter` as
plain attributes there and calls in here only on a wait, a refusal or a failure. Why: that
path is counted in instructions (``python -m benchmarks.bench_instructions --impls aopay
--accounts 3 --requests 200``, ~174k per request), and small things show: one more coroutine
level per attempt measured +2-3%, a closure over the call's locals ~2%.

A plain bug in a caller's limiter (an exception outside the ``AOPayError`` tree) passes
through :meth:`CallPolicy.wait` as itself, with the slot given back and nothing held at the
circuit or the budget: see ``AOPayClient.get_credit_history`` for why.
"""

from __future__ import annotations

import asyncio
import math
import random
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from ._adaptive import RateController
from ._breaker import CLOSED, REFUSED, Circuit, CircuitBreaker, CircuitChange, is_outage
from ._budget import BudgetState, RetryBudget
from ._errors import (
    AOPayError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CircuitOpenError,
    InvalidRequestError,
)
from ._limiter import AdaptiveLimiter, RateLimiter, TokenBucket
from ._retry import is_retryable, retrying

if TYPE_CHECKING:
    from ._observe import Observer
    from ._slots import Slots
    from ._watch import Watch

__all__ = ["DEFAULT_CIRCUIT_BREAKER", "DEFAULT_RETRY_BUDGET", "CallPolicy", "adaptive_ceiling"]

#: The defaults of ``retry_budget=`` and ``circuit_breaker=``: frozen settings, so sharing
#: them is safe; each client builds its own state from them.
DEFAULT_RETRY_BUDGET = RetryBudget()
DEFAULT_CIRCUIT_BREAKER = CircuitBreaker()

T = TypeVar("T")


class CallPolicy:
    """One client's limiter, retry budget, circuit, adaptive rate and retry settings.

    Built from the client's options (the numbers already checked by ``_config``; a bad
    limiter, budget, breaker or ``adaptive`` raises :class:`InvalidRequestError`); the
    client then hands it its observer with :meth:`report_to`. ``limiter``, ``budget``,
    ``circuit`` and ``rate`` are None when their feature is off.
    """

    __slots__ = (
        "_backoff",
        "_observer",
        "_random",
        "_refused_errors",
        "budget",
        "circuit",
        "limiter",
        "max_retries",
        "rate",
    )

    def __init__(
        self,
        *,
        limiter: RateLimiter | None,
        rate_limit: float | None,
        burst: int,
        adaptive: bool,
        retry_budget: RetryBudget | None,
        circuit_breaker: CircuitBreaker | None,
        max_retries: int,
        backoff_base: float,
        backoff_max: float,
    ) -> None:
        if limiter is not None and not isinstance(limiter, RateLimiter):
            raise InvalidRequestError("limiter must have an async acquire() method")
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise InvalidRequestError("retry_budget must be a RetryBudget or None")
        if circuit_breaker is not None and not isinstance(circuit_breaker, CircuitBreaker):
            raise InvalidRequestError("circuit_breaker must be a CircuitBreaker or None")
        if not isinstance(adaptive, bool):
            raise InvalidRequestError(f"adaptive must be a bool, not {type(adaptive).__name__}")
        #: What every attempt takes a token from, or None (no rate limit).
        self.limiter: RateLimiter | None = limiter
        if limiter is None and rate_limit is not None and not adaptive:
            self.limiter = TokenBucket(rate_limit, burst)
        self.budget: BudgetState | None = retry_budget.new_state() if retry_budget else None
        self.circuit: Circuit | None = (
            circuit_breaker.new_state(self._circuit_changed) if circuit_breaker else None
        )
        self.rate: RateController | None = None
        if adaptive:
            self.rate = RateController(adaptive_ceiling(limiter, rate_limit))
            # Per process: a local bucket at the adaptive rate in front of the configured
            # limiter (a Redis limiter keeps the fleet's ceiling; this process slows itself).
            self.limiter = AdaptiveLimiter(self.rate, burst, limiter)
        # Errors raised because the budget refused their retry (bulk holds those items).
        self._refused_errors: weakref.WeakSet[BaseException] = weakref.WeakSet()
        self._observer: Observer | None = None
        self.max_retries = max_retries
        self._backoff = (backoff_base, backoff_max)
        self._random = random.Random()

    def report_to(self, observer: Observer) -> None:
        """Send circuit changes and spent budgets to *observer* (made once options are checked)."""
        self._observer = observer
        if self.circuit is not None:
            observer.circuit_created()

    # -- admission -----------------------------------------------------------------------

    def check(self, now: float) -> None:
        """Before any wait: raise :class:`CircuitOpenError` if the circuit would refuse now.

        Called only while the circuit is not closed; takes no probe place.
        """
        circuit = self.circuit
        assert circuit is not None
        if circuit.would_refuse(now):
            raise self._refused(circuit, now)

    async def wait(
        self, slots: Slots, deadline_at: float | None, deadline: float | None, watch: Watch | None
    ) -> int:
        """Wait for a concurrency slot, then a token; return the adaptive rate's cut count.

        The slot is held on return, and *watch* (when given) is told the wait is over.
        *deadline_at* (loop time) bounds both waits; when it passes, the slot is given back
        and :class:`APITimeoutError` is raised (*deadline* is its length in seconds, for the
        message). Anything the limiter raises, cancellation and a plain bug included, gives
        the slot back and passes through as itself.
        """
        epoch = 0
        rate = self.rate
        limiter = self.limiter
        try:
            async with asyncio.timeout_at(deadline_at) as within:
                await slots.acquire()
                try:
                    if limiter is not None:
                        await limiter.acquire()
                        if rate is not None:
                            # The adaptive gate has just (re)reserved this slot at the
                            # current rate: that is the rate this attempt tests.
                            epoch = rate.cuts
                except BaseException:
                    slots.release()
                    raise
        except TimeoutError:
            if not within.expired():
                raise  # the limiter's own TimeoutError, not the call's deadline
            raise APITimeoutError(
                f"the call's deadline of {deadline:g}s passed while it waited for "
                "the rate limiter or a free connection"
            ) from None
        if watch is not None:
            watch.waited()
        return epoch

    def admit(self, now: float) -> int:
        """After the waits: the attempt's circuit ticket, or raise :class:`CircuitOpenError`.

        Asked again because the circuit may have opened meanwhile, and a probe's place is
        taken only when the probe is about to go out. Called only while not closed.
        """
        circuit = self.circuit
        assert circuit is not None
        ticket = circuit.admit(now)
        if ticket == REFUSED:
            raise self._refused(circuit, now)
        return ticket

    def _refused(self, circuit: Circuit, now: float) -> CircuitOpenError:
        wait = circuit.retry_after(now)
        return CircuitOpenError(
            "the API looks unavailable (the circuit breaker opened after repeated connection "
            f"errors, timeouts or 5xx answers), so nothing was sent; next probe in {wait:.1f}s",
            retry_after=wait,
        )

    # -- verdicts ------------------------------------------------------------------------

    def unanswered(self, exc: BaseException, ticket: int, bounded: bool, now: float) -> None:
        """An admitted attempt ended in *exc* before its answer could be decoded.

        An answered attempt is recorded by the client inline (``status < 500``: the API is
        up), to keep a call out of the success path. *bounded*: the attempt's timeout was
        cut to the call's deadline, so its timeout says nothing about the API.
        """
        circuit = self.circuit
        if circuit is None:
            return
        if isinstance(exc, APITimeoutError):
            if bounded:
                circuit.abandon(ticket)
            else:
                circuit.record(now, False, ticket)
        elif isinstance(exc, APIConnectionError):
            circuit.record(now, False, ticket)
        elif isinstance(exc, AOPayError):  # a complete answer we refused (too large): it is up
            circuit.record(now, True, ticket)
        else:  # cancelled, or a bug: no verdict, the probe place is freed
            circuit.abandon(ticket)

    def status_error(self, exc: APIStatusError, epoch: int, now: float) -> None:
        """An answer decoded as *exc*: a 429 or a ``Retry-After`` cuts the adaptive rate.

        *epoch* is :meth:`wait`'s return: a cut counts once per rate it was measured at.
        """
        rate = self.rate
        if rate is not None and (exc.status_code == 429 or exc.retry_after is not None):
            rate.throttled(now, epoch)

    def retries(self, exc: AOPayError) -> bool:
        """Does a call whose first attempt failed with *exc* enter :meth:`retry`?"""
        return self.max_retries > 0 and is_retryable(exc)

    async def retry(
        self,
        first: AOPayError,
        again: Callable[[], Awaitable[T]],
        deadline_at: float | None,
        watch: Watch | None,
        order_id: str,
        sent: list[int],
    ) -> T:
        """Retry a call whose first attempt failed with *first*: *again* is one more attempt.

        The tenacity loop of ``_retry.retrying``: attempt 1 is *first*, replayed so the same
        rules judge it; the retry budget is asked last (:meth:`may_retry`, told the call's
        *order_id* and *sent*, its attempts so far, for the event). Returns what an attempt
        returns, or raises the last failure.
        """
        base, cap = self._backoff
        replay: AOPayError | None = first
        async for attempt in retrying(
            max_retries=self.max_retries,
            deadline_at=deadline_at,
            clock=asyncio.get_running_loop().time,
            base=base,
            cap=cap,
            uniform=self._random.uniform,
            on_retry=None if watch is None else watch.retrying,
            may_retry=None if self.budget is None else partial(self.may_retry, order_id, sent),
        ):
            with attempt:
                if replay is not None:
                    exc, replay = replay, None
                    raise exc  # let the retry rules judge the first failure
                result = await again()
        return result

    def may_retry(self, order_id: str, sent: list[int], exc: BaseException) -> bool:
        """The retry budget's word on one retry (asked by the retry loop, slow path only);
        *order_id* and *sent* (attempts sent so far) name the call in the event if refused."""
        budget = self.budget
        assert budget is not None
        if budget.try_withdraw(asyncio.get_running_loop().time()):
            return True
        exc.add_note(
            "aopay_async: not retried: the client's retry budget is spent (retries are capped "
            "at a share of recent calls while the API keeps failing)"
        )
        self._refused_errors.add(exc)
        self._budget_spent(exc, order_id, sent[0])
        return False

    def outage_kind(self, exc: BaseException) -> str | None:
        """Bulk's question: is *exc* the API's outage rather than the item's own failure?

        ``"open"``: the circuit refused the call; ``"budget"``: the budget refused its retry;
        ``"troubled"``: an outage error while the budget is spent or the circuit is not
        closed (the API is failing for everyone, not just for this item); None: the item's
        own failure. Always None with neither a budget nor a breaker.
        """
        if isinstance(exc, CircuitOpenError):
            return "open"
        budget, circuit = self.budget, self.circuit
        if not is_outage(exc) or (budget is None and circuit is None):
            return None
        if exc in self._refused_errors:
            return "budget"
        if (circuit is not None and circuit.state != CLOSED) or (
            budget is not None and budget.balance(asyncio.get_running_loop().time()) < 1
        ):
            return "troubled"
        return None

    # -- reports -------------------------------------------------------------------------

    def _budget_spent(self, exc: BaseException, order_id: str, attempt: int) -> None:
        """The retry budget refused a retry after *exc* (call *order_id*, its attempt number
        *attempt*): one WARNING event. (The error gets its order id only when it is raised.)"""
        if self._observer is not None:
            self._observer.budget_spent(order_id, attempt, exc)

    def _circuit_changed(self, change: CircuitChange) -> None:
        """Every circuit transition (see ``_breaker.py``): one INFO event."""
        if self._observer is not None:
            retry_after = change.retry_after if change.new == "open" else None
            self._observer.circuit_changed(change.old, change.new, retry_after)


def adaptive_ceiling(limiter: RateLimiter | None, rate_limit: float | None) -> float:
    """``adaptive=True``'s ceiling: a custom limiter's own ``rate``, else ``rate_limit``."""
    rate = getattr(limiter, "rate", None) if limiter is not None else None
    if (
        isinstance(rate, int | float)
        and not isinstance(rate, bool)
        and math.isfinite(rate)
        and rate > 0
    ):
        return float(rate)
    if rate_limit is None:
        raise InvalidRequestError(
            "adaptive=True needs a ceiling: give rate_limit (or a limiter with a rate)"
        )
    return float(rate_limit)
