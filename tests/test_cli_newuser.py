"""The command line as a new user meets it, end to end (subprocess against the sandbox).

Ctrl-C at a low rate sends nothing more and leaves no traceback; OUTPUT is always 0600;
duplicate client_order_ids are refused; a resumed run tells its own failures from earlier
ones; ``-o -`` writes JSONL to stdout and survives ``| head``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from _cli_helpers import (
    REPO,
    RUN_TIMEOUT,
    assert_exactly_once,
    cli_env,
    make_ids,
    read_output,
    run_cli,
    start_cli,
    write_csv,
)

from aopay_async.testing import SandboxServer

NO_CRASH = ("Traceback", "Exception ignored", "Error:")


def assert_no_crash(stderr: str) -> None:
    """No traceback, no unraisable exception, no stray exception line on stderr."""
    for marker in NO_CRASH:
        assert marker not in stderr, stderr[-2000:]


def _lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def _wait_for_lines(path: Path, n: int) -> None:
    for _ in range(int(RUN_TIMEOUT / 0.01)):
        if _lines_in(path) >= n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never reached {n} lines")


async def test_ctrl_c_at_a_low_rate_sends_nothing_more_and_resume_finishes(
    tmp_path: Path,
) -> None:
    """SIGINT at 10/s: no request starts after it (rows waiting for a token stay unsent and
    unwritten), no traceback, exit 130; --resume then writes every row exactly once."""
    n = 120
    src = write_csv(tmp_path / "in.csv", make_ids(n))
    out = tmp_path / "out.jsonl"
    args = ["bulk", str(src), "-o", str(out), "--concurrency", "32", "--quiet"]
    async with SandboxServer() as server:
        env = cli_env(server)
        proc = await start_cli(*args, "--rate", "10", "--grace", "5", env=env, cwd=tmp_path)
        await _wait_for_lines(out, 5)
        sent_before = server.stats.requests
        proc.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        sent_after_interrupt = server.stats.requests - sent_before
        err = stderr.decode()
        assert proc.returncode == 130, err
        assert_no_crash(err)
        # At 10/s one request is on the wire at a time (the sandbox answers in ~1 ms): at
        # most the one the signal raced with. Before the gate: up to 32 more.
        assert sent_after_interrupt <= 2, (sent_after_interrupt, err)
        assert "To resume:" in err
        written = read_output(out)
        assert len(written) == server.stats.requests  # every row sent was written, no other
        assert all(r["ok"] for r in written)
        ran = await run_cli(*args, "--rate", "none", "--resume", env=env, cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    assert_no_crash(ran.stderr)
    assert_exactly_once(read_output(out), range(2, n + 2))


@pytest.mark.parametrize(
    ("before", "flag", "code"),
    [
        pytest.param(b"", None, 0, id="existing-empty"),
        pytest.param(b"junk\n", "--overwrite", 0, id="overwrite"),
        pytest.param(None, "--retry-failed", 0, id="retry-failed"),
        pytest.param(None, "--resume", 1, id="resume"),  # the earlier failure stands
    ],
)
async def test_output_is_always_0600(
    tmp_path: Path, before: bytes | None, flag: str | None, code: int
) -> None:
    """Whatever OUTPUT's mode was (0644 here), a run leaves it 0600."""
    ids = make_ids(4)
    src = write_csv(tmp_path / "in.csv", ids)
    out = tmp_path / "out.jsonl"
    async with SandboxServer(scripts={ids[1]: ["503", "ok"]}, retry_after=0) as server:
        env = cli_env(server)
        base = ["bulk", str(src), "-o", str(out), "--rate", "none", "--quiet"]
        if before is None:  # an earlier run's OUTPUT, one row failed
            first = await run_cli(*base, "--max-retries", "0", env=env, cwd=tmp_path)
            assert first.code == 1, first.stderr
        else:
            out.write_bytes(before)
        out.chmod(0o644)
        ran = await run_cli(*base, *([flag] if flag else []), env=env, cwd=tmp_path)
    assert ran.code == code, ran.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert_exactly_once(read_output(out), range(2, 6))


