"""A shared RedisLimiter's fallback, as events: every client using the limiter hears it.

The limiter is shared by clients and cannot reach their observers, so each client's observer
registers with it (``Observer.follow``) and leaves on ``aclose``; the limiter holds them
weakly. Checked against the real redis-server (killed and restarted on the same port), and
the bookkeeping on a scripted Redis stand-in and as a property of the observer.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
from typing import Any

import pytest
import redis.exceptions
from _data import COMPANY, REGISTRATION
from _local_server import LocalServer
from _redis_server import running_redis
from hypothesis import given
from hypothesis import strategies as st
from test_observe_otel import Telemetry, telemetry  # noqa: F401 - telemetry is a fixture
from test_redis_gcra import CountingLimiter, StubRedis

from aopay_async import AOPayClient, RateLimiterError, RedisLimiter
from aopay_async._limiter import TokenBucket
from aopay_async._observe import Observer
from aopay_async.events import Event, EventKind


def fallback_events(events: list[Event]) -> list[tuple[str | None, str | None]]:
    """The ``(state, reason)`` of each fallback_limiter event in *events*."""
    return [(e.state, e.reason) for e in events if e.kind is EventKind.FALLBACK_LIMITER]


def fallback_value(recorded: Telemetry) -> int:
    """The sum of ``aopay.limiter.fallback`` (clients on a fallback now)."""
    return sum(p.value for p in recorded.points("aopay.limiter.fallback"))


def client_on(url: str, limiter: Any, **options: Any) -> AOPayClient:
    """A client on the local server behind *limiter*, no retries needed."""
    return AOPayClient(COMPANY, REGISTRATION, base_url=url, limiter=limiter, **options)


async def test_every_client_of_a_limiter_hears_redis_die_and_return(
    local_server: LocalServer,
    telemetry: Telemetry,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis killed: both clients sharing the limiter get one ``fallback`` event (hooks, a
    WARNING line, ``aopay.limiter.fallback`` = 1); Redis restarted: one ``primary`` event
    each (an INFO line, back to 0). Calls succeed throughout on the fallback."""
    monkeypatch.setattr("aopay_async._redis.RECHECK_SECONDS", 0.2)
    caplog.set_level(logging.INFO, logger="aopay_async.client")
    seen_a: list[Event] = []
    seen_b: list[Event] = []
    with running_redis() as server:
        limiter = RedisLimiter.from_url(
            server.url, key="fallback-events", rate=1000, burst=50, fallback=TokenBucket(1000, 50)
        )
        a = client_on(
            local_server.url,
            limiter,
            event_hooks=[seen_a.append],
            meter_provider=telemetry.meter_provider,
        )
        b = client_on(local_server.url, limiter, event_hooks=[seen_b.append])
        try:
            async with a, b:
                await a.get_credit_history(cibil_id="FB00001")
                assert fallback_events(seen_a) == fallback_events(seen_b) == []
                server.stop()
                for client in (a, b, a, b):
                    await asyncio.wait_for(client.get_credit_history(cibil_id="FB00001"), 30)
                down_a, down_b = fallback_events(seen_a), fallback_events(seen_b)
                assert len(down_a) == 1
                assert down_a == down_b
                assert down_a[0][0] == "fallback"
                assert down_a[0][1] in ("ConnectionError", "TimeoutError")
                assert fallback_value(telemetry) == 1
                server.start()
                await asyncio.sleep(0.3)
                await b.get_credit_history(cibil_id="FB00001")
                assert fallback_events(seen_a)[1:] == [("primary", "recovered")]
                assert fallback_events(seen_b)[1:] == [("primary", "recovered")]
                assert fallback_value(telemetry) == 0
        finally:
            await limiter.aclose()
    lines = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "aopay_async.client" and r.getMessage().startswith("fallback_limiter")
    ]
    assert [level for level, _ in lines] == [logging.WARNING] * 2 + [logging.INFO] * 2
    assert all(server.url not in line for _, line in lines)


