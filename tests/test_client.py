"""AOPayClient end to end against a tiny local server: checks, retries, limits, lifecycle.

Each test scripts the server's answer per attempt (see _local_server) and reads what the server
saw: bodies, order ids, start times, handlers in flight. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from _data import COMPANY, REGISTRATION, SEED_401, SEED_GATEWAY, SEED_SUCCESS, SEED_TRUNCATED
from _local_server import LocalServer, hang, ok, reset, status
from aiohttp import web

from aopay_async import (
    AOPayClient,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    InvalidRequestError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)


def client_for(server: LocalServer, **options: Any) -> AOPayClient:
    """A client for *server*: no rate limit and tiny backoff unless the test says otherwise."""
    options.setdefault("rate_limit", None)
    options.setdefault("backoff_base", 0.01)
    return AOPayClient(COMPANY, REGISTRATION, base_url=server.url, **options)


@contextlib.contextmanager
def no_leaks() -> Iterator[None]:
    """Fail if anything inside warns of an unclosed session/connector or a resource leak.

    aiohttp reports an unclosed session both as a ResourceWarning and through the loop's
    exception handler, from ``__del__``: both are caught here, after a ``gc.collect()``.
    """
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(str(context.get("message"))))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    reports += [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not reports, reports


async def wait_for(predicate: Any, seconds: float = 5.0) -> None:
    """Poll *predicate* every 10 ms, for at most *seconds*."""
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def until_client_leaves(gone: asyncio.Event) -> Any:
    """A handler that answers nothing and sets *gone* once the client drops the connection."""

    async def handler(request: web.Request, number: int) -> web.StreamResponse:
        try:
            for _ in range(3000):  # 30 s at most
                transport = request.transport
                if transport is None or transport.is_closing():
                    break
                await asyncio.sleep(0.01)
        finally:
            gone.set()
        return web.Response(body=SEED_SUCCESS, content_type="application/json")

    return handler


async def tasks_left() -> set[asyncio.Task[Any]]:
    """The loop's tasks other than this one, once they had up to 2 s to finish."""
    current = asyncio.current_task()
    for _ in range(200):
        others = {t for t in asyncio.all_tasks() if t is not current}
        if not others:
            break
        await asyncio.sleep(0.01)
    return others


# -- argument and configuration checks, before any I/O -----------------------------------------


@pytest.mark.parametrize("argument", ["cibil_id", "client_order_id", "registration_id"])
@pytest.mark.parametrize(
    ("value", "says"),
    [("", "empty"), ("  ", "empty"), ("7" * 65, "65 characters"), ("ab\r\ncd", "control")],
    ids=["empty", "blank", "too-long", "control"],
)
async def test_bad_arguments_are_refused_before_any_io(
    local_server: LocalServer, argument: str, value: str, says: str
) -> None:
    """Empty, over-long or control-character ids: InvalidRequestError, nothing sent."""
    kwargs = {"cibil_id": "SYN0001", argument: value}
    async with client_for(local_server) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.get_credit_history(**kwargs)
    assert isinstance(info.value, ValueError)
    assert argument in str(info.value)
    assert says in str(info.value)
    if value.strip():
        assert value not in str(info.value)
    assert (info.value.attempts, info.value.client_order_id) == (0, None)
    assert local_server.seen == []


async def test_bad_argument_on_an_unopened_client_opens_nothing() -> None:
    """A refused call on a client never entered creates no session (nothing to close)."""
    client = AOPayClient(COMPANY, REGISTRATION, base_url="http://127.0.0.1:9")
    with no_leaks(), pytest.raises(InvalidRequestError):
        await client.get_credit_history(cibil_id="")
    assert client._transport is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("rate_limit", 0),
        ("rate_limit", -1.0),
        ("rate_limit", float("nan")),
        ("rate_limit", "10"),
        ("burst", 0),
        ("burst", 1.5),
        ("max_concurrency", 0),
        ("max_concurrency", True),
        ("max_retries", -1),
        ("timeout", 0),
        ("timeout", float("inf")),
        ("deadline", 0),
        ("deadline", -5),
        ("max_response_bytes", 0),
        ("backoff_base", -1),
    ],
)
def test_bad_options_are_refused_naming_the_option(option: str, value: object) -> None:
    """Every numeric option is checked at construction and the error names it."""
    with pytest.raises(InvalidRequestError, match=f"^{option} "):
        AOPayClient(COMPANY, REGISTRATION, **{option: value})


