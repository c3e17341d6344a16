"""The transport: the exact GET it sends, and how wire outcomes map to our errors.

aioresponses matches method and URL only, so a ``callback=`` checks the body and headers;
an unmatched call would look like a connection error, so these clients never retry (they
mock aiohttp, so they pin ``transport="aiohttp"``). Byte limits, resets and timeouts need a
real socket: they use the local server of _local_server, and run against BOTH transports
(the ``sender`` fixture): aiohttp's and the fast path, which must behave the same.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import types
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp
import pytest
from _data import COMPANY, REGISTRATION, SEED_SUCCESS
from _local_server import LocalServer, hang, ok, reset, status, stream
from aiohttp import web
from aioresponses import CallbackResult, aioresponses

from aopay_async import (
    AOPayClient,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseDecodeError,
    __version__,
)
from aopay_async._client import PATH
from aopay_async._fastpath import FastTransport
from aopay_async._transport import FAILURES, Transport, attempt_failure, create_session

BASE = "https://api.aopay.test"
URL = BASE + PATH
#: aioresponses patches aiohttp: clients under it must take the aiohttp path.
MOCKED: dict[str, Any] = {"transport": "aiohttp"}


class MockResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds ClientResponse without aiohttp 3.14's ``stream_writer``.

    (pnuckowski/aioresponses#289, no fixed release yet.) A response whose request is already
    sent only reads ``stream_writer.output_size``, so a stand-in with that one attribute fits.
    """

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


def answer(body: bytes = SEED_SUCCESS, status: int = 200) -> CallbackResult:
    """A mocked answer built with :class:`MockResponse`."""
    return CallbackResult(status=status, body=body, response_class=MockResponse)


class Sender(Protocol):
    """What the client needs of a transport (both implement it)."""

    async def send(
        self, body: bytes, attempt_timeout: float, *, exact: bool = False
    ) -> tuple[int, Any, bytes]: ...

    async def aclose(self) -> None: ...


Make = Callable[..., Sender]

#: The client's names for the two paths: "auto" is the fast path for a session it creates.
CLIENT_TRANSPORTS = ["aiohttp", "auto"]


