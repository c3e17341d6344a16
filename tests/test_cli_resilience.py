"""The command line through an outage: the "paused" progress line, the summary's pauses,
``demo --outage``, ``--adaptive`` and the sandbox's ``--outage`` flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from _cli_helpers import cli_env, read_output, run_cli

from aopay_async._breaker import Circuit, CircuitBreaker, CircuitChange
from aopay_async._observe import Observer
from aopay_async.cli._progress import PlainProgress, paused_line
from aopay_async.cli._summary import Tally, print_summary
from aopay_async.testing._serve import _outage, add_arguments


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (4.0, "paused: API unavailable, next probe in 4s"),
        (3.2, "paused: API unavailable, next probe in 4s"),
        (0.0, "paused: API unavailable, next probe in 0s"),
    ],
)
def test_paused_line_wording(seconds: float, text: str) -> None:
    """The progress line says the run is paused and when the next probe goes, rounded up."""
    assert paused_line(seconds) == text


def watched_circuit(tally: Tally, breaker: CircuitBreaker) -> Circuit:
    """A circuit whose changes reach *tally* as the client sends them: circuit_changed
    events through an Observer (the tally reads nothing else of the circuit)."""
    observer = Observer([tally.on_event])

    def changed(change: CircuitChange) -> None:
        retry_after = change.retry_after if change.new == "open" else None
        observer.circuit_changed(change.old, change.new, retry_after)

    return breaker.new_state(changed)


async def test_plain_progress_says_paused_while_the_circuit_is_open(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With the circuit open, the periodic line is the paused line, not a rate and an ETA."""
    import asyncio

    tally = Tally(total=10)
    circuit = watched_circuit(tally, CircuitBreaker(open_seconds=4.0))
    progress = PlainProgress(5.0, "bulk")
    progress.refresh(tally)
    assert "rows/s" in capsys.readouterr().err
    now = asyncio.get_running_loop().time()
    for _ in range(10):
        circuit.record(now, False)
    progress.refresh(tally)
    line = capsys.readouterr().err
    assert "bulk: paused: API unavailable, next probe in 4s" in line
    assert "0/10 rows" in line


async def test_summary_reports_the_pauses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary counts the times the circuit opened and the seconds paused in all, and
    the rate limiter's outages with the rows sent again."""
    import asyncio

    tally = Tally()
    print_summary(tally, "bulk", tmp_path / "out.jsonl", interrupted=False)
    out = capsys.readouterr().out
    assert "pauses" not in out
    assert "redis" not in out
    now = asyncio.get_running_loop().time()
    pauses = tally.pauses
    pauses.circuit_changed("open", 5.0, now - 7.0)
    pauses.circuit_changed("half_open", None, now - 2.5)
    pauses.circuit_changed("closed", None, now - 2.0)
    pauses.limiter_changed(True, "ConnectionError", now - 40.0)
    pauses.limiter_changed(False, "", now - 10.0)
    tally.resent = 3
    print_summary(tally, "bulk", tmp_path / "out.jsonl", interrupted=False)
    out = capsys.readouterr().out
    assert "pauses    1 (API unavailable: rows held, not failed; 5s paused in all)" in out
    assert (
        "redis     1 outage of the rate limiter (rows waited, none failed; 30s paused in "
        "all; 3 sent again)"
    ) in out


@pytest.mark.slow
async def test_demo_outage_pauses_and_resumes(tmp_path: Path) -> None:
    """`demo --outage 2`: every row still ends ok, and the summary reports the pause."""
    out = tmp_path / "demo.jsonl"
    ran = await run_cli(
        "demo", "--n", "400", "--rate", "100", "--server-rate", "none", "--no-faults",
        "--outage", "2", "--outage-at", "1", "--progress-interval", "0.5", "-o", str(out),
        env=cli_env(), cwd=tmp_path,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert "the sandbox goes down (503) for 2s" in ran.stderr
    assert "paused: API unavailable, next probe in" in ran.stderr
    assert "pauses    " in ran.stdout
    records = read_output(out)
    assert len(records) == 400
    # Two rows are deliberately bad; every other row is ok despite the outage.
    assert sum(r["ok"] for r in records) == 398


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("30:10", (30.0, 10.0, "503")),
        ("0:5:reset", (0.0, 5.0, "reset")),
        ("1.5:2:502", (1.5, 2.0, "502")),
    ],
)
def test_sandbox_outage_flag(text: str, window: tuple[float, float, str]) -> None:
    """`sandbox --outage START:SECONDS[:FAULT]` parses into an outage window."""
    assert _outage(text) == window
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--outage", text]).outage == [window]


@pytest.mark.parametrize("text", ["30", "a:b", "1:2:nope", "-1:2"])
def test_bad_sandbox_outage_flag(text: str) -> None:
    """A malformed --outage is a usage error naming the expected form."""
    with pytest.raises(argparse.ArgumentTypeError):
        _outage(text)
