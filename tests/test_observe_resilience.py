"""The breaker and the retry budget report through the one event stream (hooks and logging)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from aopay_async import AOPayClient, CircuitBreaker, CircuitOpenError, RetryBudget, ServerError
from aopay_async.events import Event, EventKind
from aopay_async.testing import SandboxServer


def _client(server: SandboxServer, **options: Any) -> AOPayClient:
    """A client on *server* with zero backoff and no client-side rate limit."""
    return AOPayClient(
        server.company_code,
        server.registration_id,
        base_url=server.url,
        rate_limit=None,
        backoff_base=0.0,
        **options,
    )


async def test_circuit_changes_are_events_and_info_lines(caplog: pytest.LogCaptureFixture) -> None:
    """Three failures in a row open a 3-in-a-row breaker: one CIRCUIT_CHANGED closed -> open."""
    events: list[Event] = []
    breaker = CircuitBreaker(consecutive_failures=3, open_seconds=30.0, max_open_seconds=30.0)
    caplog.set_level(logging.INFO, logger="aopay_async")
    async with (
        SandboxServer() as server,
        _client(
            server,
            max_retries=0,
            retry_budget=None,
            circuit_breaker=breaker,
            event_hooks=[events.append],
        ) as client,
    ):
        server.outage(60.0, fault="503")
        for i in range(3):
            with pytest.raises(ServerError):
                await client.get_credit_history(cibil_id=f"OUT{i:04d}")
        with pytest.raises(CircuitOpenError):
            await client.get_credit_history(cibil_id="OUT9999")
    changes = [e for e in events if e.kind is EventKind.CIRCUIT_CHANGED]
    assert [(e.reason, e.state) for e in changes] == [("closed", "open")]
    assert changes[0].delay_seconds == pytest.approx(30.0)
    lines = [r.getMessage() for r in caplog.records if "circuit" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "open" in lines[0]
    assert all(r.levelno == logging.INFO for r in caplog.records if "circuit" in r.getMessage())


@pytest.mark.parametrize(
    ("budget", "refused_after"),
    [
        pytest.param(RetryBudget(percent=0.0, min_per_second=0.0), 1, id="no retry at all"),
        pytest.param(RetryBudget(percent=0.0, min_per_second=0.1), 2, id="one retry in 10 s"),
    ],
)
async def test_a_spent_budget_is_one_warning_event(
    budget: RetryBudget, refused_after: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A spent budget refuses the retry after attempt *refused_after*: one BUDGET_SPENT
    event carrying the call's order id and that attempt's number."""
    events: list[Event] = []
    caplog.set_level(logging.WARNING, logger="aopay_async")
    async with (
        SandboxServer() as server,
        _client(
            server, retry_budget=budget, circuit_breaker=None, event_hooks=[events.append]
        ) as client,
    ):
        server.outage(60.0, fault="503")
        with pytest.raises(ServerError) as info:
            await client.get_credit_history(cibil_id="OUT0001", client_order_id="ORD-B-1")
    assert info.value.attempts == refused_after
    spent = [e for e in events if e.kind is EventKind.BUDGET_SPENT]
    assert len(spent) == 1
    assert spent[0].reason == "503"
    # The refused call's order id and the attempt that failed, though the error gets its
    # order id only when it is raised, after the budget refused.
    assert (spent[0].client_order_id, spent[0].attempt) == ("ORD-B-1", refused_after)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert f"order_id=ORD-B-1 attempt={refused_after} " in warnings[0].getMessage()
    assert "OUT0001" not in warnings[0].getMessage()