@pytest.mark.parametrize(
    ("argument", "kwargs"),
    [
        ("company_code", {"company_code": "", "registration_id": REGISTRATION}),
        ("company_code", {"company_code": "C\n1", "registration_id": REGISTRATION}),
        ("registration_id", {"company_code": COMPANY, "registration_id": "R" * 65}),
    ],
)
def test_bad_credentials_are_refused_naming_them(argument: str, kwargs: dict[str, str]) -> None:
    """Credentials get the same id checks; the message names the argument only."""
    with pytest.raises(InvalidRequestError, match=f"^{argument} ") as info:
        AOPayClient(**kwargs)
    assert "C\n1" not in str(info.value)


# -- credentials and base URL from the environment ---------------------------------------------


async def test_credentials_and_base_url_from_the_environment(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``AOPAY_COMPANY_CODE``, ``AOPAY_REGISTRATION_ID`` and ``AOPAY_BASE_URL`` are used."""
    monkeypatch.setenv("AOPAY_COMPANY_CODE", "CMP-ENV")
    monkeypatch.setenv("AOPAY_REGISTRATION_ID", "AOP-ENV")
    monkeypatch.setenv("AOPAY_BASE_URL", local_server.url)
    async with AOPayClient(rate_limit=None) as client:
        assert client.base_url == local_server.url
        await client.get_credit_history(cibil_id="SYN0001")
    body = local_server.seen[0].body
    assert (body["CompanyCode"], body["RegistrationID"]) == ("CMP-ENV", "AOP-ENV")


async def test_arguments_win_over_the_environment(
    local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Explicit credentials and base_url take precedence over the environment."""
    monkeypatch.setenv("AOPAY_COMPANY_CODE", "CMP-ENV")
    monkeypatch.setenv("AOPAY_REGISTRATION_ID", "AOP-ENV")
    monkeypatch.setenv("AOPAY_BASE_URL", "https://nowhere.invalid")
    async with client_for(local_server) as client:
        await client.get_credit_history(cibil_id="SYN0001")
    body = local_server.seen[0].body
    assert (body["CompanyCode"], body["RegistrationID"]) == (COMPANY, REGISTRATION)


@pytest.mark.parametrize(
    ("missing", "argument"),
    [("AOPAY_COMPANY_CODE", "company_code"), ("AOPAY_REGISTRATION_ID", "registration_id")],
)
def test_missing_credential_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, missing: str, argument: str
) -> None:
    """Without the argument or its variable, the error names both."""
    monkeypatch.setenv("AOPAY_COMPANY_CODE", "CMP-ENV")
    monkeypatch.setenv("AOPAY_REGISTRATION_ID", "AOP-ENV")
    monkeypatch.delenv(missing)
    with pytest.raises(InvalidRequestError) as info:
        AOPayClient()
    assert missing in str(info.value)
    assert argument in str(info.value)
    assert "CMP-ENV" not in str(info.value)
    assert "AOP-ENV" not in str(info.value)


