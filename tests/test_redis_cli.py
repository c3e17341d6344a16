"""The command line's fleet flags: ``--redis-url`` / ``AOPAY_REDIS_URL``, ``--limit-key`` and
``--shard K/N`` — their parsing, the limiter they build, and whole runs: three shards run at
once share one Redis limit against a rate-limited sandbox, each writing its own OUTPUT."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from _data import COMPANY, CREDENTIALS_ENV
from _redis_server import RedisServer, free_port
from hypothesis import given
from hypothesis import strategies as st

from aopay_async import InvalidRequestError, RedisLimiter
from aopay_async._gcra import redis_key
from aopay_async.cli import UsageError, build_parser, main
from aopay_async.cli._argtypes import limit_key, shard
from aopay_async.cli._fleet import make_limiter
from aopay_async.cli._input import Row, select_shard, shard_size
from aopay_async.testing import SandboxServer

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS = CREDENTIALS_ENV


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", (0, 1)), ("3/4", (3, 4)), (" 1 / 2 ", (1, 2)), ("0/1000", (0, 1000))],
)
def test_shard_reads_k_of_n(text: str, expected: tuple[int, int]) -> None:
    """K/N parses to the pair (whitespace around the numbers is allowed)."""
    assert shard(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("4/4", "K must be below N (the shards of N are numbered 0 to 3)"),
        ("1/0", "N (the number of shards) must be at least 1"),
        ("-1/4", "is not K/N"),
        ("a/b", "is not K/N"),
        ("1", "is not K/N"),
        ("1/2/3", "is not K/N"),
        ("1.5/2", "is not K/N"),
        ("", "is not K/N"),
    ],
)
def test_bad_shard_says_what_is_wrong(text: str, says: str) -> None:
    """A malformed or out-of-range K/N is refused with a message that says why."""
    with pytest.raises(argparse.ArgumentTypeError, match=r".*") as caught:
        shard(text)
    assert says in str(caught.value)


@pytest.mark.parametrize("text", ["", "a b", "{x}", "k" * 201, "ключ", "tab\there"])
def test_bad_limit_key_is_refused(text: str) -> None:
    """--limit-key takes 1-200 printable ASCII characters without spaces or braces."""
    with pytest.raises(argparse.ArgumentTypeError):
        limit_key(text)


@given(total=st.integers(0, 300), n=st.integers(1, 12))
def test_shards_split_the_rows_exactly(total: int, n: int) -> None:
    """The N shards take every row exactly once, row number modulo N, sized by shard_size."""
    taken: list[int] = []
    for k in range(n):
        rows = [r.line for r in select_shard(iter(Row(line) for line in range(total)), (k, n))]
        assert all(line % n == k for line in rows)
        assert len(rows) == shard_size(total, (k, n))
        taken += rows
    assert sorted(taken) == list(range(total))
    assert list(select_shard(iter([Row(1), Row(2)]), None)) == [Row(1), Row(2)]


def parse(*argv: str) -> argparse.Namespace:
    """The namespace ``aopay-async bulk in.csv -o out.jsonl ARGV`` parses to."""
    return build_parser("aopay-async", with_sandbox=False).parse_args(
        ["bulk", "in.csv", "-o", "out.jsonl", *argv]
    )


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's credentials in the environment, and no AOPAY_REDIS_URL."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AOPAY_REDIS_URL", raising=False)


@pytest.mark.usefixtures("credentials")
async def test_make_limiter_from_the_flags_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No URL: no limiter. --redis-url (or AOPAY_REDIS_URL) gives a RedisLimiter with --rate,
    --burst and --limit-key, or the hashed default key of the company code."""
    assert make_limiter(parse()) is None
    limiter = make_limiter(parse("--redis-url", "redis://127.0.0.1:1/0", "--rate", "7"))
    assert limiter is not None
    assert (limiter.key, limiter.rate, limiter.burst) == (
        RedisLimiter.default_key(COMPANY),
        7.0,
        1,
    )
    await limiter.aclose()
    monkeypatch.setenv("AOPAY_REDIS_URL", "redis://127.0.0.1:1/0")
    limiter = make_limiter(parse("--limit-key", "team:nightly", "--burst", "4"))
    assert limiter is not None
    assert (limiter.key, limiter.rate, limiter.burst) == ("team:nightly", 10.0, 4)
    await limiter.aclose()


@pytest.mark.usefixtures("credentials")
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--rate", "none"], "give a --rate (not 'none')"),
        (["--redis-url", "http://:pw-secret@host/"], "--redis-url is not a Redis URL"),
    ],
)
def test_make_limiter_usage_errors(argv: list[str], says: str) -> None:
    """A shared limit without a rate, or a URL that is not Redis's, is a usage error that
    does not echo the URL (it may hold a password)."""
    args = parse(*(argv if "--redis-url" in argv else ["--redis-url", "redis://x", *argv]))
    with pytest.raises(UsageError) as caught:
        make_limiter(args)
    assert says in str(caught.value)
    assert "pw-secret" not in str(caught.value)


def test_default_key_needs_the_company_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --limit-key and without AOPAY_COMPANY_CODE the error names the variable."""
    monkeypatch.delenv("AOPAY_COMPANY_CODE", raising=False)
    with pytest.raises(InvalidRequestError, match="AOPAY_COMPANY_CODE"):
        make_limiter(parse("--redis-url", "redis://127.0.0.1:1/0"))


@pytest.mark.usefixtures("credentials")
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--shard", "2/2"], "K must be below N"),
        (["--limit-key", "a b"], "without spaces or braces"),
        (["--redis-url", "redis://x", "--rate", "none"], "give a --rate"),
        (["--redis-url", "redis://x", "--rate", "20000"], "at most 10000 per second"),
        (["--redis-fallback", "2"], "--redis-fallback is for a shared limit: give --redis-url"),
        (["--redis-url", "redis://x", "--redis-fallback", "0"], "must be at least 1"),
    ],
)
def test_bulk_fleet_usage_errors_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    """Bad fleet flags end the run with exit status 2 and a message, before any row."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("cibil_id\nC1\n")
    code = main(["bulk", "in.csv", "-o", "out.jsonl", *argv])
    assert code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""


