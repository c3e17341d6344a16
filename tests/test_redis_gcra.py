"""RedisLimiter without a server: the GCRA arithmetic as a table and as properties, the settings
checks, the default key, the script-reload rule, and the failure paths on a stub client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import sys
from typing import Any

import pytest
import redis.exceptions
from hypothesis import given
from hypothesis import strategies as st

from aopay_async import InvalidRequestError, RateLimiterError, RedisLimiter
from aopay_async._gcra import (
    GCRA_SCRIPT,
    gcra_reserve,
    interval_us,
    redis_key,
)
from aopay_async._limiter import TokenBucket
from aopay_async._retry import is_retryable, next_wait


def max_in_window(times: list[int], width: int) -> int:
    """The most of *times* (sorted) in any closed window ``[t, t + width]``."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# (now, stored tat, interval, burst) -> (start, new tat)
GCRA_TABLE = [
    pytest.param(1000, None, 100, 1, (1000, 1100), id="no state: start now"),
    pytest.param(1000, 900, 100, 1, (1000, 1100), id="stale tat counts as none"),
    pytest.param(1000, 1000, 100, 1, (1000, 1100), id="tat exactly now"),
    pytest.param(1000, 1100, 100, 1, (1100, 1200), id="burst 1: wait one interval"),
    pytest.param(1000, 1250, 100, 1, (1250, 1350), id="burst 1: queue behind the tat"),
    pytest.param(1000, 1100, 100, 3, (1000, 1200), id="burst 3: tolerance covers it"),
    pytest.param(1000, 1200, 100, 3, (1000, 1300), id="burst 3: last free slot"),
    pytest.param(1000, 1300, 100, 3, (1100, 1400), id="burst 3: bucket empty"),
    pytest.param(1000, 1301, 100, 3, (1101, 1401), id="burst 3: one µs over"),
    pytest.param(0, None, 1, 1, (0, 1), id="smallest interval"),
    pytest.param(
        1_764_000_000_000_000, 1_764_000_000_500_000, 20_000, 5,
        (1_764_000_000_420_000, 1_764_000_000_520_000), id="real clock magnitude",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("now", "tat", "interval", "burst", "expected"), GCRA_TABLE)
def test_gcra_table(
    now: int, tat: int | None, interval: int, burst: int, expected: tuple[int, int]
) -> None:
    """The pure mirror of the script gives the listed start and new tat."""
    assert gcra_reserve(now, tat, interval, burst) == expected


@given(
    interval=st.integers(1, 10_000),
    burst=st.integers(1, 20),
    gaps=st.lists(st.integers(0, 30_000), min_size=1, max_size=200),
)
def test_gcra_never_exceeds_the_window_bound(interval: int, burst: int, gaps: list[int]) -> None:
    """Whatever the arrival times, any window of W µs holds at most burst + W // interval
    starts, and every start is at or after its arrival."""
    now, tat = 0, None
    starts = []
    for gap in gaps:
        now += gap
        start, tat = gcra_reserve(now, tat, interval, burst)
        assert start >= now
        starts.append(start)
    starts.sort()
    for width in (0, interval - 1, interval, 3 * interval + 1, 50 * interval):
        assert max_in_window(starts, width) <= burst + width // interval


@given(interval=st.integers(1, 10_000), burst=st.integers(1, 20), n=st.integers(1, 100))
def test_gcra_saturated_grid_is_exact(interval: int, burst: int, n: int) -> None:
    """Callers all arriving at once get the first burst at once, then one per interval."""
    tat = None
    for k in range(n):
        start, tat = gcra_reserve(0, tat, interval, burst)
        assert start == max(0, k - burst + 1) * interval


@given(rate=st.floats(0.001, 10_000.0))
def test_interval_never_faster_and_within_one_percent(rate: float) -> None:
    """The µs grid step is never shorter than 1/rate and at most 1% longer."""
    step = interval_us(rate)
    assert step >= 1_000_000 / rate
    assert 1_000_000 / step >= rate * 0.99


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(50, 20_000), (10_000, 100), (3, 333_334), (7, 142_858), (0.5, 2_000_000), (1e6, 1)],
)
def test_interval_table(rate: float, expected: int) -> None:
    """The grid step in µs: exact when 1e6/rate is whole, else rounded up."""
    assert interval_us(rate) == expected


