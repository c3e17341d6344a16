"""Bulk fan-out end to end: the real client against the sandbox on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from collections.abc import AsyncIterator

import psutil
import pytest

from aopay_async import (
    AOPayClient,
    APITimeoutError,
    BulkResult,
    CreditHistoryRequest,
    InvalidRequestError,
    ServerError,
)
from aopay_async.testing import SandboxServer

# End to end on both transports (conftest's client_transport: fast path and aiohttp).
pytestmark = pytest.mark.usefixtures("client_transport")


def _client(server: SandboxServer, **knobs: object) -> AOPayClient:
    """A client on *server*: its credentials, no client-side limit, zero backoff.

    No retry budget and no circuit breaker: a quarter of these items fail on purpose, which
    is an outage to those (tests/test_resilience.py covers them); here the retries alone.
    """
    options: dict[str, object] = {
        "rate_limit": None,
        "backoff_base": 0.0,
        "max_retries": 2,
        "retry_budget": None,
        "circuit_breaker": None,
    }
    options.update(knobs)
    return AOPayClient(
        server.company_code,
        server.registration_id,
        base_url=server.url,
        **options,  # type: ignore[arg-type]
    )


def _no_other_tasks() -> bool:
    """No task is left but this one and the in-process sandbox's request handlers."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    return not [
        t
        for t in others
        if not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")
    ]