def _env(server: SandboxServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOPAY_")}
    env.update(CREDENTIALS, AOPAY_BASE_URL=server.url)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``python -m aopay_async ARGS``; its exit status and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aopay_async", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The output file's records."""
    return [json.loads(line) for line in path.read_bytes().splitlines()]


async def test_three_shards_share_one_limit_and_split_the_input(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Three shards run at once with one Redis key against a sandbox limiting at the same
    rate: each OUTPUT holds exactly its rows, together every row once, and the sandbox saw
    the shared rate (not three times it) with no 429."""
    rate, burst, rows = 20, 5, 45
    src = tmp_path / "in.csv"
    src.write_text("cibil_id\n" + "".join(f"FLEET{i:04d}\n" for i in range(rows)))
    key = f"cli-{os.getpid()}"
    # The sandbox's bucket gets 5 tokens of headroom for the jitter of three processes
    # starting their attempts on one loaded host.
    async with SandboxServer(rate_limit=rate, burst=burst + 5) as server:
        env = _env(server, AOPAY_REDIS_URL=redis_server.url)
        flags = ["--rate", str(rate), "--burst", str(burst), "--limit-key", key, "--quiet"]
        runs = [
            run_cli(
                "bulk",
                str(src),
                "-o",
                str(tmp_path / f"out-{k}.jsonl"),
                "--shard",
                f"{k}/3",
                *flags,
                env=env,
                cwd=tmp_path,
            )
            for k in range(3)
        ]
        results = await asyncio.gather(*runs)
        stats = server.stats
        assert [code for code, _ in results] == [0, 0, 0], results
        assert stats.rate_limited == 0
        assert stats.max_in_window(1.0) <= burst + rate + 5
    seen: list[int] = []
    for k in range(3):
        lines = [r["line"] for r in read_lines(tmp_path / f"out-{k}.jsonl")]
        assert all((line - 2) % 3 == k for line in lines)
        seen += lines
    assert sorted(seen) == list(range(2, rows + 2))
    # A resumed shard finds its rows done and sends nothing more.
    async with SandboxServer() as server:
        code, err = await run_cli(
            "bulk", str(src), "-o", str(tmp_path / "out-1.jsonl"), "--shard", "1/3", "--resume",
            *flags, env=_env(server, AOPAY_REDIS_URL=redis_server.url), cwd=tmp_path,
        )  # fmt: skip
        assert code == 0, err
        assert server.stats.requests == 0


async def test_get_fails_with_nothing_sent_when_redis_is_down(tmp_path: Path) -> None:
    """``get`` with the Redis of --redis-url unreachable fails (exit 1) with
    RateLimiterError, and the API never sees a request (bulk waits instead: see
    test_cli_fleet.py)."""
    async with SandboxServer() as server:
        code, err = await run_cli(
            "get", "--cibil-id", "DOWN0001", "--max-retries", "0",
            "--redis-url", f"redis://127.0.0.1:{free_port()}/0",
            env=_env(server), cwd=tmp_path,
        )  # fmt: skip
        assert server.stats.requests == 0
    assert code == 1, err
    assert "RateLimiterError" in err


async def test_get_uses_the_default_key(tmp_path: Path, redis_server: RedisServer) -> None:
    """``get --redis-url`` takes its token from Redis under the hashed default key."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        async with SandboxServer() as server:
            code, err = await run_cli(
                "get", "--cibil-id", "GETKEY01", "--redis-url", redis_server.url,
                "--rate", "0.01", env=_env(server), cwd=tmp_path,
            )  # fmt: skip
        assert code == 0, err
        # Rate 0.01/s: the state outlives the run by 100 s, so it is still there to see.
        assert await client.exists(redis_key(RedisLimiter.default_key(COMPANY))) == 1
    finally:
        await client.aclose()


async def test_bulk_stops_with_exit_2_when_the_key_has_other_settings(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A key live with another rate stops bulk before any row, with exit 2 and a message."""
    key = f"cli-mismatch-{os.getpid()}"
    async with RedisLimiter.from_url(redis_server.url, key=key, rate=0.01) as holder:
        await holder.acquire()  # keeps the key live for 100 s
    src = tmp_path / "in.csv"
    src.write_text("cibil_id\nMISM0001\n")
    async with SandboxServer() as server:
        code, err = await run_cli(
            "bulk", str(src), "-o", str(tmp_path / "out.jsonl"), "--rate", "5",
            "--redis-url", redis_server.url, "--limit-key", key,
            env=_env(server), cwd=tmp_path,
        )  # fmt: skip
        assert server.stats.requests == 0
    assert code == 2
    assert "is in use with rate=0.01/s burst=1" in err


def test_the_kubernetes_example_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Indexed Job manifest's command line is one this CLI accepts, shard K of 4."""
    manifest = (REPO / "examples" / "kubernetes" / "bulk-indexed-job.yaml").read_text()
    block = manifest.split("- >-", 1)[1].split("env:", 1)[0]
    words = block.replace("$JOB_COMPLETION_INDEX", "3").split()
    assert words[:3] == ["exec", "aopay-async", "bulk"]
    args = build_parser("aopay-async", with_sandbox=False).parse_args(words[2:])
    assert args.shard == (3, 4)
    assert args.output == "/data/out/part-3.jsonl"
    assert args.resume
    assert "completions: 4" in manifest
