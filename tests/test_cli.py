"""The command line: ``python -m aopay_async`` run as a subprocess against the sandbox.

The sandbox runs in the test's own event loop on 127.0.0.1; the CLI runs in a child process
(its own loop, its own signal handling), as a user would run it. Usage errors that need no
server call :func:`aopay_async.cli.main` in-process.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from _cli_helpers import (
    CREDENTIALS,
    RUN_TIMEOUT,
    append_bytes,
    assert_exactly_once,
    assert_no_customer_data,
    cli_env,
    make_ids,
    read_output,
    run_cli,
    start_cli,
    write_csv,
)

from aopay_async.cli import main
from aopay_async.cli._ledger import load_ledger
from aopay_async.cli._summary import LatencyHistogram
from aopay_async.cli.commands.bulk import resume_command
from aopay_async.testing import SandboxServer

# -- a whole run ---------------------------------------------------------------------------


async def test_bulk_csv_writes_one_line_per_row_and_a_summary(tmp_path: Path) -> None:
    """A clean run: every row once in OUTPUT, exit 0, a summary, no customer data printed."""
    ids = make_ids(60)
    src = write_csv(tmp_path / "in.csv", ids)
    out = tmp_path / "out.jsonl"
    async with SandboxServer() as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--rate", "none", env=cli_env(server), cwd=tmp_path
        )
    assert ran.code == 0, ran.stderr
    records = read_output(out)
    assert_exactly_once(records, range(2, 62))
    first = next(r for r in records if r["line"] == 2)
    assert first["cibil_id"] == ids[0]
    assert first["ok"] is True
    assert first["attempts"] == 1
    assert first["client_order_id"]  # generated, and recorded
    assert first["result"]["status"] == "SUCCESS"
    assert "user_info" in first["result"]
    assert "ok        60" in ran.stdout
    assert "p50" in ran.stdout
    assert "p99" in ran.stdout
    assert "429s seen 0" in ran.stdout
    assert_no_customer_data(ran.stdout + ran.stderr, ids)
    assert (out.stat().st_mode & 0o777) == 0o600


async def test_failures_and_bad_rows_give_exit_1_and_are_reported(tmp_path: Path) -> None:
    """Bad rows are reported by line and written as failures; API failures are recorded too."""
    src = tmp_path / "in.csv"
    src.write_text(
        "cibil_id,client_order_id,name\n"
        "GOOD1,,x\n"
        ",,blank id\n"
        "DOWN1,o-1,x\n"
        "\n"  # blank line: not a row
        f"{'Y' * 70},,too long\n"
        "GOOD2,o-2,x\n"
    )
    out = tmp_path / "out.jsonl"
    async with SandboxServer(scripts={"DOWN1": ["503", "*"]}, retry_after=0) as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--rate", "none", "--max-retries", "1",
            env=cli_env(server), cwd=tmp_path,
        )  # fmt: skip
    assert ran.code == 1, ran.stderr
    records = {r["line"]: r for r in read_output(out)}
    assert sorted(records) == [2, 3, 4, 6, 7]
    assert records[2]["ok"]
    assert records[7]["ok"]
    assert records[7]["client_order_id"] == "o-2"
    assert records[3]["error"]["type"] == "InvalidRequestError"
    assert records[3]["attempts"] == 0
    assert records[6]["error"]["type"] == "InvalidRequestError"
    down = records[4]
    assert down["error"] == {
        "type": "ServerError",
        "message": down["error"]["message"],
        "status": 503,
        "code": None,
    }
    assert down["attempts"] == 2
    assert "line 3" in ran.stderr
    assert "line 6" in ran.stderr
    assert "ServerError" in ran.stdout
    assert "InvalidRequestError" in ran.stdout
    assert_no_customer_data(ran.stdout + ran.stderr, ["GOOD1", "GOOD2", "DOWN1", "Y" * 70])


async def test_bad_row_warnings_stop_after_the_limit(tmp_path: Path) -> None:
    """The first MAX_ROW_WARNINGS bad rows are named, then one note; every one is in OUTPUT."""
    from aopay_async.cli._job import MAX_ROW_WARNINGS

    n = MAX_ROW_WARNINGS + 5
    src = tmp_path / "in.csv"
    src.write_text("cibil_id,client_order_id\n" + "".join(f"{'Z' * 70},o-{i}\n" for i in range(n)))
    out = tmp_path / "out.jsonl"
    async with SandboxServer() as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--quiet", env=cli_env(server), cwd=tmp_path
        )
        assert server.stats.requests == 0
    assert ran.code == 1, ran.stderr
    named = [line for line in ran.stderr.splitlines() if line.startswith("skipped bad row: line ")]
    assert len(named) == MAX_ROW_WARNINGS
    assert ran.stderr.count("more bad rows") == 1
    assert_exactly_once(read_output(out), range(2, n + 2))
    assert f"(of which bad input rows, not sent: {n})" in ran.stdout


async def test_jsonl_from_stdin(tmp_path: Path) -> None:
    """JSONL on stdin (``-``): objects and bare strings are rows; broken JSON is a bad row."""
    lines = [
        json.dumps({"cibil_id": "J1", "client_order_id": "oj-1", "extra": 1}),
        json.dumps("J2"),
        "{not json",
        "",
        json.dumps({"no_id": 1}),
        json.dumps({"cibil_id": "J3"}),
    ]
    out = tmp_path / "out.jsonl"
    async with SandboxServer() as server:
        ran = await run_cli(
            "bulk", "-", "-o", str(out), "--rate", "none",
            env=cli_env(server), cwd=tmp_path, stdin="\n".join(lines).encode(),
        )  # fmt: skip
    assert ran.code == 1, ran.stderr
    records = {r["line"]: r for r in read_output(out)}
    assert sorted(records) == [1, 2, 3, 5, 6]
    assert [records[n]["ok"] for n in (1, 2, 3, 5, 6)] == [True, True, False, False, True]
    assert records[1]["client_order_id"] == "oj-1"
    assert "line 3: not valid JSON" in ran.stderr


async def test_plain_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    """Not a terminal: periodic plain progress lines with done/total, rate, ok and failed."""
    src = write_csv(tmp_path / "in.csv", make_ids(40))
    out = tmp_path / "out.jsonl"
    async with SandboxServer(latency=0.05) as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--rate", "none", "--concurrency", "4",
            "--progress-interval", "0.1", env=cli_env(server), cwd=tmp_path,
        )  # fmt: skip
    assert ran.code == 0, ran.stderr
    progress = [line for line in ran.stderr.splitlines() if line.startswith("bulk: ")]
    assert progress, ran.stderr
    assert "/40 rows" in progress[-1]
    assert "rows/s" in progress[-1]
    assert "ok " in progress[-1]
    assert "eta" in progress[-1]


async def test_quiet_prints_no_progress(tmp_path: Path) -> None:
    """--quiet: no progress lines, still the summary."""
    src = write_csv(tmp_path / "in.csv", make_ids(10))
    out = tmp_path / "out.jsonl"
    async with SandboxServer(latency=0.05) as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--rate", "none", "--quiet",
            "--progress-interval", "0.1", env=cli_env(server), cwd=tmp_path,
        )  # fmt: skip
    assert ran.code == 0
    assert "bulk: " not in ran.stderr
    assert "bulk done" in ran.stdout


# -- resume ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_sigkill_part_way_then_resume_gives_every_row_exactly_once(tmp_path: Path) -> None:
    """Kill -9 a bulk run twice part-way, resume each time: every row in OUTPUT exactly once."""
    n = 600
    ids = make_ids(n)
    src = write_csv(tmp_path / "in.csv", ids)
    out = tmp_path / "out.jsonl"
    args = ["bulk", str(src), "-o", str(out), "--rate", "none", "--concurrency", "8", "--quiet"]
    async with SandboxServer(latency=(0.005, 0.04), seed=3) as server:
        env = cli_env(server)
        for kill_at in (100, 300):
            extra = ["--resume"] if out.exists() else []
            proc = await start_cli(*args, *extra, env=env, cwd=tmp_path)
            try:
                for _ in range(int(RUN_TIMEOUT / 0.01)):
                    if out.exists() and out.read_bytes().count(b"\n") >= kill_at:
                        break
                    if proc.returncode is not None:
                        break
                    await asyncio.sleep(0.01)
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)
                await proc.communicate()
            assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed"
            done = out.read_bytes().count(b"\n")
            assert kill_at <= done < n
        # Simulate the worst moment too: a kill in the middle of writing a line.
        append_bytes(out, b'{"line": 99999, "cibil_id": "CUST0')
        ran = await run_cli(*args, "--resume", env=env, cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    assert "partial last line" in ran.stderr
    records = read_output(out)
    assert_exactly_once(records, range(2, n + 2))
    assert all(r["ok"] for r in records)
    by_line = {r["line"]: r["cibil_id"] for r in records}
    assert all(by_line[i + 2] == cid for i, cid in enumerate(ids))
    assert "skipped" in ran.stdout
    assert "earlier run" in ran.stdout


async def test_resume_skips_failures_and_retry_failed_redoes_them(tmp_path: Path) -> None:
    """--resume keeps recorded failures; --retry-failed replaces them, still once per row."""
    ids = make_ids(12)
    src = write_csv(tmp_path / "in.csv", ids)
    out = tmp_path / "out.jsonl"
    flaky = ids[3]
    async with SandboxServer(scripts={flaky: ["503", "*"]}, retry_after=0) as server:
        env = cli_env(server)
        args = ["bulk", str(src), "-o", str(out), "--rate", "none", "--max-retries", "0"]
        first = await run_cli(*args, env=env, cwd=tmp_path)
        assert first.code == 1
        again = await run_cli(*args, "--resume", env=env, cwd=tmp_path)
        assert again.code == 1  # the failure is still in OUTPUT
        assert server.stats.attempts_by_cibil_id[flaky] == 1
        server.script(flaky, ["ok"])
        retried = await run_cli(*args, "--retry-failed", env=env, cwd=tmp_path)
    assert retried.code == 0, retried.stderr
    records = read_output(out)
    assert_exactly_once(records, range(2, 14))
    assert all(r["ok"] for r in records)
    assert "ok        1" in retried.stdout
    # OUTPUT was rewritten without its failures: it is still readable by its owner only.
    assert (out.stat().st_mode & 0o777) == 0o600


async def test_resume_with_given_order_ids_reuses_them(tmp_path: Path) -> None:
    """Rows with a client_order_id keep it across runs; output records hold it."""
    ids = make_ids(5)
    src = write_csv(tmp_path / "in.csv", ids, order_ids=True)
    out = tmp_path / "out.jsonl"
    # One row recorded already, as a crashed earlier run would have left it.
    out.write_text(
        json.dumps({"line": 2, "cibil_id": ids[0], "client_order_id": "ord-0", "ok": True}) + "\n"
    )
    async with SandboxServer() as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--resume", "--rate", "none",
            env=cli_env(server), cwd=tmp_path,
        )  # fmt: skip
        seen = set(server.stats.attempts_by_order_id)
    assert ran.code == 0, ran.stderr
    assert seen == {"ord-1", "ord-2", "ord-3", "ord-4"}
    records = read_output(out)
    assert_exactly_once(records, range(2, 7))
    assert {r["client_order_id"] for r in records} == {f"ord-{i}" for i in range(5)}


async def test_resume_refuses_an_output_from_another_input(tmp_path: Path) -> None:
    """OUTPUT recorded for different rows: exit 2 with a message, not a silent mix."""
    src = write_csv(tmp_path / "in.csv", make_ids(5))
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"line": 3, "cibil_id": "SOMEONE-ELSE", "ok": True}) + "\n")
    async with SandboxServer() as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--resume", "--rate", "none",
            env=cli_env(server), cwd=tmp_path,
        )  # fmt: skip
    assert ran.code == 2
    assert "another INPUT" in ran.stderr
    assert "SOMEONE-ELSE" not in ran.stderr


@pytest.mark.parametrize(
    "grace",
    [
        pytest.param("5", id="in-flight-rows-finish"),
        pytest.param("0", id="in-flight-rows-cancelled"),
    ],
)
async def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path, grace: str) -> None:
    """SIGINT: no new rows, in-flight ones finish or are cancelled, exit 130, a resume command."""
    n = 200
    src = write_csv(tmp_path / "in.csv", make_ids(n))
    out = tmp_path / "out.jsonl"
    args = ["bulk", str(src), "-o", str(out), "--rate", "none", "--concurrency", "8"]
    async with SandboxServer(latency=0.1) as server:
        env = cli_env(server)
        proc = await start_cli(*args, "--grace", grace, "--quiet", env=env, cwd=tmp_path)
        for _ in range(int(RUN_TIMEOUT / 0.01)):
            if out.exists() and out.read_bytes().count(b"\n") >= 20:
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
        assert proc.returncode == 130, stderr.decode()
        err = stderr.decode()
        assert "interrupted" in err
        assert "To resume:" in err
        assert "--resume" in err
        assert "bulk interrupted" in stdout.decode()
        partial = read_output(out)
        assert 20 <= len(partial) < n
        if grace == "5":
            # Every row taken before the interrupt was finished and written.
            assert "cancelled" not in err
        else:
            assert "cancelled the" in err
        ran = await run_cli(*args, "--resume", "--quiet", env=env, cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    assert_exactly_once(read_output(out), range(2, n + 2))


# -- other subcommands -----------------------------------------------------------------------


async def test_get_prints_the_history_as_json(tmp_path: Path) -> None:
    """`get` prints one customer's history as JSON on stdout."""
    async with SandboxServer() as server:
        ran = await run_cli(
            "get",
            "--cibil-id",
            "ONE-1",
            "--client-order-id",
            "o-9",
            env=cli_env(server),
            cwd=tmp_path,
        )
    assert ran.code == 0, ran.stderr
    body = json.loads(ran.stdout)
    assert body["status"] == "SUCCESS"
    assert body["user_info"]["cibil_score"] is not None


