"""RedisLimiter against a real redis-server: exact windows across clients and processes, the
script's arithmetic, one round trip, SCRIPT FLUSH, a Redis killed and restarted, two keys,
cancellation, a wrong client clock, and a settings mismatch.

The promise is checked exactly on the slots the script hands out (Redis clock, integer µs):
any window of W µs holds at most ``burst + W // interval`` of them, and with the queue kept
full the long-run rate is the rate asked. On this host's clock each caller starts no earlier
than its slot. No assertion here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from _data import COMPANY, REGISTRATION
from _local_server import LocalServer
from _redis_server import RedisServer, free_port, running_redis
from test_redis_gcra import max_in_window

from aopay_async import AOPayClient, InvalidRequestError, RateLimiterError, RedisLimiter
from aopay_async._gcra import gcra_reserve, interval_us, redis_key
from aopay_async._limiter import TokenBucket

WORKER = Path(__file__).with_name("_redis_worker.py")
#: A caller may see its slot up to this early on this host's clock (clock read granularity).
EARLY_US = 1000


def realtime_us() -> int:
    """This host's wall clock in µs, read directly (unaffected by a patched time.time)."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME) // 1000


class Recording(RedisLimiter):
    """A RedisLimiter that remembers every slot it reserved, and which task reserved it."""

    slots: list[int]
    by_task: dict[Any, int]

    async def _reserve(self) -> tuple[int, int]:
        wait, now = await super()._reserve()
        if not hasattr(self, "slots"):
            self.slots, self.by_task = [], {}
        self.slots.append(now + wait)
        self.by_task[asyncio.current_task()] = now + wait
        return wait, now