def test_script_reads_redis_time_and_declares_its_key() -> None:
    """The script takes time from Redis TIME only and touches no key outside KEYS[]."""
    assert "redis.call('TIME')" in GCRA_SCRIPT
    assert "PEXPIRE" in GCRA_SCRIPT
    calls = [line for line in GCRA_SCRIPT.splitlines() if "redis.call(" in line]
    assert all("KEYS[1]" in line or "'TIME'" in line for line in calls)
    assert redis_key("aopay:shared") == "{aopay:shared}:gcra"


class StubRedis:
    """A redis.asyncio stand-in: each evalsha/eval pops the next scripted outcome."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[str] = []
        self.closed = False

    async def _next(self, name: str) -> Any:
        self.calls.append(name)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def evalsha(self, *args: Any) -> Any:
        return await self._next("evalsha")

    async def eval(self, *args: Any) -> Any:
        return await self._next("eval")

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("rate", "burst", "key"),
    [
        pytest.param(0, 1, "k", id="rate zero"),
        pytest.param(-1.0, 1, "k", id="rate negative"),
        pytest.param(float("nan"), 1, "k", id="rate nan"),
        pytest.param(float("inf"), 1, "k", id="rate inf"),
        pytest.param(10_001, 1, "k", id="rate over the cap"),
        pytest.param(True, 1, "k", id="rate bool"),
        pytest.param("5", 1, "k", id="rate str"),
        pytest.param(5, 0, "k", id="burst zero"),
        pytest.param(5, 1.5, "k", id="burst float"),
        pytest.param(5, True, "k", id="burst bool"),
        pytest.param(5, 100_001, "k", id="burst too big"),
        pytest.param(5, 1, "", id="key empty"),
        pytest.param(5, 1, "a b", id="key with space"),
        pytest.param(5, 1, "{tag}", id="key with braces"),
        pytest.param(5, 1, "k" * 201, id="key too long"),
        pytest.param(5, 1, "ключ", id="key not ascii"),
        pytest.param(5, 1, None, id="key none"),
    ],
)
def test_bad_settings_are_a_clear_error(rate: Any, burst: Any, key: Any) -> None:
    """Bad settings raise InvalidRequestError (a ValueError) naming the setting, before I/O."""
    with pytest.raises(InvalidRequestError) as caught:
        RedisLimiter(StubRedis([0, 0, 0]), key=key, rate=rate, burst=burst)  # type: ignore[arg-type]
    assert any(word in str(caught.value) for word in ("rate", "burst", "key"))
    with pytest.raises(InvalidRequestError):
        RedisLimiter.from_url("redis://127.0.0.1:1/0", key=key, rate=rate, burst=burst)


def test_default_key_is_a_hash_of_the_company_code() -> None:
    """The default key is stable, differs per code, is a valid key, and hides the code."""
    key = RedisLimiter.default_key("CMP1045")
    assert key == RedisLimiter.default_key("CMP1045")
    assert key != RedisLimiter.default_key("CMP1046")
    assert "CMP1045" not in key
    assert key.startswith("aopay:")
    assert len(key) == len("aopay:") + 20
    RedisLimiter(StubRedis([0, 0, 0]), key=key, rate=1)


async def test_noscript_reloads_with_eval_once() -> None:
    """An explicit NOSCRIPT reply is followed by one EVAL (which also caches the script)."""
    stub = StubRedis(redis.exceptions.NoScriptError("No matching script"), [0, 0, 5])
    limiter = RedisLimiter(stub, key="k", rate=10)
    await limiter.acquire()
    assert stub.calls == ["evalsha", "eval"]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(redis.exceptions.TimeoutError("Timeout reading"), id="timeout"),
        pytest.param(redis.exceptions.ConnectionError("refused"), id="connection"),
        pytest.param(redis.exceptions.ResponseError("OOM command not allowed"), id="error reply"),
        pytest.param(ConnectionResetError(104, "reset"), id="os error"),
    ],
)
async def test_failure_raises_rate_limiter_error_without_reloading(error: Exception) -> None:
    """A timeout or any other failure is a RateLimiterError; the script is never resent."""
    stub = StubRedis(error)
    limiter = RedisLimiter(stub, key="k", rate=10)
    with pytest.raises(RateLimiterError) as caught:
        await limiter.acquire()
    assert stub.calls == ["evalsha"]
    assert "nothing was sent" in str(caught.value)
    assert is_retryable(caught.value)
    assert next_wait(caught.value, 0, retries_left=1, time_left=10.0, uniform=min) == 0.0


@pytest.mark.parametrize(
    "reply",
    [[0, 0], None, b"OK", [0, "x", 1], [2.5, 0, 0]],
    ids=["short", "none", "bytes", "str inside", "float"],
)
async def test_unexpected_reply_is_a_rate_limiter_error(reply: Any) -> None:
    """A reply not shaped like the script's is a failure, not a crash or a free pass."""
    limiter = RedisLimiter(StubRedis(reply), key="k", rate=10)
    with pytest.raises(RateLimiterError):
        await limiter.acquire()