async def test_a_closed_client_hears_nothing_more() -> None:
    """After ``aclose`` a client has left the limiter: an outage reaches only the open one."""
    stub = StubRedis(redis.exceptions.ConnectionError("refused"))
    limiter = RedisLimiter(stub, key="k", rate=10, fallback=CountingLimiter())
    closed_events: list[Event] = []
    open_events: list[Event] = []
    closed = client_on("http://127.0.0.1:9", limiter, event_hooks=[closed_events.append])
    still_open = client_on("http://127.0.0.1:9", limiter, event_hooks=[open_events.append])
    await closed.aclose()
    await limiter.acquire()
    assert fallback_events(closed_events) == []
    assert fallback_events(open_events) == [("fallback", "ConnectionError")]
    await still_open.aclose()


def test_a_client_never_closed_is_not_kept_by_the_limiter() -> None:
    """The limiter holds its listeners weakly: a dropped client's observer goes away."""
    limiter = RedisLimiter(StubRedis([0, 0, 0]), key="k", rate=10, fallback=CountingLimiter())
    client = client_on("http://127.0.0.1:9", limiter)
    assert len(limiter._listeners) == 1
    del client
    gc.collect()
    assert len(limiter._listeners) == 0


class Recorder:
    """A listener that remembers what it was told."""

    def __init__(self) -> None:
        self.heard: list[tuple[bool, str]] = []

    def fallback_limiter(self, active: bool, reason: str) -> None:
        self.heard.append((active, reason))


async def test_without_a_fallback_there_is_no_fallback_event() -> None:
    """No fallback: a Redis failure is a RateLimiterError for the call, not a takeover."""
    limiter = RedisLimiter(StubRedis(redis.exceptions.ConnectionError("refused")), key="k", rate=10)
    recorder = Recorder()
    limiter._add_fallback_listener(recorder)
    with pytest.raises(RateLimiterError):
        await limiter.acquire()
    assert recorder.heard == []


async def test_the_limiter_tells_each_change_once_per_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One takeover per outage (however many calls fail meanwhile), one give-back when a
    reservation succeeds again; a discarded listener hears nothing more."""
    monkeypatch.setattr("aopay_async._redis.RECHECK_SECONDS", 0.0)
    stub = StubRedis(redis.exceptions.ConnectionError("refused"))
    limiter = RedisLimiter(stub, key="k", rate=10, fallback=CountingLimiter())
    recorder, leaver = Recorder(), Recorder()
    limiter._add_fallback_listener(recorder)
    limiter._add_fallback_listener(leaver)
    for _ in range(3):
        await limiter.acquire()
    limiter._discard_fallback_listener(leaver)
    stub.outcomes = [[0, 0, 1]]
    await limiter.acquire()
    await limiter.acquire()
    assert stub.calls == ["evalsha"] * 5
    assert recorder.heard == [(True, "ConnectionError"), (False, "recovered")]
    assert leaver.heard == [(True, "ConnectionError")]


class Raising:
    """A listener that always raises."""

    def fallback_limiter(self, active: bool, reason: str) -> None:
        raise RuntimeError("listener broke")


async def test_a_raising_listener_never_fails_the_acquire(caplog: pytest.LogCaptureFixture) -> None:
    """A listener's exception is logged on ``aopay_async.redis``; the fallback still serves."""
    fallback = CountingLimiter()
    limiter = RedisLimiter(
        StubRedis(redis.exceptions.ConnectionError("refused")), key="k", rate=10, fallback=fallback
    )
    listener = Raising()
    limiter._add_fallback_listener(listener)
    caplog.set_level(logging.WARNING, logger="aopay_async.redis")
    await limiter.acquire()
    assert fallback.count == 1
    assert any("listener raised" in r.getMessage() for r in caplog.records)


@given(st.lists(st.booleans(), max_size=30))
def test_an_observer_reports_only_changes_starting_from_primary(reports: list[bool]) -> None:
    """Whatever the limiter says, the events alternate ``fallback``, ``primary``, ... from
    the first takeover: a give-back never heard of its takeover is dropped, a repeat too."""
    seen: list[Event] = []
    observer = Observer([seen.append])
    for active in reports:
        observer.fallback_limiter(active, "why")
    expected: list[str] = []
    state = False
    for active in reports:
        if active is not state:
            state = active
            expected.append("fallback" if active else "primary")
    assert [e.state for e in seen] == expected
    assert all(a != b for a, b in itertools.pairwise(expected))
    assert not expected or expected[0] == "fallback"