def _connections_to(port: int) -> int:
    """Our TCP connections to *port* that are still open."""
    return sum(
        1
        for c in psutil.Process(os.getpid()).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


# Each input kind, what it must end as, and the attempts it must report.
MIXED_KINDS = [
    # (item, expected outcome, expected attempts)
    ("OK-{i}", "ok", 1),
    ({"cibil_id": "MAP-{i}", "client_order_id": "order-{i}"}, "ok", 1),
    ("", "InvalidRequestError", 0),
    ({"cibil_id": "X" * 65}, "InvalidRequestError", 0),
    ("FAIL-{i}", "ServerError", 3),  # scripted 503 forever; 1 + 2 retries
    ("FLAKY-{i}", "ok", 2),  # scripted one 503, then ok
    ("SLOW-{i}", "ok", 1),  # scripted slow body
    ("RESET-{i}", "APIConnectionError", 3),  # scripted reset forever
]


def _mixed(n: int) -> tuple[list[object], list[tuple[str, int]], dict[str, list[str]]]:
    """n items cycling through MIXED_KINDS, their expectations, and the sandbox scripts."""
    items: list[object] = []
    expected: list[tuple[str, int]] = []
    scripts: dict[str, list[str]] = {}
    for i in range(n):
        template, outcome, attempts = MIXED_KINDS[i % len(MIXED_KINDS)]
        if isinstance(template, str):
            item: object = template.format(i=i) if "{i}" in template else template
        else:
            item = {k: v.format(i=i) for k, v in template.items()}
        items.append(item)
        expected.append((outcome, attempts))
        if isinstance(item, str):
            if item.startswith("FAIL-"):
                scripts[item] = ["503", "*"]
            elif item.startswith("FLAKY-"):
                scripts[item] = ["503"]
            elif item.startswith("SLOW-"):
                scripts[item] = ["slow"]
            elif item.startswith("RESET-"):
                scripts[item] = ["reset", "*"]
    return items, expected, scripts


def _outcome(result: BulkResult) -> str:
    return "ok" if result.ok else type(result.error).__name__


@pytest.mark.parametrize("ordered", [False, True])
async def test_mixed_list_gives_exactly_one_outcome_per_item(ordered: bool) -> None:
    """Valid, invalid, failing, flaky and slow items: one right result each, in one run."""
    items, expected, scripts = _mixed(48)
    async with (
        SandboxServer(scripts=scripts, slow_seconds=0.2, retry_after=0) as server,
        _client(server, max_concurrency=8) as client,
    ):
        results = [r async for r in client.bulk_credit_history(items, ordered=ordered)]
        stats = server.stats
    assert len(results) == len(items)
    assert sorted(r.item_index for r in results) == list(range(len(items)))
    if ordered:
        assert [r.item_index for r in results] == list(range(len(items)))
    for r in results:
        outcome, attempts = expected[r.item_index]
        assert (_outcome(r), r.attempts) == (outcome, attempts), (r.item_index, r)
        if r.attempts:
            # The server saw exactly the attempts the result reports, all with one order id.
            order_id = r.request.client_order_id
            assert order_id is not None
            # Resets included: the client's session never lets aiohttp resend behind its back.
            assert stats.attempts_by_order_id[order_id] == r.attempts
    assert _no_other_tasks()


async def test_results_carry_the_request_and_the_history() -> None:
    """A successful result holds the request as sent and the decoded history."""
    async with SandboxServer() as server, _client(server) as client:
        items = [CreditHistoryRequest(cibil_id="CUST-1", client_order_id="o-1"), "CUST-2"]
        results = [r async for r in client.bulk_credit_history(items, ordered=True)]
    first, second = results
    assert first.request.client_order_id == "o-1"
    assert first.history is not None
    assert first.history.user_info.cibil_score is not None
    assert second.request.cibil_id == "CUST-2"
    assert second.request.client_order_id  # generated, and the one every attempt used


async def test_a_failing_item_never_cancels_its_siblings() -> None:
    """Items that fail fast do not cut short slow items running beside them."""
    scripts = {f"FAIL-{i}": ["401", "*"] for i in range(4)}
    scripts.update({f"SLOW-{i}": ["slow"] for i in range(4)})
    items = [f"SLOW-{i}" for i in range(4)] + [f"FAIL-{i}" for i in range(4)]
    async with (
        SandboxServer(scripts=scripts, slow_seconds=0.3) as server,
        _client(server, max_concurrency=8) as client,
    ):
        results = [r async for r in client.bulk_credit_history(items)]
    outcomes = Counter(_outcome(r) for r in results)
    assert outcomes == {"ok": 4, "AuthenticationError": 4}


@pytest.mark.parametrize("ordered", [False, True])
async def test_cancelling_mid_run_leaves_no_task_or_request_and_the_client_usable(
    ordered: bool,
) -> None:
    """Cancel the consuming task half-way: workers gone, requests end, the client still works."""
    async with SandboxServer(latency=0.05) as server:
        async with _client(server, max_concurrency=8) as client:
            received: list[BulkResult] = []

            async def consume() -> None:
                items = (f"CUST-{i}" for i in range(10_000))
                async for r in client.bulk_credit_history(items, ordered=ordered):
                    received.append(r)

            task = asyncio.create_task(consume())
            for _ in range(200):
                if len(received) >= 20:
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert _no_other_tasks()
            assert 20 <= len(received) < 10_000
            # Every request the client had sent has ended on the server side too.
            for _ in range(100):
                if server.stats.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            assert server.stats.in_flight == 0
            # No more connections than the pool may keep idle.
            assert _connections_to(server.port) <= 8
            # The client is still usable, for single calls and for bulk.
            history = await client.get_credit_history(cibil_id="AFTER-1")
            assert history.status == "SUCCESS"
            again = [r async for r in client.bulk_credit_history(["AFTER-2", "AFTER-3"])]
            assert all(r.ok for r in again)
        # Closed: nothing of ours is left connected to the server.
        for _ in range(100):
            if _connections_to(server.port) == 0:
                break
            await asyncio.sleep(0.01)
        assert _connections_to(server.port) == 0


async def test_breaking_out_with_aclosing_stops_at_once() -> None:
    """aclosing + break: in-flight calls are cancelled and no task is left."""
    async with SandboxServer(latency=0.05) as server, _client(server) as client:
        results = client.bulk_credit_history(f"CUST-{i}" for i in range(1000))
        async with contextlib.aclosing(results):
            async for r in results:
                assert r.ok
                break
        assert _no_other_tasks()
        assert server.stats.requests < 100


async def test_the_client_limits_and_deadline_apply_per_item() -> None:
    """The client's rate limit governs bulk too, and each item gets its own deadline."""
    async with (
        SandboxServer(scripts={"HANG": ["slow", "*"]}, slow_seconds=5.0) as server,
        _client(server, rate_limit=50.0, burst=1, deadline=0.5, max_retries=0) as client,
    ):
        items = ["HANG", *(f"CUST-{i}" for i in range(20))]
        results = [r async for r in client.bulk_credit_history(items, concurrency=4)]
        arrivals = server.stats.max_in_window(0.2)
    by_id = {r.request.cibil_id: r for r in results}
    assert isinstance(by_id["HANG"].error, APITimeoutError)  # the deadline's timeout
    assert by_id["HANG"].elapsed < 5.0  # cut by its own deadline, not the 5 s slow body
    assert all(by_id[f"CUST-{i}"].ok for i in range(20))
    # 50/s with burst 1: at most 1 + 50 * 0.2 = 11 attempts start in any 0.2 s window. These
    # are arrival times at the server, after the network and the server's own scheduling: one
    # attempt delayed in transit can land next to the following one, so allow one more.
    assert arrivals <= 12


async def test_async_generator_input_against_the_sandbox() -> None:
    """An async generator of mappings is consumed lazily to one result per item."""

    async def source() -> AsyncIterator[object]:
        for i in range(30):
            yield {"cibil_id": f"CUST-{i}"} if i % 10 else {"cibil_id": ""}

    async with SandboxServer() as server, _client(server) as client:
        results = [r async for r in client.bulk_credit_history(source(), concurrency=5)]
    assert Counter(_outcome(r) for r in results) == {"ok": 27, "InvalidRequestError": 3}
    invalid = [r for r in results if not r.ok]
    assert all(isinstance(r.error, InvalidRequestError) and r.attempts == 0 for r in invalid)


async def test_server_errors_become_values_with_status_and_attempts() -> None:
    """A row that keeps failing ends as a ServerError value carrying its attempts."""
    async with (
        SandboxServer(scripts={"DOWN": ["503", "*"]}, retry_after=0) as server,
        _client(server, max_retries=3) as client,
    ):
        [result] = [r async for r in client.bulk_credit_history(["DOWN"])]
    assert isinstance(result.error, ServerError)
    assert result.error.status_code == 503
    assert result.attempts == 4


class _BrokenLimiter:
    """A custom limiter with a bug: every third acquire raises a RuntimeError."""

    def __init__(self) -> None:
        self.calls = 0

    async def acquire(self) -> None:
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("limiter bug")


async def test_a_broken_limiter_fails_its_items_and_the_run_goes_on() -> None:
    """A RuntimeError from a custom limiter is that item's failed result; nothing stops the run."""
    limiter = _BrokenLimiter()
    items = [f"CUST-{i}" for i in range(30)]
    async with SandboxServer() as server, _client(server, limiter=limiter, max_retries=0) as client:
        results = [r async for r in client.bulk_credit_history(items, concurrency=4)]
        assert (await client.get_credit_history(cibil_id="CUST-X")).user_info is not None
    assert sorted(r.item_index for r in results) == list(range(30))
    failed = [r for r in results if not r.ok]
    assert len(failed) == 10
    for result in failed:
        assert "unexpected RuntimeError" in str(result.error)
        assert isinstance(result.error.__cause__, RuntimeError)
    assert _no_other_tasks()


async def test_aiolimiter_plugs_in_as_the_limiter() -> None:
    """``limiter=aiolimiter.AsyncLimiter(1, 1/50)`` paces every attempt (the documented extra)."""
    aiolimiter = pytest.importorskip("aiolimiter")
    limiter = aiolimiter.AsyncLimiter(1, 1 / 50)
    items = [f"CUST-{i}" for i in range(20)]
    async with (
        SandboxServer(track_ids=True) as server,
        _client(server, limiter=limiter, max_concurrency=8) as client,
    ):
        results = [r async for r in client.bulk_credit_history(items)]
    assert all(r.ok for r in results)
    arrivals = sorted(server.stats.arrivals)
    assert len(arrivals) == 20
    # A lower bound only (a loaded machine can only stretch it): 19 gaps of 1/50 s.
    assert arrivals[-1] - arrivals[0] >= 19 / 50 * 0.9
