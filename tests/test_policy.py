"""The call policy's decisions (``_policy.py``) as values: verdicts, refusals, outage kinds.

No server and no client: a :class:`CallPolicy` is built from settings and asked questions at
explicit loop times. The end-to-end behaviour lives in ``test_client_policy.py`` and
``test_resilience.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aopay_async import (
    AOPayError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CircuitBreaker,
    CircuitOpenError,
    InvalidRequestError,
    RateLimitError,
    ResponseDecodeError,
    RetryBudget,
    ServerError,
)
from aopay_async._breaker import CLOSED, HALF_OPEN, NORMAL, OPEN
from aopay_async._limiter import AdaptiveLimiter, TokenBucket
from aopay_async._policy import CallPolicy, adaptive_ceiling
from aopay_async._slots import Slots

#: One failure opens the circuit for 1 s; one probe.
TRIP_AT_ONCE = CircuitBreaker(consecutive_failures=1, open_seconds=1.0, max_open_seconds=1.0)


def make(**options: Any) -> CallPolicy:
    """A policy with the client's defaults unless *options* say otherwise."""
    settings: dict[str, Any] = {
        "limiter": None,
        "rate_limit": None,
        "burst": 1,
        "adaptive": False,
        "retry_budget": RetryBudget(),
        "circuit_breaker": CircuitBreaker(),
        "max_retries": 3,
        "backoff_base": 0.0,
        "backoff_max": 0.0,
    }
    settings.update(options)
    return CallPolicy(**settings)


def status_error(code: int, retry_after: float | None = None) -> APIStatusError:
    """A decoded error answer with *code* (and a ``Retry-After`` when given)."""
    kind = RateLimitError if code == 429 else ServerError if code >= 500 else APIStatusError
    return kind("failed", status_code=code, retry_after=retry_after)


# -- wiring ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "limiter_type"),
    [
        ({}, type(None)),
        ({"rate_limit": 5.0}, TokenBucket),
        ({"rate_limit": 5.0, "adaptive": True}, AdaptiveLimiter),
        ({"limiter": TokenBucket(3.0, 1)}, TokenBucket),
        ({"limiter": TokenBucket(3.0, 1), "adaptive": True}, AdaptiveLimiter),
    ],
)
def test_the_limiter_every_attempt_takes_a_token_from(
    options: dict[str, Any], limiter_type: type
) -> None:
    """No rate: no limiter; a rate: a TokenBucket; ``adaptive``: the gate in front of either."""
    assert type(make(**options).limiter) is limiter_type


@pytest.mark.parametrize(
    ("options", "present"),
    [
        ({}, {"budget", "circuit"}),
        ({"retry_budget": None, "circuit_breaker": None}, set()),
        ({"rate_limit": 5.0, "adaptive": True}, {"budget", "circuit", "rate"}),
    ],
)
def test_each_feature_is_none_when_off(options: dict[str, Any], present: set[str]) -> None:
    """``budget``, ``circuit`` and ``rate`` exist exactly when their option asks for them."""
    policy = make(**options)
    assert {n for n in ("budget", "circuit", "rate") if getattr(policy, n) is not None} == present


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"limiter": object()}, "limiter"),
        ({"retry_budget": 0.2}, "retry_budget"),
        ({"circuit_breaker": True}, "circuit_breaker"),
        ({"adaptive": "yes"}, "adaptive"),
        ({"adaptive": True}, "ceiling"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict[str, Any], says: str) -> None:
    """A wrong kind of limiter, budget, breaker or flag, or adaptive without a ceiling."""
    with pytest.raises(InvalidRequestError, match=says):
        make(**options)


class _Rated:
    def __init__(self, rate: object) -> None:
        self.rate = rate

    async def acquire(self) -> None:
        """Never waits."""


@given(
    limiter_rate=st.one_of(
        st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.integers()
    ),
    rate_limit=st.one_of(st.none(), st.floats(min_value=1e-9, max_value=1e9)),
)
def test_adaptive_ceiling_is_the_limiters_rate_else_rate_limit(
    limiter_rate: object, rate_limit: float | None
) -> None:
    """A limiter's finite positive (non-bool) ``rate`` wins; else ``rate_limit``; else refused."""
    usable = (
        isinstance(limiter_rate, int | float)
        and not isinstance(limiter_rate, bool)
        and limiter_rate == limiter_rate
        and 0 < limiter_rate < float("inf")
    )
    if usable:
        assert isinstance(limiter_rate, int | float)
        assert adaptive_ceiling(_Rated(limiter_rate), rate_limit) == float(limiter_rate)
    elif rate_limit is not None:
        assert adaptive_ceiling(_Rated(limiter_rate), rate_limit) == rate_limit
    else:
        with pytest.raises(InvalidRequestError, match="ceiling"):
            adaptive_ceiling(_Rated(limiter_rate), rate_limit)


