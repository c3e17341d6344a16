"""The client with its call policy end to end: a buggy limiter, and a probe that never went out.

Against the tiny local server of ``test_client.py``. What is checked is what a caller lives
with afterwards: which exception came out, what was sent, and that the next call still works
(no concurrency slot, probe place or budget token left behind).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from _data import COMPANY, REGISTRATION
from _local_server import LocalServer, ok, status

from aopay_async import (
    AOPayClient,
    AOPayError,
    APITimeoutError,
    CircuitBreaker,
    ServerError,
)
from aopay_async._breaker import CLOSED, OPEN

#: One failure opens the circuit for 0.2 s; one probe.
TRIP_AT_ONCE = CircuitBreaker(consecutive_failures=1, open_seconds=0.2, max_open_seconds=0.2)


def client_for(server: LocalServer, **options: Any) -> AOPayClient:
    """A client for *server*: one slot (a leaked one would stall the next call), quick backoff."""
    options.setdefault("max_concurrency", 1)
    options.setdefault("backoff_base", 0.01)
    options.setdefault("deadline", 10.0)
    return AOPayClient(COMPANY, REGISTRATION, base_url=server.url, **options)


class BuggyLimiter:
    """A caller's limiter with a plain bug: the acquires numbered in *failing* raise."""

    def __init__(self, *failing: int, blocks: float = 0.0) -> None:
        self.failing = set(failing)
        self.blocks = blocks
        self.acquired = 0
        self.error = RuntimeError("limiter bug")

    async def acquire(self) -> None:
        """Count the acquire; fail (or block the loop for ``blocks`` s) when it is one of them."""
        self.acquired += 1
        if self.acquired in self.failing:
            if self.blocks:
                # Blocks the loop on purpose: the deadline's timer cannot fire meanwhile.
                time.sleep(self.blocks)  # noqa: ASYNC251 - the point of this limiter
                return
            raise self.error


@pytest.mark.parametrize(
    ("failing", "sent_before"),
    [(1, 0), (2, 1)],
    ids=["first-attempt", "a-retry"],
)
async def test_a_limiter_bug_escapes_as_itself_and_leaves_nothing_held(
    local_server: LocalServer, failing: int, sent_before: int
) -> None:
    """A direct call raises the limiter's own exception (not an AOPayError), on the first
    attempt or a retry; the slot is back and the next call is served."""
    local_server.reply(status(503), ok()) if sent_before else local_server.reply(ok())
    limiter = BuggyLimiter(failing)
    async with client_for(local_server, limiter=limiter) as client:
        with pytest.raises(RuntimeError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
        assert info.value is limiter.error
        assert not isinstance(info.value, AOPayError)
        assert len(local_server.seen) == sent_before
        assert client._slots is not None
        assert client._slots.free == 1
        history = await client.get_credit_history(cibil_id="SYN0002")
    assert history.user_info is not None
    assert local_server.seen[-1].body["cibil_id"] == "SYN0002"


async def test_a_limiter_bug_takes_no_budget_and_no_probe_place(local_server: LocalServer) -> None:
    """While the circuit is due for a probe, a limiter bug leaves the probe's place and the
    retry budget as they were: the next call is the probe, and it closes the circuit."""
    local_server.reply(status(503), ok())
    limiter = BuggyLimiter(2)
    options: dict[str, Any] = {"circuit_breaker": TRIP_AT_ONCE, "max_retries": 0}
    async with client_for(local_server, limiter=limiter, **options) as client:
        circuit, budget = client._circuit, client._budget
        assert circuit is not None
        assert budget is not None
        with pytest.raises(ServerError):
            await client.get_credit_history(cibil_id="SYN0001")
        assert circuit.state == OPEN
        await asyncio.sleep(0.3)  # past the open period: the next admitted attempt probes
        loop = asyncio.get_running_loop()
        balance = budget.balance(loop.time())
        with pytest.raises(RuntimeError):
            await client.get_credit_history(cibil_id="SYN0002")
        assert budget.balance(loop.time()) == pytest.approx(balance, abs=1e-6)
        await client.get_credit_history(cibil_id="SYN0003")
        assert circuit.state == CLOSED
    assert [seen.body["cibil_id"] for seen in local_server.seen] == ["SYN0001", "SYN0003"]


async def test_a_probe_whose_deadline_passed_before_sending_frees_its_place(
    local_server: LocalServer,
) -> None:
    """The deadline passing between the circuit's admission and the send (here: a limiter
    that blocks the loop past it) fails that call and gives the probe's place back; before,
    the place stayed taken and every later call was refused with CircuitOpenError."""
    local_server.reply(status(503), ok())
    limiter = BuggyLimiter(2, blocks=2.3)
    options: dict[str, Any] = {"circuit_breaker": TRIP_AT_ONCE, "max_retries": 0}
    async with client_for(local_server, limiter=limiter, deadline=2.0, **options) as client:
        with pytest.raises(ServerError):
            await client.get_credit_history(cibil_id="SYN0001")
        await asyncio.sleep(0.3)
        with pytest.raises(APITimeoutError, match="deadline of 2s passed") as info:
            await client.get_credit_history(cibil_id="SYN0002")
        assert info.value.attempts == 0
        await client.get_credit_history(cibil_id="SYN0003")  # the probe
        assert client._circuit is not None
        assert client._circuit.state == CLOSED
    assert len(local_server.seen) == 2
