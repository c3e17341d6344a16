"""The fast path's own guarantees: wire bytes, pooling, stale connections, TLS, parsing.

Behaviour both transports share is pinned in test_transport.py (parametrized over both);
here are the things only a hand-written pool can get wrong. The servers are raw asyncio
streams on 127.0.0.1 scripted per request, so a test controls every byte and every FIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import trustme
from _data import COMPANY, REGISTRATION, SEED_SUCCESS
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async import (
    AOPayClient,
    APIConnectionError,
    APITimeoutError,
    ResponseDecodeError,
    _fastconn,
)
from aopay_async._client import PATH
from aopay_async._fastconn import _Connection
from aopay_async._fastpath import FastTransport
from aopay_async._transport import Transport

#: A request handler: gets the request head and body, writes whatever it likes.
Script = Callable[[bytes, bytes, asyncio.StreamWriter, int], Awaitable[None]]


def response(
    body: bytes = SEED_SUCCESS, *, status: str = "200 OK", headers: tuple[str, ...] = ()
) -> bytes:
    """A complete HTTP/1.1 response with Content-Length."""
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(*parts: bytes, headers: tuple[str, ...] = ()) -> bytes:
    """A complete chunked HTTP/1.1 200 response."""
    head = ("\r\n".join(["HTTP/1.1 200 OK", "Transfer-Encoding: chunked", *headers])).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return head + b"\r\n\r\n" + chunks + b"0\r\n\r\n"


def answer(raw: bytes, *, close: bool = False) -> Script:
    """Write *raw* as the answer; then close the connection if *close*."""

    async def script(head: bytes, body: bytes, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return script


@dataclass
class RawServer:
    """An HTTP/1.1-ish server on 127.0.0.1 that runs ``scripts[i]`` for request i."""

    scripts: list[Script] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    peak_open: int = 0
    url: str = ""
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.heads.append(head)
                self.bodies.append(body)
                n = len(self.heads)
                script = self.scripts[min(n, len(self.scripts)) - 1]
                await script(head, body, writer, n)
                if writer.is_closing():
                    return
        finally:
            self.open_now -= 1
            writer.close()


@contextlib.asynccontextmanager
async def raw_server(
    *scripts: Script, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    """Run a :class:`RawServer`; at exit close it and every connection it holds."""
    state = RawServer(scripts=list(scripts))
    server = await asyncio.start_server(state.serve, host, 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    state.url = f"{'https' if ssl_context else 'http'}://{shown}:{port}{PATH}"
    try:
        yield state
    finally:
        server.close()
        for writer in state.writers:
            writer.transport.abort()
        await server.wait_closed()


@pytest.fixture
async def pools() -> AsyncIterator[Callable[..., FastTransport]]:
    """Makes FastTransports (max 4 connections unless told); all closed at teardown."""
    made: list[FastTransport] = []

    def make(url: str, **options: Any) -> FastTransport:
        options.setdefault("max_connections", 4)
        options.setdefault("max_bytes", 10**6)
        options.setdefault("user_agent", "test/1")
        pool = FastTransport(url, **options)
        made.append(pool)
        return pool

    try:
        yield make
    finally:
        for pool in made:
            await pool.aclose()


# -- the request on the wire -----------------------------------------------------------------


async def test_request_bytes_are_the_documented_get(pools: Callable[..., FastTransport]) -> None:
    """Request line, Host with the port, JSON headers, Content-Length, the body; nothing else."""
    async with raw_server(answer(response())) as server:
        status, _, body = await pools(server.url).send(b'{"a":1}', 5)
    assert (status, body) == (200, SEED_SUCCESS)
    port = server.url.split(":")[2].split("/")[0]
    assert server.heads[0].decode().split("\r\n") == [
        f"GET {PATH} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        "Accept: application/json",
        "User-Agent: test/1",
        "Content-Length: 7",
        "",
        "",
    ]
    assert server.bodies == [b'{"a":1}']


async def test_requests_share_one_keep_alive_connection(
    pools: Callable[..., FastTransport],
) -> None:
    """Sequential sends reuse one connection."""
    async with raw_server(answer(response())) as server:
        pool = pools(server.url)
        for _ in range(5):
            await pool.send(b"{}", 5)
    assert len(server.heads) == 5
    assert server.connections == 1


async def test_pool_never_opens_more_than_max_connections(
    pools: Callable[..., FastTransport],
) -> None:
    """Twelve concurrent sends through a pool of 3: at most 3 connections, all answered."""

    async def slow(head: bytes, body: bytes, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(0.02)
        writer.write(response())

    async with raw_server(slow) as server:
        pool = pools(server.url, max_connections=3)
        results = await asyncio.gather(*(pool.send(b"{}", 10) for _ in range(12)))
    assert [r[0] for r in results] == [200] * 12
    assert server.peak_open <= 3
    assert server.connections <= 3


# -- response framing ------------------------------------------------------------------------

FRAMINGS = [
    # (what the server writes, then closes?, the body expected)
    (response(b"hello"), False, b"hello"),
    (chunked(b"hel", b"lo"), False, b"hello"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello", True, b"hello"),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"hello"), False, b"hello"),
    (response(b"", status="204 No Content"), False, b""),
    (response(gzip.compress(b"hello"), headers=("Content-Encoding: gzip",)), False, b"hello"),
    (response(zlib.compress(b"hello"), headers=("Content-Encoding: deflate",)), False, b"hello"),
    (
        response(zlib.compress(b"hello")[2:-4], headers=("Content-Encoding: deflate",)),
        False,
        b"hello",
    ),
    (chunked(gzip.compress(b"hello"), headers=("Content-Encoding: gzip",)), False, b"hello"),
    (response(b"as is", headers=("Content-Encoding: identity",)), False, b"as is"),
]


@pytest.mark.parametrize(("raw", "close", "expected"), FRAMINGS)
async def test_each_framing_gives_the_body(
    pools: Callable[..., FastTransport], raw: bytes, close: bool, expected: bytes
) -> None:
    """Content-Length, chunked, until-close, 1xx first, 204, gzip/deflate sent unasked."""
    async with raw_server(answer(raw, close=close)) as server:
        _, _, body = await pools(server.url).send(b"{}", 5)
    assert body == expected
    assert b"accept-encoding" not in server.heads[0].lower()


BROKEN = [
    # (what the server writes before it closes, why it is not a complete response)
    (b"", "no byte at all"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", "short of Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "chunked, cut"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "cut in the headers"),
    (b"SMTP ready\r\n\r\n", "not HTTP"),
    (response(b"garbage", headers=("Content-Encoding: gzip",)), "corrupt gzip"),
]


@pytest.mark.parametrize(("raw", "why"), BROKEN)
async def test_no_complete_response_is_a_connection_error(
    pools: Callable[..., FastTransport], raw: bytes, why: str
) -> None:
    """Each way of not answering is an APIConnectionError caused by an aiohttp.ClientError."""
    async with raw_server(answer(raw, close=True)) as server:
        pool = pools(server.url)
        with pytest.raises(APIConnectionError, match="no complete response") as info:
            await pool.send(b"{}", 5)
    assert not isinstance(info.value, APITimeoutError)
    assert isinstance(info.value.__cause__, aiohttp.ClientError), why
    assert pool.connections == 0


async def test_connection_close_is_honoured(pools: Callable[..., FastTransport]) -> None:
    """A response with ``Connection: close`` is used, then its connection is not reused."""
    async with raw_server(answer(response(headers=("Connection: close",)))) as server:
        pool = pools(server.url)
        for _ in range(3):
            await pool.send(b"{}", 5)
    assert server.connections == 3


async def test_bytes_after_the_response_drop_the_connection(
    pools: Callable[..., FastTransport],
) -> None:
    """A second, unrequested response after ours: ours is kept, the connection is not."""
    async with raw_server(answer(response(b"one") + response(b"two"))) as server:
        pool = pools(server.url)
        _, _, first = await pool.send(b"{}", 5)
        await asyncio.sleep(0.05)
        _, _, second = await pool.send(b"{}", 5)
    assert (first, second) == (b"one", b"one")
    assert server.connections == 2


# -- stale connections and idle timeouts -------------------------------------------------------


async def test_connection_closed_while_idle_is_dropped_before_use(
    pools: Callable[..., FastTransport],
) -> None:
    """The server closes an idle connection: the next send opens a new one, sends once."""
    async with raw_server(answer(response(), close=True), answer(response())) as server:
        pool = pools(server.url)
        await pool.send(b"{}", 5)
        await asyncio.sleep(0.05)  # the loop sees the FIN
        status, _, _ = await pool.send(b"{}", 5)
    assert status == 200
    assert len(server.heads) == 2
    assert server.connections == 2


async def test_fin_the_loop_has_not_seen_yet_is_found_by_peeking(
    pools: Callable[..., FastTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIN that arrived while the loop was busy is found by polling the socket, before use.

    The loop is blocked (time.sleep) while the server's FIN arrives, so the protocol has
    not been told; the pool must still not write the request into the dead connection.
    """
    monkeypatch.setattr(_fastconn, "_PEEK_AFTER", 0.0)
    closed = asyncio.Event()

    async def then_close(head: bytes, body: bytes, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(response())
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        closed.set()

    async with raw_server(then_close, answer(response())) as server:
        pool = pools(server.url)
        await pool.send(b"{}", 5)
        await closed.wait()  # the server-side close is queued; the FIN may not be read yet
        time.sleep(0.1)  # noqa: ASYNC251 - block the loop: the FIN reaches the socket only
        status, _, _ = await pool.send(b"{}", 5)
    assert status == 200
    assert len(server.heads) == 2


async def test_idle_connections_close_after_the_keep_alive_timeout(
    pools: Callable[..., FastTransport],
) -> None:
    """A connection idle longer than ``keepalive_timeout`` is closed by the pool."""
    async with raw_server(answer(response())) as server:
        pool = pools(server.url, keepalive_timeout=0.1)
        await pool.send(b"{}", 5)
        assert pool.connections == 1
        for _ in range(100):
            if not pool.connections:
                break
            await asyncio.sleep(0.05)
        assert pool.connections == 0
        for _ in range(100):
            if not server.open_now:
                break
            await asyncio.sleep(0.05)
        assert server.open_now == 0


# -- cancellation and closing ----------------------------------------------------------------


async def test_cancelled_attempt_never_returns_its_connection(
    pools: Callable[..., FastTransport],
) -> None:
    """Cancelled mid-body: that connection is closed, the next send gets a fresh one."""

    async def half(head: bytes, body: bytes, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(response()[:200])
        await asyncio.sleep(30)

    async with raw_server(half, answer(response())) as server:
        pool = pools(server.url)
        task = asyncio.create_task(pool.send(b"{}", 30))
        await asyncio.sleep(0.2)  # the request is in, half the answer is out
        assert server.heads
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.connections == 0
        _, _, body = await pool.send(b"{}", 5)
    assert body == SEED_SUCCESS
    assert server.connections == 2


async def test_timed_out_attempt_closes_its_connection(
    pools: Callable[..., FastTransport],
) -> None:
    """A late answer to a timed-out attempt can never be read as the next one's answer."""

    async def late(head: bytes, body: bytes, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(0.3)
        writer.write(response(b"late"))

    async with raw_server(late, answer(response(b"fresh"))) as server:
        pool = pools(server.url)
        with pytest.raises(APITimeoutError):
            await pool.send(b"{}", 0.1)
        await asyncio.sleep(0.4)
        _, _, body = await pool.send(b"{}", 5)
    assert body == b"fresh"


async def test_aclose_leaves_no_socket_behind(pools: Callable[..., FastTransport]) -> None:
    """After aclose every connection has seen connection_lost; the pool takes no more sends."""
    async with raw_server(answer(response())) as server:
        pool = pools(server.url)
        await asyncio.gather(*(pool.send(b"{}", 5) for _ in range(4)))
        conns = list(pool._all)
        assert conns
        await pool.aclose()
        assert pool.connections == 0
        assert all(conn.lost.done() for conn in conns)
        with pytest.raises(APIConnectionError):
            await pool.send(b"{}", 5)


async def test_body_cap_without_content_length_stops_reading(
    pools: Callable[..., FastTransport],
) -> None:
    """Chunked past the cap: refused as ResponseDecodeError, the connection dropped."""
    big = chunked(*([b"x" * 1000] * 50))
    async with raw_server(answer(big)) as server:
        pool = pools(server.url, max_bytes=10_000)
        with pytest.raises(ResponseDecodeError, match="max_response_bytes"):
            await pool.send(b"{}", 5)
        assert pool.connections == 0
        assert server.heads


# -- DNS, IPv6 and TLS -------------------------------------------------------------------------


async def test_a_name_is_resolved_by_the_loop(pools: Callable[..., FastTransport]) -> None:
    """``localhost`` resolves (happy eyeballs over whatever addresses it has)."""
    async with raw_server(answer(response())) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        status, _, _ = await pools(url).send(b"{}", 5)
    assert status == 200
    assert b"Host: localhost:" in server.heads[0]


def _ipv6_works() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_works(), reason="no IPv6 loopback here")
async def test_ipv6_literal(pools: Callable[..., FastTransport]) -> None:
    """An IPv6 literal URL connects, and the Host header carries the brackets."""
    async with raw_server(answer(response()), host="::1") as server:
        status, _, _ = await pools(server.url).send(b"{}", 5)
    assert status == 200
    assert b"Host: [::1]:" in server.heads[0]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority made for this test run."""
    return trustme.CA()


def _server_context(ca: trustme.CA, name: str, seen: list[str | None]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)

    def sni(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        seen.append(server_name)

    context.sni_callback = sni  # type: ignore[assignment]
    return context


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


TLS_CASES = [
    # (certificate name, trust the test CA?, expected outcome)
    ("localhost", True, "ok"),
    ("localhost", False, "CERTIFICATE_VERIFY_FAILED"),
    ("other.example", True, "CERTIFICATE_VERIFY_FAILED"),  # hostname mismatch
]


@pytest.mark.parametrize("kind", ["aiohttp", "fast"])
@pytest.mark.parametrize(("cert_name", "trusted", "outcome"), TLS_CASES)
async def test_tls_is_verified(
    ca: trustme.CA, kind: str, cert_name: str, trusted: bool, outcome: str
) -> None:
    """Verification stays on: an unknown CA or a wrong hostname fails; SNI is sent."""
    sni: list[str | None] = []
    context = _trusting(ca) if trusted else ssl.create_default_context()
    async with raw_server(
        answer(response()), ssl_context=_server_context(ca, cert_name, sni)
    ) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        sender: Any
        if kind == "fast":
            sender = FastTransport(
                url, max_connections=2, max_bytes=10**6, user_agent="t", ssl_context=context
            )
        else:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
            sender = Transport(session, url, max_bytes=10**6, user_agent="t")
        try:
            if outcome == "ok":
                status, _, body = await sender.send(b"{}", 5)
                assert (status, body) == (200, SEED_SUCCESS)
            else:
                with pytest.raises(APIConnectionError, match=outcome):
                    await sender.send(b"{}", 5)
        finally:
            await sender.aclose()
    assert sni[:1] == ["localhost"]


async def test_https_uses_the_default_verifying_context() -> None:
    """Without a context of its own, the pool verifies certificates and hostnames."""
    pool = FastTransport(
        "https://api.aopay.test/x", max_connections=1, max_bytes=10, user_agent="t"
    )
    try:
        assert pool._ssl is not None
        assert pool._ssl.verify_mode == ssl.CERT_REQUIRED
        assert pool._ssl.check_hostname
    finally:
        await pool.aclose()


# -- choosing the transport ------------------------------------------------------------------


async def _which(**options: Any) -> type:
    async with AOPayClient(COMPANY, REGISTRATION, base_url="http://127.0.0.1:9", **options) as c:
        transport = c._open()
        return type(transport)


async def test_the_client_picks_its_transport() -> None:
    """auto → fast for its own session; aiohttp when asked or when the caller brings a session."""
    assert await _which() is FastTransport
    assert await _which(transport="auto") is FastTransport
    assert await _which(transport="aiohttp") is Transport
    async with aiohttp.ClientSession() as session:
        assert await _which(session=session) is Transport
        assert not session.closed  # a caller's session is left open


@pytest.mark.parametrize("bad", ["fast", "httpx", "", None, 1])
def test_an_unknown_transport_is_refused(bad: object) -> None:
    """Only "auto" and "aiohttp" are accepted, before any I/O."""
    from aopay_async import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="transport"):
        AOPayClient(COMPANY, REGISTRATION, transport=bad)  # type: ignore[arg-type]


async def test_client_on_the_fast_path_end_to_end() -> None:
    """A client on the fast path against aiohttp.web: decoded history, one connection reused."""
    peers: set[object] = set()

    async def handle(request: web.Request) -> web.Response:
        peers.add(request.transport)
        return web.Response(body=SEED_SUCCESS, content_type="application/json")

    app = web.Application()
    app.router.add_get(PATH, handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with AOPayClient(
            COMPANY, REGISTRATION, base_url=f"http://127.0.0.1:{port}", rate_limit=None
        ) as client:
            for i in range(3):
                history = await client.get_credit_history(cibil_id=f"SYN{i}")
                assert history.user_info.cibil_score == 770
    finally:
        await runner.cleanup()
    assert len(peers) == 1


# -- the parser, fed any way the bytes may arrive ----------------------------------------------


class _FakePool:
    """Just what a _Connection reads from its pool."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._loop = loop

    def _forget(self, conn: object) -> None:
        pass


WIRES = [
    (response(SEED_SUCCESS), SEED_SUCCESS),
    (chunked(SEED_SUCCESS[:700], SEED_SUCCESS[700:]), SEED_SUCCESS),
    (response(gzip.compress(SEED_SUCCESS), headers=("Content-Encoding: gzip",)), SEED_SUCCESS),
    (chunked(zlib.compress(SEED_SUCCESS), headers=("Content-Encoding: deflate",)), SEED_SUCCESS),
]


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(WIRES), cuts=st.lists(st.integers(min_value=1), max_size=8))
def test_any_split_of_the_bytes_parses_the_same(case: tuple[bytes, bytes], cuts: list[int]) -> None:
    """However the response is split into reads, the status and body come out the same."""
    wire, expected = case
    loop = asyncio.new_event_loop()  # only for futures: nothing runs on it
    try:
        conn = _Connection(_FakePool(loop, 10**6))  # type: ignore[arg-type]
        waiter: asyncio.Future[Any] = loop.create_future()
        conn.waiter = waiter
        points = sorted({c % len(wire) for c in cuts} | {0, len(wire)})
        for start, end in itertools.pairwise(points):
            conn.data_received(wire[start:end])
        assert waiter.done()
        status, headers, body = waiter.result()
    finally:
        loop.close()
    assert (status, body) == (200, expected)
    assert len(headers) >= 1


async def test_the_client_transport_fixture_switches_the_path(client_transport: str) -> None:
    """conftest's client_transport really puts a default-built client on each path."""
    expected = FastTransport if client_transport == "auto" else Transport
    assert await _which() is expected


def test_the_fast_path_runs_on_uvloop() -> None:
    """uvloop's create_connection takes no happy-eyeballs arguments: the pool still connects."""
    uvloop = pytest.importorskip("uvloop")

    async def one() -> tuple[int, bytes]:
        async with raw_server(answer(response())) as server:
            pool = FastTransport(server.url, max_connections=1, max_bytes=10**6, user_agent="t")
            try:
                status, _, body = await pool.send(b"{}", 5)
            finally:
                await pool.aclose()
        return status, body

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(one()) == (200, SEED_SUCCESS)
