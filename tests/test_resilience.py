"""Retry budget, circuit breaker, adaptive rate and the bulk pause, end to end on the sandbox."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from aopay_async import (
    AOPayClient,
    APIConnectionError,
    AuthenticationError,
    CircuitBreaker,
    CircuitOpenError,
    InvalidRequestError,
    RetryBudget,
    ServerError,
)
from aopay_async._breaker import CLOSED, OPEN, CircuitChange
from aopay_async.testing import SandboxServer


def _client(server: SandboxServer, **options: Any) -> AOPayClient:
    """A client on *server* with zero backoff and no client-side rate limit unless given."""
    knobs: dict[str, Any] = {"rate_limit": None, "backoff_base": 0.0}
    knobs.update(options)
    return AOPayClient(server.company_code, server.registration_id, base_url=server.url, **knobs)


# -- retry budget -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["503", "reset"])
async def test_budget_caps_sends_in_a_total_outage(fault: str) -> None:
    """Every answer fails: 100 calls send at most 100 + max(20%, floor of 10) requests, not 400."""
    async with SandboxServer() as server, _client(server, circuit_breaker=None) as client:
        server.outage(60.0, fault=fault)
        errors = []
        for i in range(100):
            with pytest.raises((ServerError, APIConnectionError)) as info:
                await client.get_credit_history(cibil_id=f"OUT{i:04d}")
            errors.append(info.value)
        sent = server.stats.requests
    assert sent == sum(e.attempts for e in errors)
    assert 100 <= sent <= 100 + 20
    # Once spent, a call sends its first attempt only and says why it stopped.
    cut_short = [e for e in errors if e.attempts == 1]
    assert len(cut_short) >= 80
    assert all(
        any("retry budget is spent" in note for note in getattr(e, "__notes__", []))
        for e in cut_short
    )


async def test_budget_retries_every_random_fault() -> None:
    """3% random faults: every call still succeeds; the budget bites only in an outage."""
    async with (
        SandboxServer(faults={"503": 0.02, "reset": 0.01}, seed=3) as server,
        _client(server, circuit_breaker=None, max_concurrency=16) as client,
    ):
        results = [r async for r in client.bulk_credit_history(f"R{i:05d}" for i in range(600))]
    assert len(results) == 600
    assert all(r.ok for r in results)
    faults = server.stats.by_outcome["503"] + server.stats.by_outcome["reset"]
    assert faults >= 12
    # Each fault cost exactly one retry, and the client counted what the server saw.
    assert sum(r.attempts for r in results) == server.stats.requests == 600 + faults


async def test_no_budget_keeps_the_old_behaviour() -> None:
    """retry_budget=None: every call of an outage sends 1 + max_retries attempts."""
    async with (
        SandboxServer() as server,
        _client(server, retry_budget=None, circuit_breaker=None, max_retries=3) as client,
    ):
        server.outage(60.0)
        for i in range(20):
            with pytest.raises(ServerError) as info:
                await client.get_credit_history(cibil_id=f"OUT{i:04d}")
            assert info.value.attempts == 4
    assert server.stats.requests == 80


# -- circuit breaker --------------------------------------------------------------------------


async def test_breaker_opens_and_refuses_without_sending() -> None:
    """After 10 outage answers in a row the circuit opens: calls fail at once, nothing sent."""
    changes: list[CircuitChange] = []
    async with SandboxServer() as server, _client(server, max_retries=0) as client:
        assert client._circuit is not None
        client._circuit.on_change = changes.append
        server.outage(60.0)
        for i in range(10):
            with pytest.raises(ServerError):
                await client.get_credit_history(cibil_id=f"OUT{i:04d}")
        sent = server.stats.requests
        for i in range(50):
            with pytest.raises(CircuitOpenError) as info:
                await client.get_credit_history(cibil_id=f"MORE{i:04d}")
        assert server.stats.requests == sent == 10
    error = info.value
    assert error.attempts == 0
    assert 0 < error.retry_after <= 5.0
    assert error.client_order_id is not None
    assert "next probe" in str(error)
    assert [(c.old, c.new) for c in changes] == [(CLOSED, OPEN)]


async def test_breaker_probes_and_closes_when_the_api_is_back() -> None:
    """Open, then after open_seconds one probe goes out; its success closes the circuit."""
    breaker = CircuitBreaker(open_seconds=0.2, max_open_seconds=0.4)
    async with (
        SandboxServer() as server,
        _client(server, max_retries=0, circuit_breaker=breaker) as client,
    ):
        server.outage(0.5)
        for i in range(10):
            with pytest.raises(ServerError):
                await client.get_credit_history(cibil_id=f"OUT{i:04d}")
        with pytest.raises(CircuitOpenError):
            await client.get_credit_history(cibil_id="REFUSED")
        history = None
        async with asyncio.timeout(10):
            while history is None:
                try:
                    history = await client.get_credit_history(cibil_id="BACK")
                except (CircuitOpenError, ServerError) as exc:
                    await asyncio.sleep(getattr(exc, "retry_after", None) or 0.05)
        assert client._circuit is not None
        assert client._circuit.state == CLOSED
        # While open, only probes reached the server: one per open period at most.
        probes = server.stats.requests - 10 - 1
        assert 0 <= probes <= 5


async def test_breaker_ignores_4xx_and_429() -> None:
    """401s and 429s are the API answering: the circuit stays closed whatever their number."""
    scripts = {"BADAUTH": ["401", "*"], "THROTTLED": ["429", "*"]}
    async with (
        SandboxServer(scripts=scripts, retry_after=0) as server,
        _client(server, max_retries=0) as client,
    ):
        for _ in range(30):
            with pytest.raises(AuthenticationError):
                await client.get_credit_history(cibil_id="BADAUTH")
        for _ in range(30):
            with pytest.raises(Exception, match="429"):
                await client.get_credit_history(cibil_id="THROTTLED")
        assert client._circuit is not None
        assert client._circuit.state == CLOSED
        assert (await client.get_credit_history(cibil_id="FINE")).status == "SUCCESS"


async def test_an_open_circuit_ends_a_retrying_call_with_its_attempts() -> None:
    """A call whose retry meets an open circuit raises CircuitOpenError counting its sends."""
    async with SandboxServer() as server, _client(server, max_retries=20) as client:
        server.outage(60.0)
        with pytest.raises(CircuitOpenError) as info:
            await client.get_credit_history(cibil_id="OUT")
    assert info.value.attempts == server.stats.requests == 10


# -- adaptive rate ----------------------------------------------------------------------------


async def _hammer(client: AOPayClient, seconds: float, workers: int = 16) -> Counter[str]:
    """Call as fast as the client lets *workers* tasks for *seconds*; count the outcomes."""
    outcomes: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def worker(w: int) -> None:
        i = 0
        while loop.time() < end:
            i += 1
            try:
                await client.get_credit_history(cibil_id=f"W{w}-{i}")
                outcomes["ok"] += 1
            except Exception as exc:
                outcomes[type(exc).__name__] += 1

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return outcomes


@pytest.mark.slow
async def test_adaptive_rate_meets_far_fewer_429s_than_a_fixed_rate() -> None:
    """Quota 40/s, ceiling 120/s: adaptive sends a small share of 429s, fixed sends ~2/3."""
    shares = {}
    for adaptive in (False, True):
        async with (
            SandboxServer(rate_limit=40.0, burst=5, retry_after=0.05) as server,
            _client(server, rate_limit=120.0, adaptive=adaptive, max_retries=0) as client,
        ):
            await _hammer(client, 1.0)  # learn
            server.stats.reset()
            await _hammer(client, 2.0)
            shares[adaptive] = server.stats.rate_limited / max(1, server.stats.requests)
            if adaptive:
                assert client._rate is not None
                assert client._rate.cuts >= 1
    assert shares[False] > 0.4
    assert shares[True] < shares[False] / 3


def test_adaptive_needs_a_ceiling() -> None:
    """adaptive=True with rate_limit=None and no limiter with a rate has no ceiling: refused."""
    with pytest.raises(InvalidRequestError, match="ceiling"):
        AOPayClient("CMP1045", "AOP-554", rate_limit=None, adaptive=True)


def test_adaptive_takes_a_custom_limiter_rate_as_ceiling() -> None:
    """With a limiter that has a rate (a Redis limiter), that rate is the ceiling."""

    class Shared:
        rate = 42.0

        async def acquire(self) -> None:
            return None

    client = AOPayClient("CMP1045", "AOP-554", limiter=Shared(), adaptive=True)
    assert client._rate is not None
    assert client._rate.ceiling == 42.0


@pytest.mark.parametrize(
    ("option", "value"),
    [("retry_budget", 0.2), ("circuit_breaker", True), ("adaptive", "yes")],
)
def test_bad_resilience_options_are_refused(option: str, value: object) -> None:
    """A wrong kind of value for a resilience option is an InvalidRequestError naming it."""
    with pytest.raises(InvalidRequestError, match=option):
        AOPayClient("CMP1045", "AOP-554", **{option: value})  # type: ignore[arg-type]


# -- bulk waits out an outage -----------------------------------------------------------------


async def test_bulk_holds_items_through_an_outage_and_loses_none() -> None:
    """An outage mid-run: every item ends ok, once, and the client counted what the server saw."""
    breaker = CircuitBreaker(open_seconds=0.2, max_open_seconds=0.4)
    async with (
        SandboxServer(outages=[(0.3, 0.8)]) as server,
        _client(server, rate_limit=200.0, circuit_breaker=breaker) as client,
    ):
        results = [r async for r in client.bulk_credit_history(f"B{i:05d}" for i in range(300))]
        stats = server.stats
    assert sorted(r.item_index for r in results) == list(range(300))
    assert all(r.ok for r in results), Counter(type(r.error).__name__ for r in results)
    assert stats.outage > 0
    assert sum(r.attempts for r in results) == stats.requests
    assert client._circuit is not None
    assert client._circuit.opens >= 1
    # Far fewer sends in the outage than its length at 200/s (160).
    assert stats.outage < 100


async def test_bulk_still_fails_an_items_own_errors_during_an_outage() -> None:
    """A 401 item fails with its own error; the others wait out the outage and succeed."""
    breaker = CircuitBreaker(open_seconds=0.2, max_open_seconds=0.4)
    async with (
        SandboxServer(outages=[(0.2, 0.5)], scripts={"B00007": ["401", "*"]}) as server,
        _client(server, rate_limit=100.0, circuit_breaker=breaker) as client,
    ):
        results = [r async for r in client.bulk_credit_history(f"B{i:05d}" for i in range(120))]
    by_id = {r.request.cibil_id: r for r in results}
    assert len(by_id) == 120
    assert isinstance(by_id["B00007"].error, AuthenticationError)
    assert all(r.ok for cid, r in by_id.items() if cid != "B00007")


async def test_bulk_without_breaker_waits_out_a_spent_budget() -> None:
    """circuit_breaker=None: the spent budget alone holds the items; none is lost."""
    async with (
        SandboxServer(outages=[(0.2, 1.0)]) as server,
        _client(server, rate_limit=100.0, circuit_breaker=None, max_concurrency=8) as client,
    ):
        results = [r async for r in client.bulk_credit_history(f"B{i:05d}" for i in range(150))]
        stats = server.stats
    assert len(results) == 150
    assert all(r.ok for r in results), Counter(type(r.error).__name__ for r in results)
    assert sum(r.attempts for r in results) == stats.requests


async def test_bulk_lone_failing_item_fails_after_its_retries() -> None:
    """One id that always gets 503 while the rest succeed is its own failure: 1 + max_retries."""
    async with (
        SandboxServer(scripts={"B00003": ["503", "*"]}) as server,
        _client(server, max_retries=2) as client,
    ):
        results = [r async for r in client.bulk_credit_history(f"B{i:05d}" for i in range(40))]
    bad = [r for r in results if not r.ok]
    assert [r.request.cibil_id for r in bad] == ["B00003"]
    assert isinstance(bad[0].error, ServerError)
    assert bad[0].attempts == bad[0].error.attempts == 3


def test_defaults_are_the_documented_ones() -> None:
    """The defaults the README explains: 10 s / 20% / 1 per s; 10 s / 20 / 50% / 10 / 5-60 s / 1."""
    assert RetryBudget() == RetryBudget(window=10.0, percent=0.2, min_per_second=1.0)
    assert CircuitBreaker() == CircuitBreaker(
        window=10.0,
        minimum_calls=20,
        failure_ratio=0.5,
        consecutive_failures=10,
        open_seconds=5.0,
        max_open_seconds=60.0,
        probes=1,
    )
    client = AOPayClient("CMP1045", "AOP-554")
    assert client._budget is not None
    assert client._circuit is not None
    assert client._rate is None


async def test_bulk_gives_up_after_its_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage that outlasts HOLD_PATIENCE fails the held items with CircuitOpenError, once."""
    import aopay_async._bulk as bulk

    monkeypatch.setattr(bulk, "HOLD_PATIENCE", 1.0)
    breaker = CircuitBreaker(open_seconds=0.2, max_open_seconds=0.4)
    async with (
        SandboxServer(outages=[(0.0, 120.0)]) as server,
        _client(server, circuit_breaker=breaker, max_concurrency=4) as client,
    ):
        async with asyncio.timeout(60):
            results = [r async for r in client.bulk_credit_history(f"P{i:03d}" for i in range(12))]
        stats = server.stats
    assert sorted(r.item_index for r in results) == list(range(12))
    assert not any(r.ok for r in results)
    assert any(isinstance(r.error, CircuitOpenError) for r in results)
    assert sum(r.attempts for r in results) == stats.requests
