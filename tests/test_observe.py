"""The event stream: its shape, its log lines, the hooks, and what it costs nobody.

OpenTelemetry is tested in ``test_observe_otel.py``; here, events, logging (with ``caplog``),
event hooks, ``AOPAY_LOG``, the bulk result's times, and the guarantee that nothing is
watched (and OpenTelemetry never imported) when nobody listens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from _data import COMPANY, REGISTRATION
from _local_server import LocalServer, ok, status
from hypothesis import given
from hypothesis import strategies as st

from aopay_async import AOPayClient, InvalidRequestError, ServerError
from aopay_async._events import (
    CLIENT_LOG,
    HOOK_LOG,
    LOG,
    Event,
    EventKind,
    body_reference,
    configure_from_env,
    format_event,
    safe_reference,
)
from aopay_async._observe import Observer
from aopay_async.events import Event as PublicEvent

SOFT_REF = "23081815284725JQJCESXDTP2"


def client_for(server: LocalServer, **options: object) -> AOPayClient:
    """A client on the local server with no rate limit and zero backoff unless overridden."""
    settings: dict[str, object] = {"rate_limit": None, "backoff_base": 0.0}
    settings.update(options)
    return AOPayClient(COMPANY, REGISTRATION, base_url=server.url, **settings)  # type: ignore[arg-type]


# -- the shape ---------------------------------------------------------------------------


def test_event_is_frozen_and_slotted() -> None:
    """An event cannot be changed by one subscriber under another, and carries no __dict__."""
    event = Event(EventKind.ATTEMPT_STARTED, "ord-1", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.attempt = 2  # type: ignore[misc]
    assert not hasattr(event, "__dict__")
    assert PublicEvent is Event


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        (Event(EventKind.ATTEMPT_FINISHED, status_code=200), "ok"),
        (
            Event(EventKind.ATTEMPT_FINISHED, status_code=503, error_type="ServerError"),
            "ServerError",
        ),
        (Event(EventKind.BULK_ITEM, error_type="InvalidRequestError"), "InvalidRequestError"),
        (Event(EventKind.BULK_ITEM), "ok"),
        (Event(EventKind.RETRY_SCHEDULED, reason="503"), None),
        (Event(EventKind.ATTEMPT_STARTED), None),
    ],
)
def test_outcome(event: Event, outcome: str | None) -> None:
    """``outcome`` is "ok" or the error class for finished attempts and items, else None."""
    assert event.outcome == outcome


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            Event(
                EventKind.ATTEMPT_FINISHED,
                "ord-1",
                1,
                status_code=200,
                wire_seconds=0.0125,
                wait_seconds=0.0,
                reference=SOFT_REF,
            ),
            f"attempt_finished order_id=ord-1 attempt=1 outcome=ok status=200 wire_ms=12.500 "
            f"wait_ms=0.000 ref={SOFT_REF}",
        ),
        (
            Event(
                EventKind.ATTEMPT_FINISHED,
                "ord-1",
                2,
                error_type="APIConnectionError",
                wire_seconds=0.001,
                wait_seconds=0.25,
            ),
            "attempt_finished order_id=ord-1 attempt=2 outcome=APIConnectionError "
            "wire_ms=1.000 wait_ms=250.000",
        ),
        (
            Event(EventKind.RETRY_SCHEDULED, "ord-1", 2, reason="503", delay_seconds=0.4),
            "retry_scheduled order_id=ord-1 attempt=2 reason=503 delay_ms=400.000",
        ),
        (
            Event(EventKind.THROTTLED, "o", 1, status_code=429, delay_seconds=1.0),
            "throttled order_id=o attempt=1 status=429 delay_ms=1000.000",
        ),
        (
            Event(EventKind.CIRCUIT_CHANGED, state="open", reason="closed"),
            "circuit_changed reason=closed state=open",
        ),
        (
            Event(EventKind.ATTEMPT_STARTED, "has space=x", 1),
            'attempt_started order_id="has space=x" attempt=1',
        ),
    ],
)
def test_log_line(event: Event, line: str) -> None:
    """Lines are the kind then grep-able key=value pairs; odd values are JSON-quoted."""
    assert format_event(event) == line


@pytest.mark.parametrize(
    ("value", "secrets", "kept"),
    [
        (SOFT_REF, (), SOFT_REF),
        ("REF-1.a_b", (), "REF-1.a_b"),
        ("5550001234", (), None),  # all digits: could be a mobile or account number
        ("", (), None),
        ("a" * 65, (), None),
        ("ref with space", (), None),
        ("ref\nforged", (), None),
        (None, (), None),
        (12345, (), None),
        ("XSYNCIBIL77X", ("SYNCIBIL77",), None),  # holds the customer's id
        ("CMP1045ref", ("CMP1045", None), None),  # holds a credential
    ],
)
def test_safe_reference(value: object, secrets: tuple[str | None, ...], kept: str | None) -> None:
    """Only a short token with a letter and no secret in it is reported as a reference."""
    assert safe_reference(value, secrets) == kept


@given(st.text(alphabet="0123456789", min_size=1, max_size=64))
def test_all_digit_references_are_never_kept(value: str) -> None:
    """A reference of digits only is indistinguishable from a phone or account number."""
    assert safe_reference(value) is None


@given(st.text(min_size=3, max_size=20), st.text(max_size=10), st.text(max_size=10))
def test_a_reference_holding_a_secret_is_never_kept(secret: str, before: str, after: str) -> None:
    """Whatever surrounds it, a value that contains a secret is dropped."""
    assert safe_reference(before + secret + after, (secret,)) is None


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        (
            b'{"code":"207","description":"x","merchantTrxnRefId":"MTR9A1","status":"False"}',
            "MTR9A1",
        ),
        (b'{"code":"207","merchantTrxnRefId":"5550001234"}', None),
        (b'{"code":"207","merchantTrxnRefId":null}', None),
        (b'{"responsecode":401,"status":false,"message":"no"}', None),
        (b'{"soft_ref_id":"' + SOFT_REF.encode() + b'","error_code":"E1"}', SOFT_REF),
        (b"<html>bad gateway</html>", None),
        (b"[1, 2]", None),
        (b"", None),
    ],
)
def test_body_reference(body: bytes, kept: str | None) -> None:
    """An error body's reference is read from its documented fields, when safe."""
    assert body_reference(body, ("SYNCIBIL77",)) == kept