def test_empty_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable set to "" is refused, and the message says which variable it was."""
    monkeypatch.setenv("AOPAY_COMPANY_CODE", "")
    monkeypatch.setenv("AOPAY_REGISTRATION_ID", "AOP-ENV")
    with pytest.raises(InvalidRequestError, match="AOPAY_COMPANY_CODE"):
        AOPayClient()


@pytest.mark.parametrize("variable", ["AOPAY_COMPANY_CODE", "AOPAY_REGISTRATION_ID"])
@pytest.mark.parametrize("padded", [" CMP1045 ", "CMP1045\n", "\tCMP1045"])
def test_padded_credential_from_the_environment_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, padded: str
) -> None:
    """Spaces or a line break around a credential variable are refused up front (not a bare 401)."""
    monkeypatch.setenv("AOPAY_COMPANY_CODE", "CMP-ENV")
    monkeypatch.setenv("AOPAY_REGISTRATION_ID", "AOP-ENV")
    monkeypatch.setenv(variable, padded)
    with pytest.raises(InvalidRequestError, match=f"{variable}.*spaces or a line break") as info:
        AOPayClient()
    assert "CMP1045" not in str(info.value)


@pytest.mark.parametrize(
    "bad", ["api.aopay.co.in", "ftp://api.aopay.co.in", "https://[::1", "http://api.aopay.co.in"]
)
def test_bad_base_url_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    """A bad ``AOPAY_BASE_URL`` is refused naming the variable, not only ``base_url``."""
    monkeypatch.setenv("AOPAY_BASE_URL", bad)
    with pytest.raises(InvalidRequestError, match="environment variable AOPAY_BASE_URL"):
        AOPayClient(COMPANY, REGISTRATION)


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``base_url`` or ``AOPAY_BASE_URL`` the client talks to the real host, over TLS."""
    monkeypatch.delenv("AOPAY_BASE_URL", raising=False)
    assert AOPayClient(COMPANY, REGISTRATION).base_url == "https://api.aopay.co.in"


@pytest.mark.parametrize(
    ("base_url", "allow_insecure_http", "accepted"),
    [
        ("https://api.aopay.co.in", False, True),
        ("https://white.label.test/prefix/", False, True),
        ("http://127.0.0.1:8080", False, True),
        ("http://127.9.9.9:8080", False, True),
        ("http://localhost:8080", False, True),
        ("http://[::1]:8080", False, True),
        ("http://api.aopay.co.in", False, False),
        ("http://10.0.0.5", False, False),
        ("http://localhost.attacker.test", False, False),
        ("http://api.aopay.co.in", True, True),
        ("ftp://api.aopay.co.in", True, False),
        ("api.aopay.co.in", False, False),
        ("https://", False, False),
        ("https://api.aopay.co.in?x=1", False, False),
        ("https://user:pw@api.aopay.co.in", False, False),
    ],
)
def test_plain_http_only_to_loopback_or_when_allowed(
    base_url: str, allow_insecure_http: bool, accepted: bool
) -> None:
    """Plain http would send the company code in clear: refused unless loopback or allowed."""
    if accepted:
        AOPayClient(
            COMPANY, REGISTRATION, base_url=base_url, allow_insecure_http=allow_insecure_http
        )
        return
    with pytest.raises(InvalidRequestError, match="base_url") as info:
        AOPayClient(
            COMPANY, REGISTRATION, base_url=base_url, allow_insecure_http=allow_insecure_http
        )
    assert COMPANY not in str(info.value)


def test_client_repr_shows_no_credentials() -> None:
    """The client's repr names its settings, never the company code or registration id."""
    text = repr(AOPayClient(COMPANY, REGISTRATION))
    assert COMPANY not in text
    assert REGISTRATION not in text
    assert "api.aopay.co.in" in text


# -- outcomes and what is retried --------------------------------------------------------------


async def test_success_decodes_the_history(local_server: LocalServer) -> None:
    """A 200 with the seed's body gives a CreditHistory; the server saw one GET."""
    async with client_for(local_server) as client:
        history = await client.get_credit_history(cibil_id="SYN0001", client_order_id="o-1")
    assert history.user_info.cibil_score == 770
    assert [s.method for s in local_server.seen] == ["GET"]
    assert local_server.order_ids == ["o-1"]