# -- what an unanswered attempt tells the circuit --------------------------------------------


@pytest.mark.parametrize(
    ("exc", "bounded", "counted"),
    [
        (APITimeoutError("slow"), False, (1, 1)),  # the API's timeout: a failure
        (APITimeoutError("cut"), True, (0, 0)),  # cut by the call's deadline: no verdict
        (APIConnectionError("reset"), False, (1, 1)),
        (APIConnectionError("reset"), True, (1, 1)),  # only a timeout is excused by the cut
        (ResponseDecodeError("too large"), False, (1, 0)),  # a complete answer: the API is up
        (asyncio.CancelledError(), False, (0, 0)),
        (RuntimeError("a bug"), False, (0, 0)),
    ],
)
def test_an_unanswered_attempt_counts_as(
    exc: BaseException, bounded: bool, counted: tuple[int, int]
) -> None:
    """(outcomes, failures) in a closed window after one attempt ended in *exc*."""
    policy = make()
    assert policy.circuit is not None
    policy.unanswered(exc, NORMAL, bounded, 100.0)
    assert policy.circuit.window_counts(100.0) == counted


@pytest.mark.parametrize(
    ("exc", "bounded", "state"),
    [
        (APITimeoutError("slow"), False, OPEN),
        (APITimeoutError("cut"), True, HALF_OPEN),
        (ResponseDecodeError("too large"), False, CLOSED),
        (RuntimeError("a bug"), False, HALF_OPEN),
    ],
)
def test_a_probe_that_ends_unanswered(exc: BaseException, bounded: bool, state: str) -> None:
    """A probe's failure reopens, its success closes, no verdict gives its place back."""
    policy = make(circuit_breaker=TRIP_AT_ONCE)
    circuit = policy.circuit
    assert circuit is not None
    policy.unanswered(APIConnectionError("down"), NORMAL, False, 0.0)
    assert circuit.state == OPEN
    ticket = policy.admit(5.0)
    assert ticket > 0
    policy.unanswered(exc, ticket, bounded, 5.0)
    assert circuit.state == state
    if state == HALF_OPEN:  # the place is free again: the next attempt is a probe
        assert policy.admit(5.0) > 0


def test_no_circuit_no_verdict() -> None:
    """Without a breaker every ending is ignored (nothing to tell)."""
    policy = make(circuit_breaker=None)
    policy.unanswered(APIConnectionError("down"), NORMAL, False, 0.0)
    assert policy.circuit is None


# -- refusals --------------------------------------------------------------------------------


def test_an_open_circuit_refuses_before_and_after_the_waits() -> None:
    """``check`` and ``admit`` raise CircuitOpenError with the time to the next probe."""
    policy = make(circuit_breaker=TRIP_AT_ONCE)
    policy.unanswered(APIConnectionError("down"), NORMAL, False, 10.0)
    with pytest.raises(CircuitOpenError, match="nothing was sent") as before:
        policy.check(10.25)
    assert before.value.retry_after == pytest.approx(0.75)
    with pytest.raises(CircuitOpenError) as after:
        policy.admit(10.5)
    assert after.value.retry_after == pytest.approx(0.5)


def test_check_takes_no_probe_place() -> None:
    """The look before the waits is only a look: the probe's place is taken by ``admit``."""
    policy = make(circuit_breaker=TRIP_AT_ONCE)
    policy.unanswered(APIConnectionError("down"), NORMAL, False, 0.0)
    for _ in range(3):
        policy.check(2.0)  # due for a probe: no refusal, and nothing taken
    assert policy.admit(2.0) > 0
    with pytest.raises(CircuitOpenError):
        policy.check(2.0)  # now the one probe is out


# -- what a decoded error tells the adaptive rate -------------------------------------------


@pytest.mark.parametrize(
    ("error", "cut"),
    [
        (status_error(429), True),
        (status_error(429, retry_after=2.0), True),
        (status_error(503, retry_after=2.0), True),
        (status_error(503), False),
        (status_error(500), False),
    ],
)
def test_a_throttle_cuts_the_adaptive_rate(error: APIStatusError, cut: bool) -> None:
    """A 429, or any answer with ``Retry-After``, cuts the rate once; other errors do not."""
    policy = make(rate_limit=100.0, adaptive=True)
    assert policy.rate is not None
    policy.status_error(error, 0, 50.0)
    assert policy.rate.cuts == (1 if cut else 0)