async def test_a_duplicate_client_order_id_is_a_bad_row_not_a_second_lookup(
    tmp_path: Path,
) -> None:
    """The second row reusing a client_order_id is warned about, written as bad, never sent."""
    src = tmp_path / "in.csv"
    src.write_text("cibil_id,client_order_id\nCUST1,o-1\nCUST2,o-2\nCUST3,o-1\n")
    out = tmp_path / "out.jsonl"
    async with SandboxServer() as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--rate", "none", env=cli_env(server), cwd=tmp_path
        )
        assert server.stats.attempts_by_order_id["o-1"] == 1
        assert server.stats.requests == 2
    assert ran.code == 1, ran.stderr
    records = {r["line"]: r for r in read_output(out)}
    assert records[4]["ok"] is False
    assert records[4]["attempts"] == 0
    assert records[4]["error"]["message"] == "line 4: duplicate client_order_id of line 2"
    assert "line 4: duplicate client_order_id of line 2" in ran.stderr
    assert "CUST3" not in ran.stderr


async def test_a_resumed_run_tells_its_failures_from_earlier_ones(tmp_path: Path) -> None:
    """Rows of this run all ok, one failed earlier: the summary says so, and exit is 1."""
    src = write_csv(tmp_path / "in.csv", ["GOOD1", "DOWN1", "GOOD2"])
    out = tmp_path / "out.jsonl"
    args = ["bulk", str(src), "-o", str(out), "--rate", "none", "--max-retries", "0", "--quiet"]
    async with SandboxServer(scripts={"DOWN1": ["503", "*"]}, retry_after=0) as server:
        env = cli_env(server)
        first = await run_cli(*args, env=env, cwd=tmp_path)
        assert first.code == 1, first.stderr
        write_csv(src, ["GOOD1", "DOWN1", "GOOD2", "GOOD3", "GOOD4"])
        ran = await run_cli(*args, "--resume", env=env, cwd=tmp_path)
    assert ran.code == 1, ran.stderr
    assert "failed    0 this run, 1 from earlier runs" in ran.stdout
    assert_exactly_once(read_output(out), range(2, 7))


async def test_output_dash_writes_jsonl_to_stdout_and_the_summary_to_stderr(
    tmp_path: Path,
) -> None:
    """`-o -`: one JSON line per row on stdout, nothing else there; no file named '-'."""
    src = write_csv(tmp_path / "in.csv", make_ids(5))
    async with SandboxServer() as server:
        ran = await run_cli(
            "bulk", str(src), "-o", "-", "--rate", "none", env=cli_env(server), cwd=tmp_path
        )
    assert ran.code == 0, ran.stderr
    records = [json.loads(line) for line in ran.stdout.splitlines()]
    assert_exactly_once(records, range(2, 7))
    assert "bulk done: 5 rows" in ran.stderr
    assert "output    stdout" in ran.stderr
    assert not (tmp_path / "-").exists()


async def test_piping_to_head_is_not_a_crash(tmp_path: Path) -> None:
    """`bulk ... -o - | head -n 1`: the closed pipe stops the run without a traceback."""
    src = write_csv(tmp_path / "in.csv", make_ids(3000))
    err_file = tmp_path / "err.txt"
    async with SandboxServer() as server:
        env = cli_env(server)
        command = (
            f"{sys.executable} -m aopay_async bulk {src} -o - --rate none --quiet "
            f"2>{err_file} | head -n 1"
        )
        proc = await asyncio.create_subprocess_shell(
            command, stdout=asyncio.subprocess.PIPE, env=env, cwd=REPO
        )
        stdout, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    assert json.loads(stdout.decode())["ok"] is True
    err = err_file.read_text()
    assert "BrokenPipeError" in err  # said once, as the reason the run stopped
    assert "Traceback" not in err
    assert "Exception ignored" not in err


async def test_an_empty_directory_as_output_says_so(tmp_path: Path) -> None:
    """`-o DIR`: a usage error naming the directory, not "already exists and is not empty"."""
    src = write_csv(tmp_path / "in.csv", make_ids(2))
    folder = tmp_path / "results"
    folder.mkdir()
    ran = await run_cli("bulk", str(src), "-o", str(folder), env=cli_env(), cwd=tmp_path)
    assert ran.code == 2
    assert "is a directory" in ran.stderr
    assert "not empty" not in ran.stderr