@pytest.mark.parametrize(
    "failure",
    [
        status(503),
        status(500),
        status(502, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
        status(504),
        status(408),
        status(429),
        reset(),
    ],
    ids=["503", "500", "html-502", "504", "408", "429", "reset"],
)
async def test_retryable_failures_are_retried_with_the_same_order_id(
    local_server: LocalServer, failure: Any
) -> None:
    """Two failures then success: three attempts, one ``client_order_id`` for all of them."""
    local_server.reply(failure, failure, ok())
    async with client_for(local_server) as client:
        history = await client.get_credit_history(cibil_id="SYN0001")
    assert history.user_info.cibil_score == 770
    assert len(local_server.seen) == 3
    assert len(set(local_server.order_ids)) == 1
    assert len(local_server.order_ids[0]) == 32
    assert len({s.raw for s in local_server.seen}) == 1  # byte-identical retries


async def test_exhausted_retries_raise_the_last_error_with_attempts_and_order_id(
    local_server: LocalServer,
) -> None:
    """Always 503 with ``max_retries=2``: three attempts, then ServerError saying so."""
    local_server.reply(status(503))
    async with client_for(local_server, max_retries=2) as client:
        with pytest.raises(ServerError) as info:
            await client.get_credit_history(cibil_id="SYN0001", client_order_id="ord-7")
    assert info.value.status_code == 503
    assert info.value.attempts == 3
    assert info.value.client_order_id == "ord-7"
    assert local_server.order_ids == ["ord-7"] * 3


async def test_generated_order_id_is_on_the_error(local_server: LocalServer) -> None:
    """Without a given id, the error carries the generated one that every attempt sent."""
    local_server.reply(reset())
    async with client_for(local_server, max_retries=1) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
    assert info.value.attempts == 2
    assert local_server.order_ids == [info.value.client_order_id] * 2


async def test_max_retries_zero_sends_once(local_server: LocalServer) -> None:
    """``max_retries=0``: one attempt, the error as it came."""
    local_server.reply(status(503))
    async with client_for(local_server, max_retries=0) as client:
        with pytest.raises(ServerError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
    assert info.value.attempts == 1
    assert len(local_server.seen) == 1


NOT_RETRIED: list[tuple[str, Any, type[Exception]]] = [
    ("401", status(401, b'{"responsecode": 401, "status": false, "message": "no"}'),
     AuthenticationError),
    ("403", status(403), AuthenticationError),
    ("401-shape-200", ok(SEED_401), AuthenticationError),
    ("400", status(400), APIStatusError),
    ("404", status(404), APIStatusError),
    ("gateway-207-200", ok(SEED_GATEWAY), APIResponseError),
    ("html-200", status(200, b"<html>maintenance</html>", content_type="text/html"),
     ResponseDecodeError),
    ("empty-200", ok(b""), ResponseDecodeError),
    ("seed-truncated-200", ok(SEED_TRUNCATED),
     ResponseDecodeError),
    ("wrong-kind-200", ok(SEED_SUCCESS.replace(b'"770"', b'"high"')), ResponseDecodeError),
]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "error"), [c[1:] for c in NOT_RETRIED], ids=[c[0] for c in NOT_RETRIED]
)
async def test_not_retried(local_server: LocalServer, answer: Any, error: type[Exception]) -> None:
    """Credentials, other 4xx, API failures and unreadable complete bodies: one attempt."""
    local_server.reply(answer, ok())
    async with client_for(local_server, max_retries=5) as client:
        with pytest.raises(error) as info:
            await client.get_credit_history(cibil_id="SYN0001", client_order_id="o-9")
    assert type(info.value) is error
    assert len(local_server.seen) == 1
    assert isinstance(info.value, APIStatusError | APIResponseError | ResponseDecodeError)
    assert (info.value.attempts, info.value.client_order_id) == (1, "o-9")