def test_a_throttle_without_adaptive_changes_nothing() -> None:
    """Without ``adaptive`` a 429 is the retry loop's business only."""
    policy = make(rate_limit=100.0)
    policy.status_error(status_error(429), 0, 50.0)
    assert policy.rate is None


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_retries", "error", "enters"),
    [
        (3, APIConnectionError("reset"), True),
        (3, status_error(503), True),
        (3, status_error(400), False),
        (3, CircuitOpenError("open", retry_after=1.0), False),
        (0, APIConnectionError("reset"), False),
    ],
)
def test_which_first_failures_enter_the_retry_loop(
    max_retries: int, error: AOPayError, enters: bool
) -> None:
    """A retryable failure with retries configured; never with ``max_retries=0``."""
    assert make(max_retries=max_retries).retries(error) is enters


async def test_retry_replays_the_first_failure_then_attempts_again() -> None:
    """The loop judges the first failure, then calls *again* until one attempt succeeds."""
    policy = make(max_retries=3)
    outcomes: list[BaseException | str] = [APIConnectionError("again"), "history"]

    async def again() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert (
        await policy.retry(APIConnectionError("first"), again, None, None, "o-1", [1]) == "history"
    )
    assert outcomes == []


async def test_a_spent_budget_raises_the_last_error_noted() -> None:
    """With the budget spent, the first failure is raised at once, noted and kept for bulk."""
    policy = make(retry_budget=RetryBudget(percent=0.0, min_per_second=0.0))
    first = APIConnectionError("down")
    calls = 0

    async def again() -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(APIConnectionError) as info:
        await policy.retry(first, again, None, None, "o-1", [1])
    assert info.value is first
    assert calls == 0
    assert any("retry budget is spent" in note for note in first.__notes__)
    assert policy.outage_kind(first) == "budget"


# -- bulk's question -------------------------------------------------------------------------


async def test_outage_kinds() -> None:
    """open / budget / troubled / the item's own, as bulk reads them."""
    policy = make(circuit_breaker=TRIP_AT_ONCE)
    assert policy.outage_kind(CircuitOpenError("open", retry_after=1.0)) == "open"
    assert policy.outage_kind(APIConnectionError("one reset")) is None
    assert policy.outage_kind(status_error(400)) is None  # never an outage
    policy.unanswered(APIConnectionError("down"), NORMAL, False, 0.0)
    assert policy.outage_kind(APIConnectionError("while open")) == "troubled"
    assert policy.outage_kind(status_error(404)) is None


def test_without_budget_or_breaker_nothing_is_an_outage() -> None:
    """Both off: every failure is the item's own (bulk never holds items)."""
    policy = make(retry_budget=None, circuit_breaker=None)
    assert policy.outage_kind(APIConnectionError("down")) is None


# -- admission -------------------------------------------------------------------------------


class _Raising:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def acquire(self) -> None:
        """Fail the way a buggy limiter does."""
        raise self.exc


@pytest.mark.parametrize(
    "exc", [RuntimeError("a bug"), TimeoutError("its own"), asyncio.CancelledError()]
)
@pytest.mark.parametrize("deadline", [None, 30.0])
async def test_a_limiters_exception_passes_through_and_gives_the_slot_back(
    exc: BaseException, deadline: float | None
) -> None:
    """Whatever the limiter raises is raised as itself, and the slot is free again.

    Its own TimeoutError is not the call's deadline (which would say "deadline passed"):
    only the deadline's timer turns into APITimeoutError.
    """
    policy = make(limiter=_Raising(exc))
    slots = Slots(2)
    deadline_at = None if deadline is None else asyncio.get_running_loop().time() + deadline
    with pytest.raises(type(exc)) as info:
        await policy.wait(slots, deadline_at, deadline, None)
    assert info.value is exc
    assert slots.free == 2


async def test_the_deadline_while_waiting_is_an_api_timeout() -> None:
    """The deadline's timer firing during the wait: APITimeoutError, the slot given back."""

    class Stuck:
        async def acquire(self) -> None:
            """Wait for ever."""
            await asyncio.Event().wait()

    policy = make(limiter=Stuck())
    slots = Slots(1)
    deadline_at = asyncio.get_running_loop().time() + 0.05
    with pytest.raises(APITimeoutError, match=r"deadline of 0\.05s passed while it waited"):
        await policy.wait(slots, deadline_at, 0.05, None)
    assert slots.free == 1
