"""The command line's fleet limiter when its Redis is down: bulk rows wait (the "paused:
rate limiter unavailable" line) and none fails, rows whose wait outlasts --deadline are sent
again, and --redis-fallback N goes on alone at --rate/N. Whole runs against the real
redis-server (started late, or killed and restarted on its port) and a local sandbox."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from _cli_helpers import cli_env, read_output, start_cli, write_csv
from _redis_server import RedisServer, free_port, require_redis_server

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
    """Redis killed half-way and restarted on its port ~3.5 s later (over twice --deadline):
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
            # most); after them nothing goes out.
            await asyncio.sleep(1.0)
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
    assert "going on alone at 20/s (--redis-fallback 2) until it does" in stderr.decode()
    _ok_once(read_output(out), rows)