async def test_gateway_error_keeps_code_and_message(local_server: LocalServer) -> None:
    """The gateway's ``code 207`` with HTTP 200 keeps the API's code and description."""
    local_server.reply(ok(SEED_GATEWAY))
    async with client_for(local_server) as client:
        with pytest.raises(APIResponseError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
    assert (info.value.code, info.value.message) == ("207", "Amount is Requaired")


async def test_rate_limit_error_after_retries_carries_retry_after(
    local_server: LocalServer,
) -> None:
    """429s until the retries run out: RateLimitError with the server's Retry-After."""
    local_server.reply(status(429, headers={"Retry-After": "0"}))
    async with client_for(local_server, max_retries=2) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
    assert info.value.retry_after == 0.0
    assert info.value.attempts == 3


# -- Retry-After, deadline, timeouts -----------------------------------------------------------


async def test_retry_after_is_obeyed(local_server: LocalServer) -> None:
    """A 503 with ``Retry-After: 1`` makes the next attempt wait about a second, not the backoff."""
    local_server.reply(status(503, headers={"Retry-After": "1"}), ok())
    async with client_for(local_server, backoff_base=0.0) as client:
        await client.get_credit_history(cibil_id="SYN0001")
    first, second = (s.started for s in local_server.seen)
    assert second - first >= 0.95


async def test_retry_after_http_date_is_obeyed(local_server: LocalServer) -> None:
    """``Retry-After`` as an HTTP date in the past means "retry now", not the backoff.

    The backoff here would draw up to 1000 s (and so, mostly, give up at the 30 s deadline
    at once): only an obeyed Retry-After retries within a second or two.
    """
    local_server.reply(status(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), ok())
    async with client_for(
        local_server, backoff_base=1000.0, backoff_max=1000.0, deadline=30.0
    ) as client:
        await client.get_credit_history(cibil_id="SYN0001")
    first, second = (s.started for s in local_server.seen)
    assert second - first < 2.0


async def test_retry_after_past_the_deadline_fails_now_with_the_last_error(
    local_server: LocalServer,
) -> None:
    """Always 503 asking 10 s, deadline 2 s: fail at once with the ServerError, no sleeping."""
    local_server.reply(status(503, headers={"Retry-After": "10"}))
    loop = asyncio.get_running_loop()
    async with client_for(local_server, deadline=2.0) as client:
        began = loop.time()
        with pytest.raises(ServerError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
        elapsed = loop.time() - began
    assert elapsed < 1.5
    assert info.value.retry_after == 10.0
    assert info.value.attempts == 1
    assert len(local_server.seen) == 1


async def test_deadline_bounds_the_whole_retry_loop(local_server: LocalServer) -> None:
    """Resets forever with many retries allowed: the call still ends near its deadline.

    (No budget and no breaker: they would end it sooner; tests/test_resilience.py.)
    """
    local_server.reply(reset())
    loop = asyncio.get_running_loop()
    async with client_for(
        local_server,
        deadline=1.0,
        max_retries=1000,
        backoff_base=0.05,
        backoff_max=0.2,
        retry_budget=None,
        circuit_breaker=None,
    ) as client:
        began = loop.time()
        with pytest.raises(APIConnectionError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
        elapsed = loop.time() - began
    assert elapsed < 3.0
    assert 1 < info.value.attempts == len(local_server.seen)


async def test_attempt_timeout_is_cut_to_the_time_left(local_server: LocalServer) -> None:
    """``timeout=30`` but ``deadline=0.5``: the hanging attempt ends at the deadline."""
    local_server.reply(hang(30))
    loop = asyncio.get_running_loop()
    async with client_for(local_server, timeout=30, deadline=0.5) as client:
        began = loop.time()
        with pytest.raises(APITimeoutError, match="deadline") as info:
            await client.get_credit_history(cibil_id="SYN0001")
        elapsed = loop.time() - began
    assert 0.4 <= elapsed < 3.0
    assert info.value.attempts == 1


async def test_attempt_timeout_is_retried(local_server: LocalServer) -> None:
    """A timed-out attempt is retried; the next one succeeds."""
    local_server.reply(hang(30), ok())
    async with client_for(local_server, timeout=0.2, deadline=None) as client:
        history = await client.get_credit_history(cibil_id="SYN0001")
    assert history.user_info.cibil_score == 770
    assert len(local_server.seen) == 2
    assert len(set(local_server.order_ids)) == 1


async def test_attempt_timeouts_until_retries_run_out(local_server: LocalServer) -> None:
    """Every attempt times out: APITimeoutError after ``max_retries + 1`` attempts."""
    local_server.reply(hang(30))
    async with client_for(local_server, timeout=0.1, max_retries=2, deadline=None) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
    assert info.value.attempts == 3


async def test_deadline_while_waiting_for_the_limiter_sends_nothing(
    local_server: LocalServer,
) -> None:
    """A call whose deadline passes while it waits for a token sent nothing: attempts is 0."""
    async with client_for(local_server, rate_limit=0.5, burst=1, deadline=0.3) as client:
        await client.get_credit_history(cibil_id="SYN0001")  # takes the only token
        with pytest.raises(APITimeoutError, match="rate limiter") as info:
            await client.get_credit_history(cibil_id="SYN0002", client_order_id="o-2")
    assert len(local_server.seen) == 1
    assert info.value.attempts == 0
    assert info.value.client_order_id == "o-2"


# -- rate limit and concurrency ----------------------------------------------------------------


def most_in_window(starts: list[float], window: float) -> int:
    """The most start times in any closed window of *window* seconds."""
    ordered = sorted(starts)
    best, j = 0, 0
    for i, t in enumerate(ordered):
        j = max(j, i)
        while j + 1 < len(ordered) and ordered[j + 1] <= t + window:
            j += 1
        best = max(best, j - i + 1)
    return best


async def test_rate_limit_is_held_across_concurrent_calls(local_server: LocalServer) -> None:
    """Rate 20/s, burst 2, 30 calls at once: the server counts at most 2 + 20*T in any T s."""
    async with client_for(local_server, rate_limit=20, burst=2) as client:
        await asyncio.gather(*(client.get_credit_history(cibil_id="SYN0001") for _ in range(30)))
    starts = [s.started for s in local_server.seen]
    assert len(starts) == 30
    for window in (0.05, 0.1, 0.25, 0.5, 1.0):
        # +1: the server stamps arrival, which loop lateness can bunch by one slot.
        assert most_in_window(starts, window) <= 2 + 20 * window + 1, window


async def test_retries_take_tokens_too(local_server: LocalServer) -> None:
    """Every attempt, retries included, waits for a token: rate 5/s spaces them 0.2 s apart."""
    local_server.reply(status(503), status(503), ok())
    async with client_for(local_server, rate_limit=5, burst=1, backoff_base=0.0) as client:
        await client.get_credit_history(cibil_id="SYN0001")
    starts = [s.started for s in local_server.seen]
    assert len(starts) == 3
    assert all(b - a >= 0.18 for a, b in itertools.pairwise(starts))


async def test_max_concurrency_caps_attempts_in_flight(local_server: LocalServer) -> None:
    """``max_concurrency=3``: twelve slow calls at once, never more than 3 handlers running."""
    local_server.reply(ok(delay=0.1))
    async with client_for(local_server, max_concurrency=3) as client:
        await asyncio.gather(*(client.get_credit_history(cibil_id="SYN0001") for _ in range(12)))
    assert local_server.finished == 12
    assert local_server.peak_in_flight == 3


async def test_max_concurrency_holds_with_a_callers_bigger_pool(
    local_server: LocalServer,
) -> None:
    """A caller's session with a large pool does not lift the client's concurrency cap."""
    local_server.reply(ok(delay=0.1))
    async with (
        aiohttp.ClientSession() as session,
        client_for(local_server, max_concurrency=2, session=session) as client,
    ):
        await asyncio.gather(*(client.get_credit_history(cibil_id="SYN0001") for _ in range(8)))
    assert local_server.peak_in_flight == 2


# -- sessions and lifecycle --------------------------------------------------------------------


async def test_callers_session_is_used_and_never_closed(local_server: LocalServer) -> None:
    """``session=``: the client sends through it and leaves it open on close."""
    sent: list[str] = []

    async def on_start(session: Any, context: Any, params: Any) -> None:
        sent.append(params.method)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    with no_leaks():
        async with aiohttp.ClientSession(trace_configs=[trace]) as session:
            async with client_for(local_server, session=session) as client:
                await client.get_credit_history(cibil_id="SYN0001")
            await client.aclose()
            assert client.closed
            assert not session.closed
            async with session.get(local_server.url + "/api/AOP/CibilScore/GetCreditHistory"):
                pass  # still usable
    assert sent[0] == "GET"


async def test_closing_twice_is_harmless(local_server: LocalServer) -> None:
    """``aclose()`` after ``async with`` exit, or twice in a row, does nothing more."""
    with no_leaks():
        async with client_for(local_server) as client:
            await client.get_credit_history(cibil_id="SYN0001")
        await client.aclose()
        await client.aclose()
        never_opened = client_for(local_server)
        await never_opened.aclose()
        await never_opened.aclose()
    assert client.closed


async def test_client_works_without_async_with(local_server: LocalServer) -> None:
    """A client used directly opens lazily and ``aclose()`` closes what it opened."""
    with no_leaks():
        client = client_for(local_server)
        await client.get_credit_history(cibil_id="SYN0001")
        await client.aclose()


async def test_closed_client_refuses_calls(local_server: LocalServer) -> None:
    """A call on a closed client fails clearly instead of reopening a session."""
    client = client_for(local_server)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_credit_history(cibil_id="SYN0001")
    assert local_server.seen == []


async def test_client_made_outside_a_loop_works_inside_one(local_server: LocalServer) -> None:
    """The session is created in the running loop, so a client built earlier still works."""
    client = await asyncio.to_thread(client_for, local_server)
    with no_leaks():
        async with client:
            await client.get_credit_history(cibil_id="SYN0001")


async def test_leak_check_catches_an_unclosed_session() -> None:
    """The ``no_leaks`` helper really sees an unclosed aiohttp session."""

    def leak() -> None:
        with no_leaks():
            session = aiohttp.ClientSession()
            del session

    with pytest.raises(AssertionError, match="Unclosed"):
        leak()


async def test_every_error_path_leaves_nothing_unclosed(local_server: LocalServer) -> None:
    """Success, status errors, resets, decode errors and timeouts: no unclosed warning."""
    local_server.reply(ok(), status(503), reset(), ok(b"<html>"), hang(30))
    with no_leaks():
        async with client_for(local_server, max_retries=0, timeout=0.2) as client:
            for _ in range(5):
                with contextlib.suppress(APIConnectionError, APIStatusError, ResponseDecodeError):
                    await client.get_credit_history(cibil_id="SYN0001")
    assert len(local_server.seen) == 5


# -- cancellation ------------------------------------------------------------------------------


async def test_cancelling_a_call_leaves_no_task_or_connection(local_server: LocalServer) -> None:
    """Cancel mid-attempt: CancelledError, the connection is dropped, no task is left running.

    The client stays usable afterwards.
    """
    gone = asyncio.Event()
    local_server.reply(until_client_leaves(gone), ok())
    with no_leaks():
        async with client_for(local_server) as client:
            call = asyncio.create_task(client.get_credit_history(cibil_id="SYN0001"))
            await wait_for(lambda: len(local_server.seen) == 1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.wait_for(gone.wait(), timeout=5)  # the server saw the client leave
            assert await tasks_left() == set()
            history = await client.get_credit_history(cibil_id="SYN0001")
            assert history.user_info.cibil_score == 770
    assert len(local_server.seen) == 2


async def test_cancelling_during_backoff_is_prompt_and_not_retried(
    local_server: LocalServer,
) -> None:
    """Cancelled while sleeping before a retry: it stops at once and sends nothing more."""
    local_server.reply(status(503, headers={"Retry-After": "30"}))
    loop = asyncio.get_running_loop()
    with no_leaks():
        async with client_for(local_server, deadline=None) as client:
            call = asyncio.create_task(client.get_credit_history(cibil_id="SYN0001"))
            await wait_for(lambda: local_server.finished == 1)
            await asyncio.sleep(0.05)
            began = loop.time()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert loop.time() - began < 1.0
        # Only now: until the client closed, its idle keep-alive connection was legitimate.
        assert await tasks_left() == set()
    assert len(local_server.seen) == 1


async def test_cancelling_while_waiting_for_a_token(local_server: LocalServer) -> None:
    """Cancelled in the rate limiter: nothing sent, the slot and the concurrency slot freed."""
    with no_leaks():
        async with client_for(
            local_server, rate_limit=2, burst=1, max_concurrency=1, deadline=None
        ) as client:
            await client.get_credit_history(cibil_id="SYN0001")
            waiting = asyncio.create_task(client.get_credit_history(cibil_id="SYN0002"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert len(local_server.seen) == 1
            # The concurrency slot came back: a new call gets through (after its token).
            await asyncio.wait_for(client.get_credit_history(cibil_id="SYN0003"), timeout=5)
    assert len(local_server.seen) == 2


async def test_cancelling_the_whole_block_closes_the_session(local_server: LocalServer) -> None:
    """A task cancelled inside ``async with`` mid-call still closes the client's session."""
    gone = asyncio.Event()
    local_server.reply(until_client_leaves(gone))
    holder: list[AOPayClient] = []

    async def job() -> None:
        async with client_for(local_server) as client:
            holder.append(client)
            await client.get_credit_history(cibil_id="SYN0001")

    with no_leaks():
        task = asyncio.create_task(job())
        await wait_for(lambda: len(local_server.seen) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(gone.wait(), timeout=5)
        assert holder[0].closed
        del holder[:]
        assert await tasks_left() == set()


# -- a custom limiter --------------------------------------------------------------------------


class CountingLimiter:
    """A limiter that never waits and counts the tokens taken."""

    def __init__(self) -> None:
        self.taken = 0

    async def acquire(self) -> None:
        """Take one token."""
        self.taken += 1


async def test_custom_limiter_gives_a_token_to_every_attempt(local_server: LocalServer) -> None:
    """``limiter=``: each attempt, retries included, takes exactly one token before sending."""
    local_server.reply(status(503), reset(), ok())
    limiter = CountingLimiter()
    async with client_for(local_server, limiter=limiter) as client:
        await client.get_credit_history(cibil_id="SYN0001")
    assert limiter.taken == len(local_server.seen) == 3


def test_limiter_without_acquire_is_refused() -> None:
    """A ``limiter`` that does not speak the protocol is refused at construction."""
    with pytest.raises(InvalidRequestError, match="limiter"):
        AOPayClient(COMPANY, REGISTRATION, limiter=object())  # type: ignore[arg-type]


async def test_retry_attempt_timeout_is_cut_to_the_time_left(local_server: LocalServer) -> None:
    """After a quick 503, the hanging retry gets only what is left of the deadline."""
    local_server.reply(status(503), hang(30))
    loop = asyncio.get_running_loop()
    async with client_for(local_server, timeout=30, deadline=0.6, backoff_base=0.0) as client:
        began = loop.time()
        with pytest.raises(APITimeoutError, match="deadline") as info:
            await client.get_credit_history(cibil_id="SYN0001")
        elapsed = loop.time() - began
    assert 0.5 <= elapsed < 3.0
    assert info.value.attempts == 2
