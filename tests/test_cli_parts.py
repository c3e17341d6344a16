"""The command line's parts, in-process: the stop gate, OUTPUT's mode, INPUT's cleanup,
the summary's wording and the flags a new user reaches for first.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import CREDENTIALS

from aopay_async.cli import build_parser, main
from aopay_async.cli._gate import StopGate
from aopay_async.cli._input import open_input
from aopay_async.cli._ledger import load_ledger
from aopay_async.cli._options import make_client
from aopay_async.cli._output import Output
from aopay_async.cli._summary import Tally, print_summary


class _CountingLimiter:
    """An inner limiter that grants at once and counts grants."""

    def __init__(self) -> None:
        self.granted = 0

    async def acquire(self) -> None:
        self.granted += 1


async def test_the_gate_passes_tokens_until_closed_then_none() -> None:
    """Open: each acquire goes through the inner limiter; closed: nobody passes."""
    inner = _CountingLimiter()
    gate = StopGate().wrap(inner)
    await gate.acquire()
    assert inner.granted == 1
    gate.close()
    blocked = [asyncio.create_task(gate.acquire()) for _ in range(3)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert not any(task.done() for task in blocked)
    assert gate.waiting == 3
    assert inner.granted == 1  # nothing more was asked of the rate limit
    for task in blocked:
        task.cancel()
    await asyncio.gather(*blocked, return_exceptions=True)
    assert gate.waiting == 0


async def test_a_caller_waiting_for_a_token_when_the_gate_closes_is_held() -> None:
    """A token granted after close() does not let its caller through."""
    release = asyncio.Event()

    class Slow:
        async def acquire(self) -> None:
            await release.wait()

    gate = StopGate().wrap(Slow())
    task = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.close()
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("existing", [b"", b'{"line": 2, "ok": true}\n'])
@pytest.mark.parametrize("truncate", [True, False])
def test_output_is_0600_even_when_it_existed_world_readable(
    existing: bytes, truncate: bool, tmp_path: Path
) -> None:
    """An existing 0644 OUTPUT (empty or not, truncated or appended to) becomes 0600."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(existing)
    out.chmod(0o644)
    output = Output(out, truncate=truncate, fsync=False)
    output.close()
    assert out.stat().st_mode & 0o777 == 0o600


def test_retry_failed_leaves_output_0600(tmp_path: Path) -> None:
    """--retry-failed rewrites OUTPUT: the new file is 0600 whatever the old one's mode."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"line": 2, "ok": true}\n{"line": 3, "ok": false}\n')
    out.chmod(0o644)
    ledger, _ = load_ledger(out, retry_failed=True)
    assert len(ledger) == 1
    assert out.stat().st_mode & 0o777 == 0o600


def test_closing_a_half_read_csv_reports_nothing(tmp_path: Path) -> None:
    """Closing INPUT after an interrupted read leaves no 'Exception ignored' behind."""
    src = tmp_path / "in.csv"
    src.write_text("cibil_id\nA\nB\nC\n")
    seen: list[Any] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        rows, close, _ = open_input(str(src), "csv")
        next(rows)
        close()
        del rows
        gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert seen == []


def _summary(capsys: pytest.CaptureFixture[str], **counts: int) -> str:
    print_summary(Tally(**counts), "bulk", Path("out.jsonl"), interrupted=False)
    return capsys.readouterr().out


def test_a_resumed_run_says_which_failures_are_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    """Failures from earlier runs are counted apart from this run's."""
    text = _summary(capsys, ok=5, previous_ok=7, previous_failed=3)
    assert "failed    0 this run, 3 from earlier runs" in text
    assert "failed    0\n" in _summary(capsys, ok=5)


def test_the_summary_splits_wire_time_from_limiter_wait(capsys: pytest.CaptureFixture[str]) -> None:
    """Whole-row latency, wire time and token waits are three lines, each with percentiles."""
    tally = Tally(ok=1)
    tally.latency.add(3.2)
    tally.wire.add(0.001)
    tally.limiter_wait.add(3.1)
    print_summary(tally, "bulk", Path("out.jsonl"), interrupted=False)
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "p50 32" in lines["latency"]  # ~3,200 ms
    assert "p50 1 ms" in lines["wire"]
    assert "p50 31" in lines["limiter"]  # ~3,100 ms


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    from aopay_async import __version__

    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_get_help_explains_cibil_id(capsys: pytest.CaptureFixture[str]) -> None:
    """`get --help` says what --cibil-id is."""
    assert main(["get", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--cibil-id ID the customer's CIBIL id" in text


@pytest.mark.usefixtures("credentials")
def test_the_http_refusal_names_the_cli_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """A plain-http base URL is refused with the flag a CLI user can pass."""
    code = main(["get", "--cibil-id", "CUST1", "--base-url", "http://api.example.test"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--allow-insecure-http" in err
    assert "allow_insecure_http=True" not in err


@pytest.mark.usefixtures("credentials")
async def test_allow_insecure_http_lets_a_plain_http_url_through() -> None:
    """With --allow-insecure-http the client is built for the http URL (nothing is sent)."""
    from aopay_async.cli import build_parser

    parser = build_parser("aopay-async", with_sandbox=False)
    args = parser.parse_args(
        ["get", "--cibil-id", "X", "--base-url", "http://api.example.test", "--allow-insecure-http"]
    )
    assert isinstance(args, argparse.Namespace)
    client = make_client(args)
    async with client:
        assert client.base_url == "http://api.example.test"


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox credentials in the environment, and no base URL."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AOPAY_BASE_URL", raising=False)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser("aopay-async", with_sandbox=True)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["get", "bulk", "demo", "sandbox"])
def test_every_default_the_help_names_is_the_real_one(command: str) -> None:
    """Each "(default N)" in a command's --help is the value that flag really defaults to
    (demo's --timeout and --deadline said 30 and 120 while it used 5 and 30)."""
    parser = _subparsers()[command]
    formatter = parser._get_formatter()
    checked = 0
    for action in parser._actions:
        if not action.help or not isinstance(action.default, int | float):
            continue  # a flag whose default is not a number (its help may name a part's)
        text = formatter._expand_help(action)
        for said in re.findall(r"\(default (-?\d+(?:\.\d+)?)(?=[):;, ])", text):
            assert float(said) == float(action.default), (action.dest, text)
            checked += 1
    assert checked >= 3