async def test_mismatch_reply_is_invalid_request_even_with_a_fallback() -> None:
    """A key in use with other settings is a configuration error, never a fallback case."""
    fallback = TokenBucket(5)
    limiter = RedisLimiter(StubRedis([1, 50_000, 3]), key="k", rate=10, fallback=fallback)
    with pytest.raises(InvalidRequestError, match=r"rate=20/s burst=3.*rate=10/s burst=1"):
        await limiter.acquire()


class CountingLimiter:
    """A local limiter that counts its acquires."""

    def __init__(self) -> None:
        self.count = 0

    async def acquire(self) -> None:
        self.count += 1

    def __repr__(self) -> str:
        return "CountingLimiter()"


async def test_fallback_used_logged_once_and_redis_rechecked(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In an outage the fallback serves every call, one WARNING is logged for the outage,
    Redis is tried again only after RECHECK_SECONDS, and recovery logs INFO once."""
    # 0.5 s: wide enough that the 20 quick acquires below never straddle a recheck, even on a
    # loaded machine (0.05 s did, once in a full run).
    monkeypatch.setattr("aopay_async._redis.RECHECK_SECONDS", 0.5)
    fallback = CountingLimiter()
    stub = StubRedis(redis.exceptions.ConnectionError("refused"))
    limiter = RedisLimiter(stub, key="k", rate=10, fallback=fallback)
    caplog.set_level(logging.INFO, logger="aopay_async.redis")
    for _ in range(20):
        await limiter.acquire()
    assert fallback.count == 20
    assert stub.calls == ["evalsha"]  # the other 19 went straight to the fallback
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "CountingLimiter()" in warnings[0].getMessage()
    await asyncio.sleep(0.6)
    await limiter.acquire()  # still down: tried once more, no second warning
    assert stub.calls == ["evalsha", "evalsha"]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    stub.outcomes = [[0, 0, 1]]
    await asyncio.sleep(0.6)
    await limiter.acquire()
    assert fallback.count == 21
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert re.fullmatch(r"the shared rate limiter's Redis is back after \d+\.\ds", infos[0])
    assert float(infos[0].rsplit(" ", 1)[1][:-1]) >= 1.1


async def test_aclose_closes_only_what_it_opened() -> None:
    """A caller's client stays open after aclose(); aclose twice is harmless."""
    stub = StubRedis([0, 0, 0])
    limiter = RedisLimiter(stub, key="k", rate=10)
    await limiter.aclose()
    await limiter.aclose()
    assert not stub.closed


def test_repr_shows_settings_not_the_url() -> None:
    """The repr names key, rate and burst; never the URL (which may carry a password)."""
    limiter = RedisLimiter.from_url("redis://:s3cret-pw@127.0.0.1:1/0", key="k", rate=2.5)
    assert repr(limiter) == "RedisLimiter(key='k', rate=2.5, burst=1)"
    assert limiter.key == "k"
    assert limiter.rate == 2.5
    assert limiter.burst == 1


def test_import_does_not_load_redis() -> None:
    """``import aopay_async`` (RedisLimiter included) leaves redis out of sys.modules."""
    code = (
        "import sys, aopay_async\n"
        "from aopay_async import RedisLimiter\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_redis_names_the_extra() -> None:
    """Without redis-py, the package imports and RedisLimiter(...) names the extra."""
    code = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "import aopay_async\n"
        "for make in (lambda: aopay_async.RedisLimiter(object(), key='k', rate=1),\n"
        "             lambda: aopay_async.RedisLimiter.from_url('redis://x', key='k', rate=1)):\n"
        "    try:\n"
        "        make()\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.splitlines()
        == ["RedisLimiter needs redis-py: pip install 'aopay-async[redis]'"] * 2
    )


class SwallowingRedis(StubRedis):
    """A client whose round trip swallows a cancellation, as Python 3.11's wait_for can."""

    async def evalsha(self, *args: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        return [0, 0, 1]


async def test_a_swallowed_cancellation_is_delivered() -> None:
    """A cancel lost inside the Redis call still cancels acquire() (the slot is wasted)."""
    limiter = RedisLimiter(SwallowingRedis([0, 0, 1]), key="k", rate=10)
    task = asyncio.create_task(limiter.acquire())
    await asyncio.wait([task])
    assert task.cancelled()
