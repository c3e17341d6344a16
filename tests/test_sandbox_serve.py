"""The sandbox's command-line part: its flags and its serve loop.

``add_arguments`` and ``serve`` are what ``aopay-async sandbox`` runs; here they are
called directly (and once through ``python -m aopay_async.testing._serve`` with a real
Ctrl-C), so they are tested whatever the CLI around them does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import socket
import sys
from typing import Any

import aiohttp
import pytest

from aopay_async.testing._serve import add_arguments, serve

URL_LINE = re.compile(r"AOPay sandbox running at (http://127\.0\.0\.1:\d+)")
BODY = json.dumps(
    {
        "client_order_id": "1",
        "cibil_id": "xyz",
        "RegistrationID": "AOP-554",
        "CompanyCode": "CMP1045",
    }
)


def parse(*argv: str) -> argparse.Namespace:
    """Parse *argv* with a parser that has only the sandbox flags."""
    parser = argparse.ArgumentParser(prog="sandbox", exit_on_error=False)
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            [],
            {
                "host": "127.0.0.1",
                "port": 0,
                "company_code": "CMP1045",
                "registration_id": "AOP-554",
                "rate": None,
                "burst": 1,
                "latency": 0.0,
                "fault": [],
                "script": [],
                "seed": 0,
                "retry_after": None,
                "slow_seconds": 1.0,
                "accounts": None,
                "duration": None,
            },
        ),
        (["--port", "8765", "--host", "127.0.0.1"], {"port": 8765}),
        (["--company-code", "ACME", "--registration-id", "R-1"], {"company_code": "ACME"}),
        (["--rate", "25", "--burst", "4"], {"rate": 25.0, "burst": 4}),
        (["--latency", "0.05"], {"latency": 0.05}),
        (["--latency", "0.01:0.2"], {"latency": (0.01, 0.2)}),
        (
            ["--fault", "503=0.02", "--fault", "reset=0.01"],
            {"fault": [("503", 0.02), ("reset", 0.01)]},
        ),
        (["--script", "BAD01=401,*"], {"script": [("BAD01", ["401", "*"])]}),
        (["--script", "F2=503, 503"], {"script": [("F2", ["503", "503"])]}),
        (["--seed", "7", "--retry-after", "0.5"], {"seed": 7, "retry_after": 0.5}),
        (["--slow-seconds", "3", "--accounts", "100"], {"slow_seconds": 3.0, "accounts": 100}),
        (["--duration", "2.5"], {"duration": 2.5}),
    ],
)
def test_flags_set_every_knob(argv: list[str], expected: dict[str, Any]) -> None:
    """Each flag lands on the namespace with the right type; defaults are the knobs' defaults."""
    args = vars(parse(*argv))
    assert {key: args[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fault", "503"], "NAME=FRACTION"),
        (["--fault", "504=0.1"], "unknown fault '504'"),
        (["--fault", "503=2"], "at most 1"),
        (["--fault", "503=x"], "not a number"),
        (["--rate", "0"], "more than 0"),
        (["--latency", "-1"], ">= 0"),
        (["--latency", "0.3:0.1"], "LOW must not exceed HIGH"),
        (["--script", "NOEQUALS"], "CIBIL_ID=OUTCOME"),
        (["--duration", "inf"], "finite"),
        (["--port", "70000"], "not in 0-65535"),
        (["--port", "-1"], "not in 0-65535"),
        (["--port", "http"], "not a port number"),
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str], message: str) -> None:
    """A bad flag value is an argparse error that says what is wrong."""
    with pytest.raises(argparse.ArgumentError, match=re.escape(message)):
        parse(*argv)


async def run_serve(
    args: argparse.Namespace, capsys: pytest.CaptureFixture[str], *, requests: int = 1
) -> tuple[int, str, list[int]]:
    """Run serve(args) as a task, send *requests* requests once it prints its URL."""
    task = asyncio.create_task(serve(args))
    url = None
    seen = ""
    for _ in range(500):
        seen += capsys.readouterr().out
        match = URL_LINE.search(seen)
        if match:
            url = match.group(1)
            break
        await asyncio.sleep(0.01)
    assert url is not None, seen
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            async with session.get(url + "/api/AOP/CibilScore/GetCreditHistory", data=BODY) as r:
                statuses.append(r.status)
    async with asyncio.timeout(10):
        code = await task
    return code, seen + capsys.readouterr().out, statuses


async def test_serve_prints_its_url_serves_and_stops_after_duration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """serve() prints the URL and exports first, answers, and returns 0 when --duration ends."""
    code, out, statuses = await run_serve(parse("--duration", "0.5"), capsys, requests=2)
    assert code == 0
    assert statuses == [200, 200]
    assert "export AOPAY_BASE_URL=http://127.0.0.1:" in out
    assert "CompanyCode=CMP1045 RegistrationID=AOP-554" in out
    assert "stopped after 2 requests (ok=2)" in out


async def test_serve_applies_the_knobs(capsys: pytest.CaptureFixture[str]) -> None:
    """The flags reach the server: every request faulted, the faults listed at start."""
    args = parse("--duration", "0.5", "--fault", "503=1", "--seed", "3")
    code, out, statuses = await run_serve(args, capsys, requests=3)
    assert code == 0
    assert statuses == [503, 503, 503]
    assert "faults:      503=1" in out


async def test_serve_returns_0_when_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    """Cancelling serve() (what Ctrl-C does under asyncio.run) stops it cleanly with 0."""
    task = asyncio.create_task(serve(parse()))
    for _ in range(500):
        if "Press Ctrl-C" in capsys.readouterr().out:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    async with asyncio.timeout(10):
        assert await task == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--accounts", "5000"], "accounts must be between 0 and 1000"),
        (["--script", "X=timeout"], "unknown outcome 'timeout'"),
        (["--burst", "0"], "burst must be at least 1"),
    ],
)
async def test_serve_refuses_bad_knobs_with_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A knob the server refuses is exit status 2 with the reason on stderr; nothing binds."""
    assert await serve(parse(*argv)) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "running at" not in captured.out


async def test_serve_reports_a_port_in_use_with_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A port already taken is exit status 2 with a message, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert await serve(parse("--port", str(port))) == 2
    assert f"cannot bind 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
async def test_ctrl_c_stops_the_module_cleanly() -> None:
    """`python -m aopay_async.testing._serve`, then SIGINT: summary printed, exit status 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aopay_async.testing._serve",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(20):
            first = (await process.stdout.readline()).decode()
            assert URL_LINE.match(first), first
            process.send_signal(signal.SIGINT)
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert "AOPay sandbox stopped after 0 requests" in out.decode()
    assert b"Traceback" not in err