# -- logging -----------------------------------------------------------------------------


def test_the_logger_tree_is_silent_by_default() -> None:
    """The ``aopay_async`` logger carries a NullHandler, so an unconfigured app sees nothing."""
    assert any(isinstance(h, logging.NullHandler) for h in LOG.handlers)
    assert CLIENT_LOG.parent is LOG
    assert HOOK_LOG.parent is LOG


@pytest.fixture
def restore_log() -> Iterator[None]:
    """Undo ``configure_from_env`` on the package logger after the test."""
    handlers, level = list(LOG.handlers), LOG.level
    yield
    LOG.handlers[:] = handlers
    LOG.setLevel(level)


@pytest.mark.parametrize(
    ("value", "level"),
    [("debug", logging.DEBUG), ("INFO", logging.INFO), (" warning ", logging.WARNING)],
)
@pytest.mark.usefixtures("restore_log")
def test_aopay_log_attaches_one_stderr_handler(value: str, level: int) -> None:
    """``AOPAY_LOG`` sets the level and adds a stderr handler once, however often it is read."""
    handler = configure_from_env({"AOPAY_LOG": value})
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr
    assert LOG.level == level
    assert configure_from_env({"AOPAY_LOG": value}) is None
    assert LOG.handlers.count(handler) == 1


@pytest.mark.parametrize("value", ["", "verbose", "10"])
@pytest.mark.usefixtures("restore_log")
def test_aopay_log_ignores_other_values(value: str) -> None:
    """An unknown ``AOPAY_LOG`` value changes nothing."""
    before = list(LOG.handlers)
    assert configure_from_env({"AOPAY_LOG": value}) is None
    assert LOG.handlers == before