@pytest.fixture(params=["aiohttp", "fast"])
async def sender(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    """Makes transports of one kind (made the way the client makes them); all closed at teardown."""
    made: list[Sender] = []

    def make(url: str, *, max_bytes: int = 10**6) -> Sender:
        one: Sender
        if request.param == "fast":
            one = FastTransport(url, max_connections=4, max_bytes=max_bytes, user_agent="test/1")
        else:
            one = Transport(create_session(4), url, max_bytes=max_bytes, user_agent="test/1")
        made.append(one)
        return one

    try:
        yield make
    finally:
        for one in made:
            await one.aclose()


# -- the exact request, checked with aioresponses ----------------------------------------------


async def test_client_sends_the_documented_get_with_a_json_body() -> None:
    """One GET to the path, the body's four fields in the documented order, JSON headers."""
    seen: list[dict[str, Any]] = []

    def check(url: Any, **kwargs: Any) -> CallbackResult:
        seen.append(kwargs)
        return answer()

    with aioresponses() as mocked:
        mocked.get(URL, callback=check)
        async with AOPayClient(
            COMPANY, REGISTRATION, base_url=BASE, max_retries=0, **MOCKED
        ) as client:
            history = await client.get_credit_history(cibil_id="SYN0001", client_order_id="o-1")
    assert history.user_info.cibil_score == 770
    assert len(seen) == 1
    assert seen[0]["data"] == (
        b'{"client_order_id":"o-1","cibil_id":"SYN0001",'
        + f'"RegistrationID":"{REGISTRATION}","CompanyCode":"{COMPANY}"}}'.encode()
    )
    headers = seen[0]["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == f"aopay-async/{__version__}"
    assert seen[0]["allow_redirects"] is False


async def test_registration_id_override_goes_in_the_body() -> None:
    """A per-call ``registration_id`` replaces the client's in that call's body only."""
    bodies: list[dict[str, str]] = []

    def check(url: Any, **kwargs: Any) -> CallbackResult:
        bodies.append(json.loads(kwargs["data"]))
        return answer()

    with aioresponses() as mocked:
        mocked.get(URL, callback=check, repeat=True)
        async with AOPayClient(
            COMPANY, REGISTRATION, base_url=BASE, max_retries=0, **MOCKED
        ) as client:
            await client.get_credit_history(cibil_id="SYN0001", registration_id="AOP-999")
            await client.get_credit_history(cibil_id="SYN0001")
    assert [b["RegistrationID"] for b in bodies] == ["AOP-999", REGISTRATION]
    assert all(b["CompanyCode"] == COMPANY for b in bodies)


async def test_generated_order_ids_differ_per_call() -> None:
    """Without a ``client_order_id``, each call sends a fresh 32-hex one."""
    ids: list[str] = []

    def check(url: Any, **kwargs: Any) -> CallbackResult:
        ids.append(json.loads(kwargs["data"])["client_order_id"])
        return answer()

    with aioresponses() as mocked:
        mocked.get(URL, callback=check, repeat=True)
        async with AOPayClient(
            COMPANY, REGISTRATION, base_url=BASE, max_retries=0, **MOCKED
        ) as client:
            for _ in range(5):
                await client.get_credit_history(cibil_id="SYN0001")
    assert len(set(ids)) == 5
    assert all(len(i) == 32 for i in ids)


async def test_base_url_path_prefix_is_kept() -> None:
    """A white-label base URL with a path prefix gets the API path appended to it."""
    with aioresponses() as mocked:
        mocked.get(
            "https://white.label.test/gw/v2" + PATH, body=SEED_SUCCESS, response_class=MockResponse
        )
        async with AOPayClient(
            COMPANY,
            REGISTRATION,
            base_url="https://white.label.test/gw/v2/",
            max_retries=0,
            transport="aiohttp",
        ) as client:
            await client.get_credit_history(cibil_id="SYN0001")


async def test_unmatched_mock_is_a_connection_error() -> None:
    """aioresponses answers an unknown URL with a connection error: ours maps it, once."""
    with aioresponses():
        async with AOPayClient(
            COMPANY, REGISTRATION, base_url=BASE, max_retries=0, **MOCKED
        ) as client:
            with pytest.raises(APIConnectionError) as info:
                await client.get_credit_history(cibil_id="SYN0001")
    assert info.value.attempts == 1


# -- transport outcomes on a real socket -------------------------------------------------------


async def test_send_returns_status_headers_and_body(
    local_server: LocalServer, sender: Make
) -> None:
    """A complete answer comes back as (status, headers, bytes), whatever the status."""
    local_server.reply(status(418, b"teapot", headers={"X-Thing": "1"}, content_type="text/plain"))
    got_status, headers, body = await sender(local_server.url + PATH).send(b"{}", 5)
    assert (got_status, body) == (418, b"teapot")
    assert headers["X-Thing"] == "1"
    assert local_server.seen[0].method == "GET"
    assert local_server.seen[0].raw == b"{}"
    assert local_server.seen[0].headers["Content-Type"] == "application/json"


async def test_redirect_is_not_followed(local_server: LocalServer, sender: Make) -> None:
    """A 3xx comes back as is: the body (with the company code) goes to no other host."""
    local_server.reply(status(302, b"", headers={"Location": "http://127.0.0.2:9/steal"}))
    got_status, _, _ = await sender(local_server.url + PATH).send(b"{}", 5)
    assert got_status == 302
    assert len(local_server.seen) == 1


async def test_refused_connection_is_api_connection_error(sender: Make) -> None:
    """Nothing listening: APIConnectionError, not a timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(APIConnectionError) as info:
        await sender(f"http://127.0.0.1:{port}{PATH}").send(b"{}", 5)
    assert not isinstance(info.value, APITimeoutError)
    assert isinstance(info.value.__cause__, aiohttp.ClientError)


async def test_reset_is_api_connection_error(local_server: LocalServer, sender: Make) -> None:
    """A TCP reset before the answer is an APIConnectionError."""
    local_server.reply(reset())
    with pytest.raises(APIConnectionError):
        await sender(local_server.url + PATH).send(b"{}", 5)


async def test_reset_is_not_resent_behind_our_back(local_server: LocalServer, sender: Make) -> None:
    """One send, one request, even after a reset.

    aiohttp resends an idempotent GET once after a reset or disconnect; that hidden resend
    would skip the rate limiter and the attempt count, so the client's session turns it off.
    """
    local_server.reply(reset())
    with pytest.raises(APIConnectionError):
        await sender(local_server.url + PATH).send(b"{}", 5)
    await asyncio.sleep(0.05)
    assert len(local_server.seen) == 1


async def test_cut_body_is_api_connection_error(local_server: LocalServer, sender: Make) -> None:
    """Fewer bytes than Content-Length promised, then close: no complete response."""

    async def cut(request: web.Request, number: int) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(SEED_SUCCESS)
        await response.prepare(request)
        await response.write(SEED_SUCCESS[:100])
        assert request.transport is not None
        request.transport.close()
        return response

    local_server.reply(cut)
    with pytest.raises(APIConnectionError) as info:
        await sender(local_server.url + PATH).send(b"{}", 5)
    assert not isinstance(info.value, APITimeoutError)
    # aiohttp says "<ContentLengthError: 400, ...>": no HTTP 400 was received, so no bare 400.
    assert "ContentLengthError" in str(info.value)
    assert "400" not in str(info.value)


@pytest.mark.parametrize("exact", [False, True])
async def test_slow_answer_is_api_timeout_error(
    local_server: LocalServer, sender: Make, exact: bool
) -> None:
    """An attempt longer than its timeout is an APITimeoutError, never early, at most a tick late.

    The cheap (coarse) timeout may fire up to one TIMEOUT_TICK late; the exact one is what
    the client uses near a deadline. Neither fires before the timeout.
    """
    local_server.reply(hang(30))
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(APITimeoutError, match="timed out"):
        await sender(local_server.url + PATH).send(b"{}", 0.2, exact=exact)
    took = loop.time() - began
    assert took >= 0.2
    assert took < 5  # the attempt's timeout, not the hang's 30 s


@pytest.mark.parametrize(
    ("exc", "kind", "message"),
    [
        (
            TimeoutError(),
            APITimeoutError,
            "the attempt timed out after 0.25s (connect to last byte)",
        ),
        # aiohttp's own timeout is a ClientError and a TimeoutError: a timeout it is
        (
            aiohttp.ServerTimeoutError("read"),
            APITimeoutError,
            "the attempt timed out after 0.25s (connect to last byte)",
        ),
        (
            aiohttp.ServerDisconnectedError(),
            APIConnectionError,
            "no complete response from the API: ServerDisconnectedError: Server disconnected",
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            APIConnectionError,
            "no complete response from the API: ConnectionResetError: "
            "[Errno 104] Connection reset by peer",
        ),
        # the parser's internal code reads like an HTTP status: it is named for what it is
        (
            aiohttp.ClientPayloadError(
                "Response payload is not completed: <ContentLengthError: 400, message='x'>"
            ),
            APIConnectionError,
            "no complete response from the API: ClientPayloadError: Response payload is not "
            "completed: <ContentLengthError (a broken response, not an HTTP status), message='x'>",
        ),
    ],
)
def test_attempt_failures_map_to_our_errors(
    exc: BaseException, kind: type[Exception], message: str
) -> None:
    """One mapping for both transports: a timeout is APITimeoutError, any other failure an
    APIConnectionError naming its cause; each is one of the failures the transports catch."""
    assert isinstance(exc, FAILURES)
    error = attempt_failure(exc, 0.25)
    assert type(error) is kind
    assert str(error) == message


async def test_a_timeout_reads_the_same_on_both_paths(
    local_server: LocalServer, sender: Make
) -> None:
    """The timed-out attempt's error is word for word the same on either transport."""
    local_server.reply(hang(30))
    with pytest.raises(APITimeoutError) as info:
        await sender(local_server.url + PATH).send(b"{}", 0.1)
    assert str(info.value) == "the attempt timed out after 0.1s (connect to last byte)"
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_a_timed_out_attempt_leaves_no_cancel_behind(
    local_server: LocalServer, sender: Make
) -> None:
    """After a timeout the task is not left cancelling: the next await runs normally."""
    local_server.reply(hang(30))
    with pytest.raises(APITimeoutError):
        await sender(local_server.url + PATH).send(b"{}", 0.1)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0.01)  # would raise CancelledError if a cancel were still pending


# -- max_response_bytes ------------------------------------------------------------------------


async def test_body_at_the_limit_is_read(local_server: LocalServer, sender: Make) -> None:
    """A body of exactly ``max_bytes`` passes, with and without Content-Length."""
    payload = b"x" * 5000
    local_server.reply(ok(payload), stream([payload[:2500], payload[2500:]]))
    for _ in range(2):
        _, _, body = await sender(local_server.url + PATH, max_bytes=5000).send(b"{}", 5)
        assert body == payload


async def test_over_large_content_length_is_refused_before_reading(
    local_server: LocalServer, sender: Make
) -> None:
    """A Content-Length over the limit fails at the headers, without waiting for the body."""
    body_started = asyncio.Event()

    async def huge(request: web.Request, number: int) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 50 * 1024 * 1024
        await response.prepare(request)
        body_started.set()
        await response.write(b"{" + b" " * 1000)
        await asyncio.sleep(30)  # the rest would never come
        return response

    local_server.reply(huge)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(ResponseDecodeError, match="max_response_bytes"):
        await sender(local_server.url + PATH, max_bytes=100_000).send(b"{}", 20)
    assert loop.time() - began < 5
    assert body_started.is_set()


async def test_over_large_chunked_body_is_refused_while_streaming(
    local_server: LocalServer, sender: Make
) -> None:
    """Without Content-Length, reading stops once the limit is passed, long before the end."""
    chunk = b" " * 65536
    count = 800  # 50 MiB in all
    sent = [0]

    async def endless(request: web.Request, number: int) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(count):
                await response.write(chunk)
                sent[0] += len(chunk)
        except ConnectionError:
            pass
        return response

    local_server.reply(endless)
    with pytest.raises(ResponseDecodeError, match="max_response_bytes"):
        await sender(local_server.url + PATH, max_bytes=200_000).send(b"{}", 20)
    await asyncio.sleep(0.05)
    assert sent[0] < count * len(chunk)


async def test_gzip_bomb_is_refused_by_its_decompressed_size(
    local_server: LocalServer, sender: Make
) -> None:
    """A small compressed body that inflates past the limit is refused as it inflates."""
    bomb = gzip.compress(b" " * (20 * 1024 * 1024))
    assert len(bomb) < 100_000
    local_server.reply(
        status(200, bomb, headers={"Content-Encoding": "gzip"}),
        status(200, gzip.compress(SEED_SUCCESS), headers={"Content-Encoding": "gzip"}),
    )
    sender = sender(local_server.url + PATH, max_bytes=1_000_000)
    with pytest.raises(ResponseDecodeError, match="max_response_bytes"):
        await sender.send(b"{}", 20)
    _, _, body = await sender.send(b"{}", 20)
    assert body == SEED_SUCCESS


@pytest.mark.parametrize("kind", CLIENT_TRANSPORTS)
async def test_client_maps_over_large_body_without_retrying(
    local_server: LocalServer, kind: str
) -> None:
    """Through the client, a too-large body is a ResponseDecodeError after one attempt."""
    local_server.reply(ok(b" " * 5000))
    async with AOPayClient(
        COMPANY, REGISTRATION, base_url=local_server.url, max_response_bytes=1000, transport=kind
    ) as client:
        with pytest.raises(ResponseDecodeError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
    assert info.value.attempts == 1
    assert len(local_server.seen) == 1


@pytest.mark.parametrize("kind", CLIENT_TRANSPORTS)
async def test_status_error_through_the_client_keeps_the_headers(
    local_server: LocalServer, kind: str
) -> None:
    """APIStatusError.headers are the response's, readable after the connection is gone."""
    local_server.reply(status(404, b"{}", headers={"X-Trace": "t-1"}))
    async with AOPayClient(
        COMPANY, REGISTRATION, base_url=local_server.url, transport=kind
    ) as client:
        with pytest.raises(APIStatusError) as info:
            await client.get_credit_history(cibil_id="SYN0001")
    assert info.value.status_code == 404
    assert info.value.headers["X-Trace"] == "t-1"


async def test_extra_headers_are_sent_with_the_attempt(
    local_server: LocalServer, sender: Make
) -> None:
    """``headers=`` (the trace context) goes out besides the client's own headers."""
    one = sender(local_server.url + PATH)
    await one.send(b"{}", 5, headers={"traceparent": "00-abc-def-01"})
    await one.send(b"{}", 5)
    assert local_server.seen[0].headers["traceparent"] == "00-abc-def-01"
    assert local_server.seen[0].headers["Content-Type"] == "application/json"
    assert "traceparent" not in local_server.seen[1].headers


@pytest.mark.parametrize("header", [("x-a", "1\r\nX-Forged: 1"), ("x-a\nX-Forged", "1")])
async def test_a_header_with_a_line_break_is_refused(
    local_server: LocalServer, sender: Make, header: tuple[str, str]
) -> None:
    """No header can smuggle in another one: refused before anything is sent."""
    with pytest.raises(ValueError, match="header"):
        await sender(local_server.url + PATH).send(b"{}", 5, headers=dict([header]))
    assert local_server.seen == []
