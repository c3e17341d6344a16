"""The command line on the event stream: its summary counts from hooks, ``--log-level``,
``--metrics-port``, and no customer data in any of them.
"""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _cli_helpers import assert_no_customer_data, cli_env, make_ids, run_cli, write_csv

from aopay_async import AOPayClient
from aopay_async._events import Event, EventKind
from aopay_async.cli._argtypes import log_level, metrics_address
from aopay_async.cli._metrics import serve_metrics
from aopay_async.cli._status import UsageError
from aopay_async.cli._summary import Tally
from aopay_async.testing import SandboxServer


@pytest.mark.parametrize(
    ("events", "counts"),
    [
        (
            [
                Event(EventKind.ATTEMPT_STARTED, "o", 1),
                Event(EventKind.ATTEMPT_FINISHED, "o", 1, status_code=429, wire_seconds=0.002),
            ],
            {"attempts": 1, "statuses": {429: 1}, "connection_errors": 0, "wire": 1, "wait": 0},
        ),
        (
            [
                Event(EventKind.LIMITER_WAITED, "o", wait_seconds=0.5),
                Event(EventKind.ATTEMPT_STARTED, "o", 1),
                Event(EventKind.ATTEMPT_FINISHED, "o", 1, error_type="APIConnectionError"),
                Event(EventKind.RETRY_SCHEDULED, "o", 2, reason="APIConnectionError"),
            ],
            {"attempts": 1, "statuses": {}, "connection_errors": 1, "wire": 0, "wait": 1},
        ),
        (
            [Event(EventKind.BULK_ITEM, "o", 1), Event(EventKind.THROTTLED, "o", 1)],
            {"attempts": 0, "statuses": {}, "connection_errors": 0, "wire": 0, "wait": 0},
        ),
    ],
)
def test_the_tally_counts_from_events(events: list[Event], counts: dict[str, Any]) -> None:
    """Attempts, statuses, connection failures, wire times and waits come from the events."""
    tally = Tally()
    for event in events:
        tally.on_event(event)
    assert tally.attempts == counts["attempts"]
    assert dict(tally.statuses) == counts["statuses"]
    assert tally.connection_errors == counts["connection_errors"]
    assert tally.wire.count == counts["wire"]
    assert tally.limiter_wait.count == counts["wait"]


@pytest.mark.parametrize(
    ("text", "level"),
    [("debug", logging.DEBUG), ("INFO", logging.INFO), ("Warning", logging.WARNING)],
)
def test_log_level_values(text: str, level: int) -> None:
    """--log-level takes debug, info or warning in any case."""
    assert log_level(text) == level


@pytest.mark.parametrize(
    ("text", "address"),
    [("9464", ("127.0.0.1", 9464)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:9000", ("::1", 9000))],
)
def test_metrics_address_values(text: str, address: tuple[str, int]) -> None:
    """--metrics-port takes PORT (on 127.0.0.1) or HOST:PORT."""
    assert metrics_address(text) == address


@pytest.mark.parametrize("text", ["verbose", "", "10"])
def test_bad_log_levels_are_refused(text: str) -> None:
    """Anything else is a usage error naming the choices."""
    with pytest.raises(argparse.ArgumentTypeError, match="debug, info, warning"):
        log_level(text)


@pytest.mark.parametrize("text", ["http", "0", "70000", "host:", "-1"])
def test_bad_metrics_addresses_are_refused(text: str) -> None:
    """A port must be a number from 1 to 65535."""
    with pytest.raises(argparse.ArgumentTypeError):
        metrics_address(text)


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_metrics_endpoint_serves_the_clients_instruments() -> None:
    """``serve_metrics``: a provider whose instruments are served as Prometheus text, then stop."""
    said: list[str] = []
    port = free_port()
    provider, stop = serve_metrics(("127.0.0.1", port), said.append)
    try:
        async with SandboxServer(scripts={"PROM00001": ["503"]}) as server:
            async with AOPayClient(
                "CMP1045",
                "AOP-554",
                base_url=server.url,
                backoff_base=0.0,
                meter_provider=provider,
            ) as client:
                results = [r async for r in client.bulk_credit_history(["PROM00001", "PROM2"])]
            assert all(r.ok for r in results)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/metrics") as response,
            ):
                text = await response.text()
    finally:
        stop()
    assert said == [f"metrics: http://127.0.0.1:{port}/metrics (Prometheus text)"]
    assert "http_client_request_duration_seconds_bucket{" in text
    assert 'http_response_status_code="503"' in text
    assert 'aopay_client_retries_total{error_type="503"' in text
    assert 'aopay_bulk_items_total{aopay_outcome="ok"' in text
    assert "PROM00001" not in text
    with socket.socket() as sock:  # stopped: nothing listens any more
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_busy_metrics_port_is_a_usage_error() -> None:
    """A port that cannot be bound is reported as a usage error naming the address."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_metrics(("127.0.0.1", port), print)


def test_no_metrics_flag_means_no_provider() -> None:
    """Without --metrics-port nothing is served and no provider is given to the client."""
    provider, stop = serve_metrics(None, print)
    assert provider is None
    stop()


async def test_cli_summary_counts_retried_429s_and_logs_attempts(tmp_path: Path) -> None:
    """The summary's attempts, 429s and other statuses come from the event hooks (no session
    of the CLI's own); --log-level debug prints one line per attempt; no customer data."""
    ids = make_ids(6, prefix="OBSCLI")
    src = write_csv(tmp_path / "in.csv", ids)
    out = tmp_path / "out.jsonl"
    scripts = {ids[0]: ["429"], ids[1]: ["503", "503"]}
    async with SandboxServer(scripts=scripts, retry_after=0) as server:
        ran = await run_cli(
            "bulk",
            str(src),
            "-o",
            str(out),
            "--rate",
            "none",
            "--log-level",
            "debug",
            env=cli_env(server, AOPAY_LOG=""),
            cwd=tmp_path,
        )
        requests = server.stats.requests
    assert ran.code == 0, ran.stderr
    assert requests == 9
    assert f"attempts  {requests} (3 retries)" in ran.stdout
    assert "429s seen 1" in ran.stdout
    assert "other     503: 2" in ran.stdout
    attempt_lines = [line for line in ran.stderr.splitlines() if "attempt_finished" in line]
    assert len(attempt_lines) == requests
    assert sum("retry_scheduled" in line for line in ran.stderr.splitlines()) == 3
    assert sum(" throttled " in line for line in ran.stderr.splitlines()) == 1
    assert_no_customer_data(ran.stdout + ran.stderr, ids)


async def test_cli_without_log_level_prints_no_log_lines(tmp_path: Path) -> None:
    """By default the CLI shows progress and the summary, not the library's log lines."""
    ids = make_ids(3, prefix="OBSQUIET")
    src = write_csv(tmp_path / "in.csv", ids)
    async with SandboxServer(scripts={ids[0]: ["503"]}) as server:
        ran = await run_cli(
            "bulk",
            str(src),
            "-o",
            str(tmp_path / "out.jsonl"),
            "--rate",
            "none",
            env=cli_env(server),
            cwd=tmp_path,
        )
    assert ran.code == 0, ran.stderr
    assert "aopay_async.client" not in ran.stderr
    assert "attempts  4 (1 retries)" in ran.stdout