def run_script(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run *script* in a fresh interpreter (so module state starts clean)."""
    environment = {k: v for k, v in os.environ.items() if k != "AOPAY_LOG"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


ONE_CALL = """
    import asyncio, sys
    import aopay_async
    from aopay_async import AOPayClient
    from aopay_async.testing import SandboxServer

    before = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")

    async def main():
        events = []
        async with SandboxServer(scripts={"SYNTH001": ["503"]}) as server:
            async with AOPayClient("CMP1045", "AOP-554", base_url=server.url,
                                   backoff_base=0.0, event_hooks=[events.append]) as client:
                await client.get_credit_history(cibil_id="SYNTH001", client_order_id="ord-x")
        return events

    events = asyncio.run(main())
    after = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    print("events", len(events))
    print("otel", before, after)
"""


def test_aopay_log_debug_prints_attempts_to_stderr() -> None:
    """``AOPAY_LOG=debug`` alone makes a script print one line per attempt and the retry."""
    done = run_script(ONE_CALL, AOPAY_LOG="debug")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "aopay_async.client" in line]
    assert len([x for x in lines if "attempt_finished order_id=ord-x" in x]) == 2, lines
    assert any(
        "INFO aopay_async.client retry_scheduled order_id=ord-x attempt=2" in x for x in lines
    )


def test_opentelemetry_is_never_imported_unless_used() -> None:
    """Installed but unused, OpenTelemetry stays out of ``sys.modules``: before and after a call
    with hooks and logging on."""
    done = run_script(ONE_CALL, AOPAY_LOG="info")
    assert done.returncode == 0, done.stderr
    assert "events 7" in done.stdout  # two attempts of three events, one retry
    assert "otel [] []" in done.stdout


async def test_every_attempt_at_debug_and_the_retry_at_info(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A call that fails once logs two attempt lines at DEBUG and one retry line at INFO."""
    caplog.set_level(logging.DEBUG, logger="aopay_async")
    local_server.reply(status(503), ok())
    async with client_for(local_server) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77", client_order_id="ord-7")
    records = [r for r in caplog.records if r.name == "aopay_async.client"]
    shown = [(r.levelname, r.getMessage().split(" wire_ms")[0]) for r in records]
    assert shown == [
        ("DEBUG", "attempt_finished order_id=ord-7 attempt=1 outcome=ServerError status=503"),
        ("INFO", "retry_scheduled order_id=ord-7 attempt=2 reason=503 delay_ms=0.000"),
        ("DEBUG", "attempt_finished order_id=ord-7 attempt=2 outcome=ok status=200"),
    ]
    assert records[-1].getMessage().endswith(f"ref={SOFT_REF}")
    assert all(isinstance(r.aopay_event, Event) for r in records)  # type: ignore[attr-defined]


async def test_a_429_is_logged_at_info(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Each 429 gives an INFO ``throttled`` line with the server's Retry-After."""
    caplog.set_level(logging.INFO, logger="aopay_async")
    local_server.reply(status(429, headers={"Retry-After": "0"}), ok())
    async with client_for(local_server) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77", client_order_id="ord-9")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "throttled order_id=ord-9 attempt=1 status=429 delay_ms=0.000" in messages
    assert not [r for r in caplog.records if r.levelno == logging.DEBUG]


async def test_nothing_is_watched_when_nobody_listens(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hook, no OpenTelemetry, logging above INFO: no watch, no event (calls and bulk)."""
    caplog.set_level(logging.WARNING, logger="aopay_async")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("watched although nobody listens")

    monkeypatch.setattr(Observer, "watch", forbidden)
    monkeypatch.setattr(Observer, "emit", forbidden)
    local_server.reply(status(503), ok())
    async with client_for(local_server) as client:
        assert client._observer.otel is None
        await client.get_credit_history(cibil_id="SYNCIBIL77")
        results = [r async for r in client.bulk_credit_history(["SYNCIBIL77", "SYNCIBIL78"])]
    assert all(r.ok for r in results)


# -- hooks -------------------------------------------------------------------------------


async def test_hooks_see_each_step_in_order(local_server: LocalServer) -> None:
    """Sync and async hooks both get every event of a call, in the order of the steps."""
    local_server.reply(status(503), ok())
    seen: list[EventKind] = []
    seen_async: list[EventKind] = []

    async def async_hook(event: Event) -> None:
        seen_async.append(event.kind)

    hooks = [lambda e: seen.append(e.kind), async_hook]
    async with client_for(local_server, rate_limit=100.0, burst=5, event_hooks=hooks) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77", client_order_id="ord-h")
    one_attempt = [
        EventKind.LIMITER_WAITED,
        EventKind.ATTEMPT_STARTED,
        EventKind.ATTEMPT_FINISHED,
    ]
    expected = [*one_attempt, EventKind.RETRY_SCHEDULED, *one_attempt]
    assert seen == expected
    assert seen_async == expected  # aclose() waited for the async hook's tasks


async def test_attempt_events_carry_the_outcome(local_server: LocalServer) -> None:
    """Finished attempts carry status, error, wire and wait times; retries why and how long."""
    local_server.reply(status(503), ok(delay=0.02))
    events: list[Event] = []
    async with client_for(local_server, event_hooks=[events.append]) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77", client_order_id="ord-e")
    finished = [e for e in events if e.kind is EventKind.ATTEMPT_FINISHED]
    assert [(e.attempt, e.status_code, e.error_type) for e in finished] == [
        (1, 503, "ServerError"),
        (2, 200, None),
    ]
    assert all(e.client_order_id == "ord-e" for e in events)
    assert finished[1].wire_seconds is not None
    assert finished[1].wire_seconds >= 0.015
    assert finished[1].reference == SOFT_REF
    (retry,) = [e for e in events if e.kind is EventKind.RETRY_SCHEDULED]
    assert (retry.attempt, retry.reason, retry.delay_seconds) == (2, "503", 0.0)


async def test_a_connection_failure_is_an_attempt_without_status(local_server: LocalServer) -> None:
    """An attempt that got no response finishes with no status and the connection error."""
    from _local_server import reset

    local_server.reply(reset(), ok())
    events: list[Event] = []
    async with client_for(local_server, event_hooks=[events.append]) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77")
    first = next(e for e in events if e.kind is EventKind.ATTEMPT_FINISHED)
    assert (first.status_code, first.error_type) == (None, "APIConnectionError")
    retry = next(e for e in events if e.kind is EventKind.RETRY_SCHEDULED)
    assert retry.reason == "APIConnectionError"


async def test_failing_hooks_are_logged_and_the_call_goes_on(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises (sync or async) is logged at WARNING; the call still succeeds."""
    caplog.set_level(logging.WARNING, logger="aopay_async")

    def broken(event: Event) -> None:
        raise RuntimeError("hook bug")

    async def broken_async(event: Event) -> None:
        raise KeyError("async hook bug")

    local_server.reply(ok())
    async with client_for(local_server, event_hooks=[broken, broken_async]) as client:
        history = await client.get_credit_history(cibil_id="SYNCIBIL77")
    assert history.soft_ref_id == SOFT_REF
    hook_records = [r for r in caplog.records if r.name == "aopay_async.hooks"]
    assert {r.levelno for r in hook_records} == {logging.WARNING}
    texts = [r.getMessage() for r in hook_records]
    assert any("broken raised on attempt_started" in t for t in texts)
    assert any("async event hook raised" in t for t in texts)
    assert len(hook_records) == 4  # two events (started, finished) x two hooks


@pytest.mark.parametrize("hooks", ["print", [1], 5, [print, None]])
def test_bad_event_hooks_are_refused(hooks: object) -> None:
    """``event_hooks`` must be an iterable of callables, checked before any I/O."""
    with pytest.raises(InvalidRequestError, match=r"event.hook"):
        AOPayClient(COMPANY, REGISTRATION, event_hooks=hooks)  # type: ignore[arg-type]


async def test_a_failed_call_reports_its_last_attempt(local_server: LocalServer) -> None:
    """A call that runs out of retries still reports each attempt, then raises as before."""
    local_server.reply(status(503))
    events: list[Event] = []
    async with client_for(local_server, max_retries=1, event_hooks=[events.append]) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_credit_history(cibil_id="SYNCIBIL77")
    assert caught.value.attempts == 2
    finished = [e for e in events if e.kind is EventKind.ATTEMPT_FINISHED]
    assert [e.attempt for e in finished] == [1, 2]
    assert [e.kind for e in events].count(EventKind.RETRY_SCHEDULED) == 1


# -- bulk --------------------------------------------------------------------------------


async def test_bulk_results_carry_wire_and_wait_separately(local_server: LocalServer) -> None:
    """Wire time is the server's delay; limiter wait is where the bucket held items back."""
    local_server.reply(ok(delay=0.03))
    async with client_for(local_server, rate_limit=10.0, burst=1) as client:
        results = [r async for r in client.bulk_credit_history(["A1", "A2", "A3"], concurrency=3)]
    assert all(r.ok for r in results)
    for r in results:
        assert r.wire_seconds >= 0.025
        assert r.wait_seconds >= 0.0
        assert r.wire_seconds + r.wait_seconds <= r.elapsed + 1e-3
    # Three items through a 10/s bucket of one token: the later two wait ~0.1 s and ~0.2 s.
    assert sum(r.wait_seconds for r in results) >= 0.2


async def test_bulk_items_are_events(local_server: LocalServer) -> None:
    """Each bulk item, invalid ones included, gives one ``bulk_item`` event with its outcome."""
    local_server.reply(ok())
    events: list[Event] = []
    async with client_for(local_server, event_hooks=[events.append]) as client:
        results = [r async for r in client.bulk_credit_history(["A1", 7, "A2"], ordered=True)]
    items = [e for e in events if e.kind is EventKind.BULK_ITEM]
    assert sorted(e.outcome or "" for e in items) == ["InvalidRequestError", "ok", "ok"]
    ok_items = [e for e in items if e.outcome == "ok"]
    assert {e.client_order_id for e in ok_items} == {
        r.request.client_order_id for r in results if r.ok
    }
    assert all(e.attempt == 1 and (e.wire_seconds or 0) > 0 for e in ok_items)


async def test_async_hooks_finish_before_aclose_returns(local_server: LocalServer) -> None:
    """An async hook runs beside the call; ``aclose()`` waits for it, so nothing is left pending."""
    local_server.reply(ok())
    done: list[str] = []

    async def slow_hook(event: Event) -> None:
        await asyncio.sleep(0.01)
        done.append(event.kind.value)

    async with client_for(local_server, event_hooks=[slow_hook]) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77")
    assert done.count("attempt_finished") == 1


@pytest.mark.parametrize(
    ("report", "level", "line"),
    [
        (
            lambda o: o.circuit_changed("closed", "open"),
            logging.INFO,
            "circuit_changed reason=closed state=open",
        ),
        (
            lambda o: o.budget_spent("ord-b", 2, ServerError("x", status_code=503)),
            logging.WARNING,
            "budget_spent order_id=ord-b attempt=2 reason=503",
        ),
        (
            lambda o: o.fallback_limiter(True, "RateLimiterError"),
            logging.WARNING,
            "fallback_limiter reason=RateLimiterError state=fallback",
        ),
    ],
)
def test_rare_events_are_logged_at_their_level(
    report: object, level: int, line: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Circuit changes at INFO; a spent budget and a fallback limiter at WARNING; hooks see them."""
    caplog.set_level(logging.DEBUG, logger="aopay_async")
    seen: list[Event] = []
    observer = Observer([seen.append])
    report(observer)  # type: ignore[operator]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(level, line)]
    assert len(seen) == 1


def test_a_fallback_giving_back_is_info_after_its_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The fallback taking over is a WARNING; the shared limiter back again is good news: INFO."""
    caplog.set_level(logging.DEBUG, logger="aopay_async")
    observer = Observer()
    observer.fallback_limiter(True, "ConnectionError")
    observer.fallback_limiter(False, "recovered")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "fallback_limiter reason=ConnectionError state=fallback"),
        (logging.INFO, "fallback_limiter reason=recovered state=primary"),
    ]