async def test_get_failure_exits_1_with_the_error_class(tmp_path: Path) -> None:
    """`get` of a failing lookup: exit 1 and the error class on stderr."""
    async with SandboxServer(scripts={"BAD": ["401", "*"]}) as server:
        ran = await run_cli("get", "--cibil-id", "BAD", env=cli_env(server), cwd=tmp_path)
    assert ran.code == 1
    assert "AuthenticationError" in ran.stderr
    assert "BAD" not in ran.stderr.replace("BADAUTH", "")


async def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`demo` starts its own sandbox, runs a job, prints the summary and where output went."""
    out = tmp_path / "demo.jsonl"
    ran = await run_cli(
        "demo", "--n", "60", "--rate", "none", "--server-rate", "none", "-o", str(out),
        env=cli_env(), cwd=tmp_path,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert "demo done" in ran.stdout
    assert str(out) in ran.stdout
    records = read_output(out)
    assert_exactly_once(records, range(2, 62))


async def test_sandbox_subcommand_serves_until_its_duration(tmp_path: Path) -> None:
    """`sandbox --duration` prints its URL, serves, and exits 0."""
    ran = await run_cli("sandbox", "--duration", "0.3", env=cli_env(), cwd=tmp_path)
    assert ran.code == 0, ran.stderr
    assert "http://127.0.0.1:" in ran.stdout


# -- usage errors (in-process) ---------------------------------------------------------------


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox credentials in the environment, and no base URL."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AOPAY_BASE_URL", raising=False)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """An input CSV and an (absent) output path in a temporary directory."""
    return write_csv(tmp_path / "in.csv", make_ids(3)), tmp_path / "out.jsonl"


@pytest.mark.usefixtures("credentials")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bulk", "{missing}", "-o", "{out}"], "cannot open INPUT"),
        (["bulk", "{headerless}", "-o", "{out}"], "no 'cibil_id' column"),
        (["bulk", "{src}", "-o", "{existing}"], "already exists"),
        (["bulk", "{src}", "-o", "{out}", "--resume", "--overwrite"], "contradict"),
        (["bulk", "{src}", "-o", "{src}", "--resume"], "same file"),
        (["bulk", "{src}", "-o", "{out}", "--rate", "fast"], "is not a number"),
        (["bulk", "{src}", "-o", "{out}", "--concurrency", "0"], "at least 1"),
        (["bulk", "{src}"], "required: -o"),
        (["bulk", "{src}", "-o", "{out}", "--base-url", "ftp://x"], "base_url"),
        (["bulk", "{src}", "-o", "{notjson}", "--resume"], "not a bulk result line"),
        (["bulk", "{src}", "-o", "{folder}", "--resume"], "is a directory; name a file"),
        (["bulk", "{src}", "-o", "{folder}"], "is a directory; name a file"),
        (["bulk", "{src}", "-o", "-", "--resume"], "--resume needs OUTPUT to be a file"),
        (["get"], "--cibil-id"),
        (["get", "--cibil-id", ""], "cibil_id"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_and_says_what(
    argv: list[str],
    message: str,
    files: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each kind of bad usage: exit status 2 and a message naming the problem."""
    src, out = files
    headerless = src.with_name("headerless.csv")
    headerless.write_text("id,name\n1,x\n")
    existing = src.with_name("existing.jsonl")
    existing.write_text('{"line": 2, "ok": true}\n')
    notjson = src.with_name("notjson.jsonl")
    notjson.write_text("hello\n")
    names = {
        "src": src,
        "out": out,
        "missing": src.with_name("missing.csv"),
        "headerless": headerless,
        "existing": existing,
        "notjson": notjson,
        "folder": src.parent,
    }
    code = main([arg.format(**names) for arg in argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.usefixtures("credentials")
@pytest.mark.parametrize(
    ("first_line", "shown"),
    [
        ("ABCDE1234F,Ravi Kumar,9876543210", "its first row has 3 columns"),
        ("CIBIL ID,name", "found 'CIBIL ID'"),
    ],
)
def test_a_csv_without_a_cibil_id_header_is_not_echoed(
    first_line: str, shown: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No cibil_id header: exit 2 without printing the first row (a customer's, if headerless)."""
    src = tmp_path / "in.csv"
    src.write_text(f"{first_line}\nXYZ9876543,Asha Rao,9123456789\n")
    assert main(["bulk", str(src), "-o", str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "no 'cibil_id' column" in err
    assert shown in err
    assert_no_customer_data(err, ["ABCDE1234F", "Ravi", "9876543210", "XYZ9876543", "Asha"])


def test_missing_credentials_exit_2_naming_the_variable(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without credentials in the environment: exit 2, the variable named, OUTPUT untouched."""
    monkeypatch.delenv("AOPAY_COMPANY_CODE", raising=False)
    monkeypatch.setenv("AOPAY_REGISTRATION_ID", "AOP-554")
    src, out = files
    assert main(["bulk", str(src), "-o", str(out)]) == 2
    assert "AOPAY_COMPANY_CODE" in capsys.readouterr().err
    assert not out.exists()


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help on a subcommand prints its flags and exits 0."""
    assert main(["bulk", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--resume", "--retry-failed", "--rate", "--burst", "--concurrency", "--deadline"):
        assert flag in text


# -- the pieces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bulk", "in.csv", "-o", "out.jsonl"], "aopay-async bulk in.csv -o out.jsonl --resume"),
        (["bulk", "in.csv", "-o", "o", "--resume"], "aopay-async bulk in.csv -o o --resume"),
        (["bulk", "a b.csv", "-o", "o", "--overwrite"], "aopay-async bulk 'a b.csv' -o o --resume"),
        (["bulk", "-", "-o", "o"], "<same input> | aopay-async bulk - -o o --resume"),
    ],
)  # fmt: skip
def testresume_command(argv: list[str], expected: str) -> None:
    """The printed resume command repeats the run with --resume (and never --overwrite)."""
    assert resume_command("aopay-async", argv) == expected


@pytest.mark.parametrize("flag", ["--over", "--res", "--conc=4"])
def test_abbreviated_flags_are_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Flags must be spelled out: an abbreviation would leak into the printed resume command."""
    assert main(["bulk", "in.csv", "-o", "out.jsonl", flag]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_ledger_cuts_a_partial_line_and_drops_failures_on_retry(tmp_path: Path) -> None:
    """Loading OUTPUT cuts a partial last line; --retry-failed drops the failed records."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(
        b'{"line": 2, "cibil_id": "A", "ok": true}\n'
        b'{"line": 3, "cibil_id": "B", "ok": false}\n'
        b'{"line": 4, "cib'
    )
    ledger, cut = load_ledger(out, retry_failed=False)
    assert cut == len(b'{"line": 4, "cib')
    assert (ledger.ok, ledger.failed) == (1, 1)
    assert ledger.matches(2, "A")
    assert not ledger.matches(2, "B")
    ledger, cut = load_ledger(out, retry_failed=True)
    assert cut == 0
    assert (ledger.ok, ledger.failed) == (1, 0)
    assert out.read_bytes() == b'{"line": 2, "cibil_id": "A", "ok": true}\n'


@pytest.mark.parametrize(("text", "rows"), [("cibil_id\nA\nB\n", 2), ("", 0)])
def test_reading_a_csv_to_its_end_leaves_the_file_open_for_its_owner(
    text: str, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV rows read to the end (or none at all) do not close the input behind our back."""
    import gc
    import io

    from aopay_async.cli._input import open_input

    buffer = io.BufferedReader(io.BytesIO(text.encode()))  # type: ignore[arg-type]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(buffer))
    read = open_input("-", "csv")[0]
    assert len(list(read)) == rows
    del read
    gc.collect()
    assert not buffer.closed


@pytest.mark.parametrize(
    ("name", "text", "rows"),
    [
        ("in.csv", "cibil_id\nA\n\nB\n", 2),
        ("in.txt", "cibil_id\nA\nB\n", 2),  # sniffed as CSV: its header is not a row
        ("in.txt", '"A"\n{"cibil_id": "B"}\n', 2),  # sniffed as JSONL
        ("in.jsonl", '"A"\n\n"B"\n"C"\n', 3),
        ("empty.csv", "", 0),
    ],
)
def test_the_progress_total_counts_rows_as_read(
    name: str, text: str, rows: int, tmp_path: Path
) -> None:
    """The row count behind the progress total uses the format INPUT is read as."""
    from aopay_async.cli._input import count_rows, open_input

    src = tmp_path / name
    src.write_text(text)
    read, close, fmt = open_input(str(src), "auto")
    try:
        assert len(list(read)) == rows
    finally:
        close()
    assert count_rows(str(src), fmt) == rows


@pytest.mark.parametrize(
    ("samples", "p", "expected"),
    [
        ([0.010] * 100, 50, 0.010),
        ([0.001 * i for i in range(1, 101)], 50, 0.050),
        ([0.001 * i for i in range(1, 101)], 99, 0.099),
        ([0.1] * 99 + [5.0], 99, 0.1),
        ([0.1] * 98 + [5.0] * 2, 99, 5.0),
    ],
)
def test_latency_percentiles_within_one_percent(
    samples: list[float], p: float, expected: float
) -> None:
    """The constant-memory histogram's percentiles are within 1% of the exact ones."""
    histogram = LatencyHistogram()
    for s in samples:
        histogram.add(s)
    value = histogram.percentile(p)
    assert value is not None
    assert value == pytest.approx(expected, rel=0.011)


async def test_undecodable_bytes_make_a_bad_row_not_a_crash(tmp_path: Path) -> None:
    """A CSV row with bytes that are not UTF-8 is a bad row; the rest of the file runs."""
    src = tmp_path / "in.csv"
    src.write_bytes(b"cibil_id\nGOOD1\nBAD\xff\xfeID\nGOOD2\n")
    out = tmp_path / "out.jsonl"
    async with SandboxServer() as server:
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--rate", "none", env=cli_env(server), cwd=tmp_path
        )
    assert ran.code == 1, ran.stderr
    records = {r["line"]: r for r in read_output(out)}
    assert [records[n]["ok"] for n in (2, 3, 4)] == [True, False, True]
    assert "line 3" in ran.stderr


@pytest.mark.parametrize(
    ("hostile", "problem"),
    [
        (b'{"cibil_id": "Jos\xe9"}', "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a":' * 100_000, "nested too deeply"),
    ],
    ids=["latin-1", "deep-array", "deep-object"],
)
async def test_hostile_jsonl_lines_are_bad_rows_and_resume_finishes(
    tmp_path: Path, hostile: bytes, problem: str
) -> None:
    """A JSONL line that is not UTF-8 or nests 100,000 deep is a bad row; --resume ends too."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"cibil_id": "GOOD1"}\n' + hostile + b'\n{"cibil_id": "GOOD2"}\n')
    out = tmp_path / "out.jsonl"
    async with SandboxServer() as server:
        env = cli_env(server)
        ran = await run_cli(
            "bulk", str(src), "-o", str(out), "--rate", "none", env=env, cwd=tmp_path
        )
        assert ran.code == 1, ran.stderr
        assert "Traceback" not in ran.stderr
        records = {r["line"]: r for r in read_output(out)}
        assert [records[n]["ok"] for n in (1, 2, 3)] == [True, False, True]
        assert problem in json.dumps(records[2])
        again = await run_cli(
            "bulk", str(src), "-o", str(out), "--rate", "none", "--resume", env=env, cwd=tmp_path
        )
    assert again.code == 1, again.stderr
    assert "Traceback" not in again.stderr
    assert_exactly_once(read_output(out), [1, 2, 3])


def test_progress_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quiet: none; not a terminal: plain lines; a terminal: the rich bar (when installed)."""
    from aopay_async.cli import _progress, _summary

    assert isinstance(_progress.make_progress(True, 5.0, "bulk"), _progress.NoProgress)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert type(_progress.make_progress(False, 5.0, "bulk")) is _progress.PlainProgress
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    progress = _progress.make_progress(False, 5.0, "bulk")
    assert isinstance(progress, _progress.RichProgress)
    tally = _summary.Tally(total=10, ok=3, failed=1)
    progress.start(tally)
    progress.refresh(tally)
    progress.stop(tally)
