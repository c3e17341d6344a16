"""The sandbox's outage windows and its live quota, seen over raw connections."""

from __future__ import annotations

import asyncio

import pytest
from test_sandbox import body, classify, raw_get

from aopay_async.testing import SandboxServer


async def test_outage_window_answers_every_request_with_its_fault() -> None:
    """Inside the window every request gets the fault; before and after, normal answers."""
    async with SandboxServer() as server:
        before = await raw_get(server.port, body("A", "o1"))
        server.outage(0.4, fault="503")
        during = [await raw_get(server.port, body(f"B{i}", f"o{i}")) for i in range(3)]
        await asyncio.sleep(0.5)
        after = await raw_get(server.port, body("C", "o9"))
    assert classify(before, 1.0) == "ok"
    assert [classify(r, 1.0) for r in during] == ["503"] * 3
    assert classify(after, 1.0) == "ok"
    assert server.stats.outage == 3
    assert server.stats.by_outcome["503"] == 3


@pytest.mark.parametrize("fault", ["reset", "502", "500"])
async def test_outage_fault_is_chosen(fault: str) -> None:
    """An outage can be a dead host (reset) or any status fault."""
    async with SandboxServer() as server:
        server.outage(5.0, fault=fault)
        reply = await raw_get(server.port, body("A", "o1"))
    assert classify(reply, 1.0) == fault


async def test_outages_given_at_construction_count_from_the_start() -> None:
    """``outages=[(start, seconds)]`` windows are relative to when the server starts."""
    async with SandboxServer(outages=[(0.3, 0.3)]) as server:
        first = await raw_get(server.port, body("A", "o1"))
        await asyncio.sleep(0.35)
        second = await raw_get(server.port, body("A", "o2"))
        (start, end, fault) = server.outage_windows()[0]
    assert (classify(first, 1.0), classify(second, 1.0)) == ("ok", "503")
    assert end - start == pytest.approx(0.3)
    assert fault == "503"


async def test_an_outage_skips_the_quota() -> None:
    """A down API neither answers 429 nor spends quota: the bucket is full after it."""
    async with SandboxServer(rate_limit=1.0, burst=1) as server:
        server.outage(0.3)
        during = [await raw_get(server.port, body("A", f"o{i}")) for i in range(3)]
        await asyncio.sleep(0.35)
        after = await raw_get(server.port, body("A", "o9"))
    assert [r.status for r in during] == [503, 503, 503]
    assert after.status == 200
    assert server.stats.rate_limited == 0


async def test_quota_changes_while_running() -> None:
    """set_rate_limit lowers, raises or removes the server's quota on the fly."""
    async with SandboxServer() as server:
        free = [await raw_get(server.port, body("A", f"a{i}")) for i in range(5)]
        server.set_rate_limit(1.0, burst=2)
        limited = [await raw_get(server.port, body("A", f"b{i}")) for i in range(5)]
        server.set_rate_limit(None)
        again = [await raw_get(server.port, body("A", f"c{i}")) for i in range(5)]
    assert [r.status for r in free] == [200] * 5
    assert [r.status for r in limited] == [200, 200, 429, 429, 429]
    assert [r.status for r in again] == [200] * 5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.outage(1.0, fault="nope"), "unknown fault"),
        (lambda s: s.outage(-1.0), "seconds"),
        (lambda s: s.outage(1.0, after=-2), "seconds"),
        (lambda s: s.set_rate_limit(0.0), "rate_limit"),
        (lambda s: s.set_rate_limit(5.0, burst=0), "burst"),
    ],
)
def test_bad_outage_and_quota_knobs_are_refused(call: object, message: str) -> None:
    """Nonsense windows and quotas raise ValueError naming the problem."""
    server = SandboxServer()
    with pytest.raises(ValueError, match=message):
        call(server)  # type: ignore[operator]
