"""The command line's fleet limiter when its Redis is down: bulk rows wait (the "paused:
rate limiter unavailable" line) and none fails, rows whose wait outlasts --deadline are sent
again, and --redis-fallback N goes on alone at --rate/N. Whole runs against the real
redis-server (started late, or killed and restarted on its port) and a local sandbox."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio
from _cli_helpers import cli_env, read_output, start_cli, write_csv
from _redis_server import RedisServer, free_port, require_redis_server
from hypothesis import given
from hypothesis import strategies as st

from aopay_async._errors import (
    APIConnectionError,
    APITimeoutError,
    InvalidRequestError,
    RateLimiterError,
)
from aopay_async._gcra import redis_key
from aopay_async._models import BulkResult, CreditHistoryRequest
from aopay_async.cli import build_parser
from aopay_async.cli._fleet import fallback_settings, make_limiter
from aopay_async.cli._hold import HeldLimiter
from aopay_async.cli._job import waited_out
from aopay_async.cli._pauses import Outage, Pauses
from aopay_async.testing import SandboxServer

#: Generous: a loaded 2-core machine runs several of these processes at once.
RUN_LIMIT = 90.0


async def _wait_for(text: str, err: list[str], limit: float = 30.0) -> None:
    """Until *text* appears in the stderr collected so far (or fail after *limit* seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while text not in "".join(err):
        assert loop.time() < end, f"{text!r} never appeared in: {''.join(err)}"
        await asyncio.sleep(0.05)


async def _collect(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    assert stream is not None
    while line := await stream.readline():
        into.append(line.decode())


async def _rest(proc: asyncio.subprocess.Process) -> str:
    """The process's stdout to its end, once it has exited (stderr is read elsewhere)."""
    assert proc.stdout is not None
    out = await proc.stdout.read()
    await proc.wait()
    return out.decode()


@pytest.fixture
def redis_later() -> RedisServer:
    """A redis-server with a port of its own, not started yet (the test starts it)."""
    return RedisServer(require_redis_server(), free_port())


def _ok_once(records: list[dict[str, object]], rows: int) -> None:
    """Every input row (lines 2..rows+1) is in OUTPUT exactly once, and ok."""
    lines = Counter(r["line"] for r in records)
    assert sorted(lines) == list(range(2, rows + 2))
    assert set(lines.values()) == {1}
    assert all(r["ok"] for r in records), [r for r in records if not r["ok"]]


@pytest.mark.slow
async def test_rows_wait_for_a_redis_that_starts_late(
    tmp_path: Path, redis_later: RedisServer
) -> None:
    """Redis down at start: nothing is sent, progress says "paused: rate limiter
    unavailable", rows whose wait outlasts --deadline are sent again; once Redis starts
    every row ends ok, exactly once, exit 0, and the summary counts the outage."""
    rows = 12
    src = write_csv(tmp_path / "in.csv", [f"LATE{i:04d}" for i in range(rows)])
    out = tmp_path / "out.jsonl"
    err: list[str] = []
    try:
        async with SandboxServer() as server:
            proc = await start_cli(
                "bulk", str(src), "-o", str(out), "--rate", "20", "--deadline", "1.5",
                "--progress-interval", "0.2", "--redis-url", redis_later.url,
                env=cli_env(server), cwd=tmp_path,
            )  # fmt: skip
            reader = asyncio.ensure_future(_collect(proc.stderr, err))
            await _wait_for("paused: rate limiter unavailable (Redis: ConnectionError)", err)
            # Past the 1.5 s deadline of the rows already waiting: they are sent again.
            await asyncio.sleep(2.5)
            assert server.stats.requests == 0
            assert not out.exists() or out.read_bytes() == b""
            await asyncio.to_thread(redis_later.start)
            stdout = await asyncio.wait_for(_rest(proc), RUN_LIMIT)
            await reader
            assert proc.returncode == 0, "".join(err)
            assert server.stats.requests == rows
    finally:
        redis_later.close()
    text = "".join(err)
    assert "rate limiter back after" in text
    summary = stdout
    assert "redis     1 outage of the rate limiter (rows waited, none failed;" in summary
    assert " 0 sent again)" not in summary  # the 1.5 s deadline passed while rows waited
    _ok_once(read_output(out), rows)


@pytest.mark.slow
async def test_redis_killed_mid_run_loses_no_row(tmp_path: Path, redis_later: RedisServer) -> None:
    """Redis killed half-way and restarted on its port ~4.5 s later (3 times --deadline):
    the run pauses, sending nothing but the rows whose slots Redis granted before it died,
    then every row ends ok exactly once with exit 0."""
    rows = 40
    src = write_csv(tmp_path / "in.csv", [f"KILL{i:04d}" for i in range(rows)])
    out = tmp_path / "out.jsonl"
    err: list[str] = []
    redis_later.start()
    try:
        async with SandboxServer() as server:
            proc = await start_cli(
                "bulk", str(src), "-o", str(out), "--rate", "10", "--deadline", "1.5",
                "--concurrency", "4", "--progress-interval", "0.2",
                "--redis-url", redis_later.url, env=cli_env(server), cwd=tmp_path,
            )  # fmt: skip
            reader = asyncio.ensure_future(_collect(proc.stderr, err))
            loop = asyncio.get_running_loop()
            end = loop.time() + 30
            while server.stats.requests < 5:
                assert loop.time() < end, "".join(err)
                await asyncio.sleep(0.05)
            await asyncio.to_thread(redis_later.stop)
            await _wait_for("paused: rate limiter unavailable", err)
            # Slots Redis granted before it died are kept (4 rows at 10/s: 0.4 s ahead at
            # most, 2 s allowed for a loaded machine); after them nothing goes out.
            await asyncio.sleep(2.0)
            sent = server.stats.requests
            await asyncio.sleep(2.5)
            assert server.stats.requests == sent
            await asyncio.to_thread(redis_later.start)
            summary = await asyncio.wait_for(_rest(proc), RUN_LIMIT)
            await reader
            assert proc.returncode == 0, "".join(err)
            assert server.stats.requests == rows
    finally:
        redis_later.close()
    assert "rate limiter back after" in "".join(err)
    # One outage: a token granted before Redis died is no sign that it is back.
    assert "redis     1 outage of the rate limiter (rows waited, none failed;" in summary
    assert " 0 sent again)" not in summary  # the 4 rows waiting outlasted their deadline
    _ok_once(read_output(out), rows)


@pytest.mark.slow
async def test_ctrl_c_while_rows_wait_for_redis(tmp_path: Path, redis_later: RedisServer) -> None:
    """Ctrl-C while every row waits for an unreachable Redis (some already sent again
    after their deadline): exit 130 at once, nothing written, the resume command printed;
    that command, once Redis runs, does every row exactly once."""
    rows = 8
    src = write_csv(tmp_path / "in.csv", [f"STOP{i:04d}" for i in range(rows)])
    out = tmp_path / "out.jsonl"
    err: list[str] = []
    flags = ["--rate", "20", "--deadline", "1", "--redis-url", redis_later.url]
    try:
        async with SandboxServer() as server:
            proc = await start_cli(
                "bulk", str(src), "-o", str(out), "--progress-interval", "0.2", *flags,
                env=cli_env(server), cwd=tmp_path,
            )  # fmt: skip
            reader = asyncio.ensure_future(_collect(proc.stderr, err))
            await _wait_for("paused: rate limiter unavailable", err)
            await asyncio.sleep(1.5)  # past the rows' deadline: some wait to be sent again
            proc.send_signal(signal.SIGINT)
            summary = await asyncio.wait_for(_rest(proc), 30)
            await reader
            assert proc.returncode == 130, "".join(err)
            assert server.stats.requests == 0
        assert out.read_bytes() == b""
        assert summary.startswith("bulk interrupted: 0 rows")
        # Rows at the gate are counted as it stops them; a row just back from its deadline
        # and not yet fed again, in the summary: together, every row.
        at_gate = re.search(r"(\d+) rows were not sent; --resume will do them", "".join(err))
        waiting = re.search(r"not sent  (\d+) \(interrupted while waiting", summary)
        assert sum(int(m[1]) for m in (at_gate, waiting) if m) == rows, ("".join(err), summary)
        assert "To resume: " in "".join(err)
        await asyncio.to_thread(redis_later.start)
        async with SandboxServer() as server:
            proc = await start_cli(
                "bulk", str(src), "-o", str(out), "--resume", "--quiet", *flags,
                env=cli_env(server), cwd=tmp_path,
            )  # fmt: skip
            _, stderr = await asyncio.wait_for(proc.communicate(), RUN_LIMIT)
            assert proc.returncode == 0, stderr.decode()
            assert server.stats.requests == rows
    finally:
        redis_later.close()
    _ok_once(read_output(out), rows)


async def test_a_key_holding_something_else_stops_bulk_with_exit_2(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A --limit-key whose Redis hash is not a limit's state is a usage error (exit 2)
    before any row, not an outage to wait out forever."""
    key = f"cli-garbage-{os.getpid()}"
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await client.hset(redis_key(key), mapping={"interval": "abc", "burst": "x"})
        src = write_csv(tmp_path / "in.csv", ["GARB0001"])
        async with SandboxServer() as server:
            proc = await start_cli(
                "bulk", str(src), "-o", str(tmp_path / "out.jsonl"), "--limit-key", key,
                "--redis-url", redis_server.url, env=cli_env(server), cwd=tmp_path,
            )  # fmt: skip
            _, stderr = await asyncio.wait_for(proc.communicate(), RUN_LIMIT)
            assert server.stats.requests == 0
    finally:
        await client.delete(redis_key(key))
        await client.aclose()
    assert proc.returncode == 2, stderr.decode()
    assert "--limit-key: the shared rate limiter's key holds something else" in stderr.decode()


async def test_redis_fallback_goes_on_alone(tmp_path: Path) -> None:
    """--redis-fallback 2 with Redis never reachable: the run says it goes on alone at
    --rate/2, and every row ends ok."""
    rows = 6
    src = write_csv(tmp_path / "in.csv", [f"FALL{i:04d}" for i in range(rows)])
    out = tmp_path / "out.jsonl"
    async with SandboxServer() as server:
        proc = await start_cli(
            "bulk", str(src), "-o", str(out), "--rate", "40", "--redis-fallback", "2",
            "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
            env=cli_env(server), cwd=tmp_path,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(proc.communicate(), RUN_LIMIT)
        assert proc.returncode == 0, stderr.decode()
        assert server.stats.requests == rows
    said = stderr.decode()
    assert "the rate limiter's Redis does not answer yet" in said
    # The client's fallback_limiter event, through the gate to the CLI's hook.
    assert (
        "rate limiter unavailable (Redis: ConnectionError): going on alone at 20/s "
        "(--redis-fallback 2) until it is back"
    ) in said
    _ok_once(read_output(out), rows)


# -- the pure parts and HeldLimiter, without processes ---------------------------------------


@pytest.mark.parametrize(
    ("steps", "now", "status"),
    [
        ([], 10.0, None),
        ([("open", 4.0, 1.0)], 2.0, "paused: API unavailable, next probe in 3s"),
        ([("open", 4.0, 1.0)], 9.0, "paused: API unavailable, next probe in 0s"),
        ([("open", 4.0, 1.0), ("half_open", None, 5.0)], 5.2,
         "paused: API unavailable, next probe in 1s"),
        ([("open", 4.0, 1.0), ("half_open", None, 5.0), ("closed", None, 5.5)], 6.0, None),
        (
            [("limiter", True, 1.0)],
            3.5,
            "paused: rate limiter unavailable (Redis: ConnectionError) for 2s; rows wait, "
            "none is sent",
        ),
        # Both down: the limiter's line, since rows waiting for it are not even sent.
        (
            [("open", 30.0, 1.0), ("limiter", True, 2.0)],
            4.0,
            "paused: rate limiter unavailable (Redis: ConnectionError) for 2s; rows wait, "
            "none is sent",
        ),
        ([("open", 30.0, 1.0), ("limiter", True, 2.0), ("limiter", False, 3.0)], 4.0,
         "paused: API unavailable, next probe in 27s"),
    ],
)  # fmt: skip
def test_pauses_status_table(
    steps: list[tuple[str, object, float]], now: float, status: str | None
) -> None:
    """The paused line from circuit_changed events and the limiter's changes, as a table."""
    pauses = Pauses()
    for what, value, at in steps:
        if what == "limiter":
            pauses.limiter_changed(bool(value), "ConnectionError", at)
        else:
            pauses.circuit_changed(what, value if isinstance(value, float) else None, at)
    assert pauses.status(now) == status


@given(steps=st.lists(st.tuples(st.floats(0.0, 100.0), st.booleans()), min_size=1, max_size=20))
def test_outage_counts_and_seconds_match_the_intervals(steps: list[tuple[float, bool]]) -> None:
    """Begin and end in turn at increasing times, with repeated calls (no-ops) drawn in
    between: count is the number of outages, seconds the sum of the down intervals, and
    overlaps(t) holds exactly when some interval reaches t or later."""
    outage = Outage()
    now, down_since, intervals = 0.0, None, []
    for gap, repeat in steps:
        now += gap
        if repeat:  # the same call again: changes nothing
            (outage.begin if down_since is not None else outage.end)(now)
            continue
        if down_since is None:
            outage.begin(now)
            down_since = now
        else:
            outage.end(now)
            intervals.append((down_since, now))
            down_since = None
    end = now + 1.0
    spans = intervals + ([(down_since, end)] if down_since is not None else [])
    assert outage.count == len(spans)
    assert outage.seconds(end) == pytest.approx(sum(b - a for a, b in spans))
    for probe in (0.0, now / 2, now, end):
        assert outage.overlaps(probe) == any(b >= probe for _, b in spans)


def _result(error: Exception | None, attempts: int, elapsed: float) -> BulkResult:
    request = CreditHistoryRequest(cibil_id="SYNTH001", client_order_id="ord-1")
    return BulkResult(request, error=error, attempts=attempts, elapsed=elapsed)


@pytest.mark.parametrize(
    ("error", "attempts", "elapsed", "down", "expected"),
    [
        (APITimeoutError("deadline"), 0, 2.0, (5.0, None), True),  # down now
        (RateLimiterError("redis"), 0, 2.0, (5.0, None), True),
        (APITimeoutError("deadline"), 0, 2.0, (1.0, 7.0), True),  # ended during the row
        (APITimeoutError("deadline"), 0, 2.0, (1.0, 4.5), False),  # ended before it began
        (APITimeoutError("deadline"), 1, 2.0, (5.0, None), False),  # an attempt was sent
        (APIConnectionError("reset"), 0, 2.0, (5.0, None), False),  # not the limiter's
        (None, 0, 2.0, (5.0, None), False),  # no failure at all (never ok: no history)
        (APITimeoutError("deadline"), 0, 2.0, None, False),  # never down
    ],
)
def test_waited_out_table(
    error: Exception | None,
    attempts: int,
    elapsed: float,
    down: tuple[float, float | None] | None,
    expected: bool,
) -> None:
    """A row is sent again only when nothing was sent, it failed on the limiter or its
    deadline, and the limiter was down during its life (now 8, margin 1 s)."""
    outage = Outage()
    if down is not None:
        outage.begin(down[0])
        if down[1] is not None:
            outage.end(down[1])
    assert waited_out(_result(error, attempts, elapsed), outage, 8.0) is expected


@given(rate=st.floats(0.01, 10_000.0), burst=st.integers(1, 100_000), n=st.integers(1, 1000))
def test_fallback_buckets_of_n_processes_stay_within_the_limit(
    rate: float, burst: int, n: int
) -> None:
    """N fallback buckets together never pass --rate, and their bursts add up to at most
    --burst (or N, when N is larger: each keeps one)."""
    each_rate, each_burst = fallback_settings(rate, burst, n)
    assert each_rate * n <= rate * (1 + 1e-12)
    assert each_burst >= 1
    assert each_burst * n <= max(burst, n)


class _Flaky:
    """A limiter that fails (RateLimiterError) while ``failing``; counts concurrent asks."""

    def __init__(self) -> None:
        self.failing = True
        self.asks = 0
        self.inside = 0
        self.most_inside_while_failing = 0
        self.granted = 0

    async def acquire(self) -> None:
        self.asks += 1
        self.inside += 1
        try:
            if self.failing:
                self.most_inside_while_failing = max(self.most_inside_while_failing, self.inside)
            await asyncio.sleep(0.001)
            if self.failing:
                raise RateLimiterError("redis down") from ConnectionError("refused")
            self.granted += 1
        finally:
            self.inside -= 1


async def test_held_limiter_waits_with_one_probe_then_lets_all_through() -> None:
    """While the inner limiter fails, no caller gets through and (after the first round)
    one asks at a time, once per recheck; the change is reported once each way, with the
    failure's class; when it answers, every caller gets its token."""
    inner = _Flaky()
    changes: list[tuple[bool, str]] = []
    held = HeldLimiter(inner, recheck=0.02, on_change=lambda d, r: changes.append((d, r)))
    callers = [asyncio.create_task(held.acquire()) for _ in range(8)]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in callers)
    assert held.down
    assert changes == [(True, "ConnectionError")]
    first_round = inner.asks
    inner.most_inside_while_failing = 0
    await asyncio.sleep(0.2)
    assert inner.most_inside_while_failing == 1  # one probe at a time
    assert inner.asks - first_round <= 0.2 / 0.02 + 2  # about one ask per recheck
    inner.failing = False
    await asyncio.wait_for(asyncio.gather(*callers), 10)
    assert inner.granted == 8
    assert changes == [(True, "ConnectionError"), (False, "")]
    assert not held.down


async def test_held_limiter_a_token_from_before_the_outage_is_no_recovery() -> None:
    """An ask begun before Redis failed that ends with a token after it did gives its
    caller that token, but does not end the outage (only an ask begun during it can)."""
    release = asyncio.Event()
    calls = 0

    class Inner:
        async def acquire(self) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                await release.wait()  # slow: its slot was reserved before the outage
                return
            raise RateLimiterError("down") from OSError("gone")

    changes: list[bool] = []
    held = HeldLimiter(Inner(), recheck=10.0, on_change=lambda d, _: changes.append(d))
    slow = asyncio.create_task(held.acquire())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(held.acquire())
    await asyncio.sleep(0.05)
    assert changes == [True]
    release.set()
    await asyncio.wait_for(slow, 5)
    assert held.down
    assert changes == [True]
    assert not waiting.done()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


async def test_held_limiter_lets_a_settings_mismatch_through() -> None:
    """Only RateLimiterError is waited out: a key in use with other settings
    (InvalidRequestError) reaches the caller at once."""

    class Mismatch:
        async def acquire(self) -> None:
            raise InvalidRequestError("the rate limit key is in use with rate=1/s")

    with pytest.raises(InvalidRequestError):
        await asyncio.wait_for(HeldLimiter(Mismatch()).acquire(), 5)


@pytest.mark.parametrize("fallback", [None, "2"])
async def test_make_limiter_fallback_flag_decides_what_an_outage_does(
    monkeypatch: pytest.MonkeyPatch, fallback: str | None
) -> None:
    """With --redis-fallback, a limiter whose Redis is unreachable still grants tokens
    (from the local bucket); without it, acquire raises RateLimiterError."""
    monkeypatch.setenv("AOPAY_COMPANY_CODE", "SYNTHCO")
    argv = ["bulk", "in.csv", "-o", "out.jsonl", "--rate", "50"]
    argv += ["--redis-url", f"redis://127.0.0.1:{free_port()}/0"]
    if fallback:
        argv += ["--redis-fallback", fallback]
    limiter = make_limiter(build_parser("aopay-async", with_sandbox=False).parse_args(argv))
    assert limiter is not None
    try:
        if fallback:
            await asyncio.wait_for(limiter.acquire(), 10)
        else:
            with pytest.raises(RateLimiterError):
                await asyncio.wait_for(limiter.acquire(), 10)
    finally:
        await limiter.aclose()


@pytest.mark.slow
async def test_redis_fallback_takes_over_mid_run_and_gives_back(
    tmp_path: Path, redis_later: RedisServer
) -> None:
    """--redis-fallback 2 with Redis killed mid-run and restarted: the run says it goes on
    alone, then that the shared limit is back; every row ends ok exactly once."""
    rows = 60
    src = write_csv(tmp_path / "in.csv", [f"BACK{i:04d}" for i in range(rows)])
    out = tmp_path / "out.jsonl"
    err: list[str] = []
    redis_later.start()
    try:
        async with SandboxServer() as server:
            proc = await start_cli(
                "bulk", str(src), "-o", str(out), "--rate", "20", "--redis-fallback", "2",
                "--concurrency", "4", "--quiet", "--redis-url", redis_later.url,
                env=cli_env(server), cwd=tmp_path,
            )  # fmt: skip
            reader = asyncio.ensure_future(_collect(proc.stderr, err))
            loop = asyncio.get_running_loop()
            end = loop.time() + 30
            while server.stats.requests < 5:
                assert loop.time() < end, "".join(err)
                await asyncio.sleep(0.05)
            await asyncio.to_thread(redis_later.stop)
            await _wait_for("going on alone at 10/s (--redis-fallback 2) until it is back", err)
            await asyncio.to_thread(redis_later.start)
            await asyncio.wait_for(_rest(proc), RUN_LIMIT)
            await reader
            assert proc.returncode == 0, "".join(err)
            assert server.stats.requests == rows
    finally:
        redis_later.close()
    assert "rate limiter back: the shared limit again" in "".join(err)
    _ok_once(read_output(out), rows)