@pytest.fixture
def key() -> str:
    """A key no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def inspect(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A plain redis.asyncio client on the session server, to look at the state."""
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def check_grid(slots: list[int], rate: float, burst: int, *, saturated: bool = True) -> None:
    """The slots keep the window bound exactly; saturated, their long-run rate is *rate*
    (within 1%)."""
    slots = sorted(slots)
    step = interval_us(rate)
    for width in (0, step - 1, 100_000, 500_000, 1_000_000):
        assert max_in_window(slots, width) <= burst + width // step, width
    if saturated:
        # Measured past the first quarter, once every caller is queueing (processes start
        # at different moments); from then on the slots are one unbroken grid.
        tail = slots[len(slots) // 4 :]
        achieved = (len(tail) - 1) / ((tail[-1] - tail[0]) / 1e6)
        assert achieved == pytest.approx(rate, rel=0.01)


async def run_fleet(
    limiters: list[Recording], tasks: int, seconds: float
) -> tuple[list[int], list[tuple[int, int]]]:
    """Each limiter drives *tasks* acquire loops for *seconds*: all slots, (slot, start) pairs."""
    pairs: list[tuple[int, int]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def drive(limiter: Recording) -> None:
        me = asyncio.current_task()
        while loop.time() < end:
            await limiter.acquire()
            pairs.append((limiter.by_task[me], realtime_us()))

    await asyncio.gather(*(drive(lim) for lim in limiters for _ in range(tasks)))
    slots = [s for lim in limiters for s in getattr(lim, "slots", [])]
    return slots, pairs


def check_never_early(pairs: list[tuple[int, int]]) -> None:
    """Every caller started at or after its slot (this host's clock, 1 ms granularity)."""
    assert pairs
    assert all(start >= slot - EARLY_US for slot, start in pairs)


async def test_several_clients_share_one_exact_rate(redis_server: RedisServer, key: str) -> None:
    """Four clients (own connections), four tasks each, one key: the fleet keeps the exact
    window bound, runs at the rate within 1%, and nobody starts before its slot."""
    rate, burst = 100.0, 5
    limiters = [
        Recording.from_url(redis_server.url, key=key, rate=rate, burst=burst) for _ in range(4)
    ]
    try:
        slots, pairs = await run_fleet(limiters, tasks=4, seconds=1.5)
    finally:
        for limiter in limiters:
            await limiter.aclose()
    assert len(slots) > 100
    check_grid(slots, rate, burst)
    check_never_early(pairs)


def test_several_processes_share_one_exact_rate(redis_server: RedisServer, key: str) -> None:
    """Three processes on one key, one of them with time.time a day ahead and
    time.monotonic 12345 s ahead: the slots still form one exact grid at the rate."""
    rate, burst = 100.0, 5
    commands = [
        [sys.executable, str(WORKER), redis_server.url, key, str(rate), str(burst), "4", "1.5"]
        for _ in range(3)
    ]
    commands[1].append("--skew")
    procs = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for cmd in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            ready = threading.Timer(120, proc.kill)  # a worker that never gets ready
            ready.start()
            try:
                assert proc.stdout.readline().strip() == "ready"
            finally:
                ready.cancel()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        records = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            records.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    slots = [s for record in records for s in record["slots"]]
    assert all(record["slots"] for record in records)
    check_grid(slots, rate, burst)
    for record in records:
        assert len(record["slots"]) == len(record["pairs"])
        check_never_early([(slot, start) for slot, start in record["pairs"]])


@pytest.mark.parametrize("burst", [1, 3])
@pytest.mark.parametrize("offset", [None, -5_000_000, 0, 20_000, 60_000, 1_000_000])
async def test_script_matches_the_pure_mirror(
    redis_server: RedisServer, inspect: Any, key: str, offset: int | None, burst: int
) -> None:
    """From a stored tat at *offset* µs from Redis's now, the script's wait, new tat and
    expiry are exactly what gcra_reserve says."""
    rate = 50.0
    step = interval_us(rate)
    name = redis_key(key)
    tat: int | None = None
    if offset is not None:
        seconds, micros = await inspect.time()
        tat = seconds * 1_000_000 + micros + offset
        await inspect.hset(name, mapping={"tat": tat, "interval": step, "burst": burst})
    async with RedisLimiter.from_url(redis_server.url, key=key, rate=rate, burst=burst) as lim:
        wait, now = await lim._reserve()
    new_tat = int(await inspect.hget(name, "tat"))
    assert gcra_reserve(now, tat, step, burst) == (now + wait, new_tat)
    ttl = await inspect.pttl(name)
    assert 0 < ttl <= -(-(new_tat - now) // 1000) + 1000
    assert await inspect.keys(f"*{key}*") == [name]


async def test_one_round_trip_per_attempt(
    redis_server: RedisServer, inspect: Any, key: str
) -> None:
    """N acquires cost N EVALSHA and no other command from the client (no EVAL, no
    SCRIPT LOAD, no PING); the script's own TIME runs once per attempt."""
    limiter = RedisLimiter.from_url(redis_server.url, key=key, rate=10_000, burst=100)
    try:
        await limiter.acquire()  # connect and cache the script
        await inspect.config_resetstat()
        for _ in range(20):
            await limiter.acquire()
        stats = await inspect.info("commandstats")
    finally:
        await limiter.aclose()
    assert stats["cmdstat_evalsha"]["calls"] == 20
    assert stats["cmdstat_time"]["calls"] == 20
    from_scripts = {"evalsha", "time", "hmget", "hset", "pexpire"}
    others = {name.removeprefix("cmdstat_") for name in stats} - from_scripts
    assert others <= {"config|resetstat", "info", "config"}


async def test_script_flush_mid_run(redis_server: RedisServer, inspect: Any, key: str) -> None:
    """SCRIPT FLUSH while a fleet runs: callers reload with EVAL (at most once each) and
    the grid stays exact, with no error."""
    rate, burst = 100.0, 5
    limiters = [
        Recording.from_url(redis_server.url, key=key, rate=rate, burst=burst) for _ in range(2)
    ]

    async def flush() -> None:
        await asyncio.sleep(0.5)
        await inspect.config_resetstat()
        await inspect.script_flush()

    try:
        flusher = asyncio.create_task(flush())
        slots, pairs = await run_fleet(limiters, tasks=4, seconds=1.2)
        await flusher
        stats = await inspect.info("commandstats")
    finally:
        for limiter in limiters:
            await limiter.aclose()
    assert 1 <= stats["cmdstat_eval"]["calls"] <= 8
    check_grid(slots, rate, burst)
    check_never_early(pairs)


async def test_redis_killed_and_restarted_fails_cleanly_then_recovers(
    local_server: LocalServer, key: str
) -> None:
    """With Redis killed, a client call fails with RateLimiterError having sent nothing;
    after Redis restarts on the same port, the same client and limiter work again."""
    with running_redis() as server:
        limiter = RedisLimiter.from_url(server.url, key=key, rate=50, burst=5, timeout=2.0)
        client = AOPayClient(
            COMPANY, REGISTRATION, base_url=local_server.url, limiter=limiter,
            max_retries=2, deadline=30.0, backoff_base=0.01,
        )  # fmt: skip
        try:
            async with client:
                await client.get_credit_history(cibil_id="525234")
                server.stop()
                with pytest.raises(RateLimiterError) as caught:
                    await client.get_credit_history(cibil_id="525234")
                assert caught.value.attempts == 0
                assert len(local_server.seen) == 1
                server.start()
                await client.get_credit_history(cibil_id="525234")
                assert len(local_server.seen) == 2
        finally:
            await limiter.aclose()


async def test_redis_killed_falls_back_then_recovers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """With a fallback, a Redis outage is served by the local limiter with one WARNING, and
    once Redis is back (and the recheck interval passed) the shared key is used again."""
    monkeypatch.setattr("aopay_async._redis.RECHECK_SECONDS", 0.2)
    caplog.set_level(logging.INFO, logger="aopay_async.redis")
    fallback = TokenBucket(1000, 50)
    with running_redis() as server:
        probe = redis.asyncio.Redis.from_url(server.url)
        limiter = RedisLimiter.from_url(server.url, key=key, rate=1000, burst=50, fallback=fallback)
        try:
            await limiter.acquire()
            server.stop()
            for _ in range(10):
                await asyncio.wait_for(limiter.acquire(), 10)
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1
            assert "TokenBucket(rate=1000, burst=50)" in warnings[0].getMessage()
            server.start()
            assert await probe.exists(redis_key(key)) == 0  # a fresh server: no state
            await asyncio.sleep(0.25)
            await limiter.acquire()
            assert await probe.exists(redis_key(key)) == 1
            assert any("is back" in r.getMessage() for r in caplog.records)
        finally:
            await limiter.aclose()
            await probe.aclose()


async def test_two_keys_are_independent(redis_server: RedisServer, key: str) -> None:
    """Draining one key's bucket makes that key wait and leaves another key untouched."""
    async with (
        RedisLimiter.from_url(redis_server.url, key=key + "-a", rate=2, burst=1) as a,
        RedisLimiter.from_url(redis_server.url, key=key + "-b", rate=2, burst=1) as b,
    ):
        assert (await a._reserve())[0] == 0
        assert (await a._reserve())[0] > 0
        assert (await b._reserve())[0] == 0


async def test_cancelled_slots_are_wasted_never_reused(redis_server: RedisServer, key: str) -> None:
    """Callers cancelled while they sleep do not give their slots back: the next caller's
    slot comes after all of them, exactly on the grid."""
    rate, burst = 10.0, 1
    step = interval_us(rate)
    async with Recording.from_url(redis_server.url, key=key, rate=rate, burst=burst) as limiter:
        tasks = [asyncio.create_task(limiter.acquire()) for _ in range(5)]
        for _ in range(500):
            if len(getattr(limiter, "slots", [])) == 5:
                break
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        wait, now = await limiter._reserve()
    first = min(limiter.slots[:5])
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) >= 3
    assert now + wait == first + 5 * step


async def test_cancellation_storm_never_exceeds_the_rate(
    redis_server: RedisServer, key: str
) -> None:
    """Thirty callers cancelled at random moments (waiting for the reply or sleeping) and
    replaced: every reservation stays on the exact grid, completed callers start no earlier
    than their slots, and the limiter works afterwards."""
    rate, burst = 200.0, 5
    rng = random.Random(9)
    pairs: list[tuple[int, int]] = []
    limiter = Recording.from_url(redis_server.url, key=key, rate=rate, burst=burst)

    async def caller() -> None:
        me = asyncio.current_task()
        while True:
            await limiter.acquire()
            pairs.append((limiter.by_task[me], realtime_us()))

    try:
        tasks = [asyncio.create_task(caller()) for _ in range(30)]
        for _ in range(60):
            await asyncio.sleep(rng.uniform(0.0, 0.03))
            victim = rng.randrange(len(tasks))
            tasks[victim].cancel()
            tasks[victim] = asyncio.create_task(caller())
        for task in tasks:
            task.cancel()
        done, stuck = await asyncio.wait(tasks, timeout=30)
        assert not stuck, [t.get_stack() for t in stuck][:3]
        assert all(t.cancelled() for t in done)
        await asyncio.wait_for(limiter.acquire(), 30)
    finally:
        await limiter.aclose()
    check_grid(limiter.slots, rate, burst, saturated=False)
    check_never_early(pairs)


async def test_wrong_client_clock_changes_nothing(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """With time.time a day ahead in this process, the slots still come from Redis's clock."""
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86_400.0)
    async with RedisLimiter.from_url(redis_server.url, key=key, rate=10, burst=1) as limiter:
        wait1, now1 = await limiter._reserve()
        wait2, now2 = await limiter._reserve()
    assert wait1 == 0
    assert now2 + wait2 == now1 + interval_us(10)
    assert abs(now1 - realtime_us()) < 60_000_000


@pytest.mark.parametrize(("rate", "burst"), [(20.0, 2), (10.0, 3), (10.5, 2)])
async def test_settings_mismatch_is_a_clear_error(
    redis_server: RedisServer, key: str, rate: float, burst: int
) -> None:
    """A second limiter on a live key with another rate or burst gets InvalidRequestError
    naming both settings; the same settings are fine; nothing is reserved by the refusal."""
    async with (
        RedisLimiter.from_url(redis_server.url, key=key, rate=10, burst=2) as first,
        RedisLimiter.from_url(redis_server.url, key=key, rate=rate, burst=burst) as other,
        RedisLimiter.from_url(redis_server.url, key=key, rate=10, burst=2) as same,
    ):
        await first.acquire()
        with pytest.raises(InvalidRequestError) as caught:
            await other.acquire()
        assert "rate=10/s burst=2" in str(caught.value)
        assert f"rate={rate:g}/s burst={burst}" in str(caught.value)
        assert redis_server.url not in str(caught.value)
        wait, _ = await same._reserve()
        assert wait == 0  # burst 2: the refusal took no token


async def test_from_url_connection_is_closed_by_aclose(redis_server: RedisServer) -> None:
    """aclose() closes the connection from_url opened (no unclosed-connection warning), and a
    caller's own client is left open."""
    own = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        limiter = RedisLimiter(own, key="closing", rate=100)
        await limiter.acquire()
        await limiter.aclose()
        assert await own.ping()
    finally:
        await own.aclose()


async def test_check_finds_a_mismatch_and_reserves_nothing(
    redis_server: RedisServer, inspect: Any, key: str
) -> None:
    """check() passes on a fresh key and on the same settings, raises InvalidRequestError
    on others, and reserves nothing (a fresh key stays absent)."""
    async with (
        RedisLimiter.from_url(redis_server.url, key=key, rate=10, burst=2) as first,
        RedisLimiter.from_url(redis_server.url, key=key, rate=10, burst=3) as other,
    ):
        await first.check()
        assert await inspect.exists(redis_key(key)) == 0
        await first.acquire()
        await first.check()
        with pytest.raises(InvalidRequestError, match="rate=10/s burst=2"):
            await other.check()
    async with RedisLimiter.from_url(f"redis://127.0.0.1:{free_port()}/0", key=key, rate=1) as gone:
        with pytest.raises(RateLimiterError):
            await gone.check()
