"""The fast path: a lean HTTP/1.1 keep-alive pool on ``asyncio.Protocol`` for the one GET we send.

This module owns the same single job as ``_transport.Transport`` – send one attempt, hand
back ``(status, headers, body bytes)`` or raise one of our errors – with the same interface,
so the client above (limiter, retries, decoding, events) cannot tell the two apart. It must
never retry or resend (a stale pooled connection is dropped *before* it carries a request;
once a request is written, whatever happens is that attempt's outcome), never follow a
redirect, never switch TLS verification off, and never hand back to the pool a connection
whose response was not read to its end.

Why hand-written (callgrind instructions per request, N requests minus 0, c=64, nginx;
``python -m benchmarks.bench_instructions``): a raw aiohttp loop with ``json.loads`` costs
558k a request at 3 accounts (1,816k at 100), the library on aiohttp 538k, and aiohttp's
``session.request`` + ``read`` alone ~450k of that – no client built on ``ClientSession``
beats the raw loop by more than ~1.15×. On this path the whole library call costs 165k at
3 accounts (3.4× fewer than the raw loop) and 679k at 100 (2.7× fewer): request bytes built
per call and written in one ``write``, the response parsed by httptools (llhttp in C, as
in uvicorn), the body decoded by msgspec.

httptools over aiohttp's own C ``HttpResponseParser`` (no new dependency), both measured in
the same run with this very pool (``benchmarks/_aioparser.py``): 165k against 185k a
request at 3 accounts, 679k against 697k at 100 (httptools 11% / 3% fewer). Besides,
aiohttp's parser hands every body to
an aiohttp ``StreamReader`` (flow-control calls into the protocol, a decompressor that is
not capped by our limit) that can only be read synchronously through private attributes,
and its constructor's signature changes between aiohttp releases; httptools is a small,
stable callback API that lets the body cap and the decompression cap live here.

What it deliberately does not do – each stays on aiohttp (``transport="aiohttp"``, or a
caller's ``session=``): proxies (and ``trust_env``), HTTP/2, redirects (never wanted:
the body carries the company code), cookies, request compression, ``Expect: 100-continue``,
pipelining, per-request DNS caching beyond the pool (a connection lives until idle for
``keepalive_timeout``, so a lookup happens once per new connection only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Mapping
from typing import Any

from ._fastconn import _Connection, _Disconnected
from ._timeouts import CoarseTimer
from ._transport import FAILURES, attempt_failure  # the same errors and words on both paths

__all__ = ["FastTransport"]

#: Idle pooled connections are closed after this many seconds (aiohttp's default too).
KEEPALIVE_TIMEOUT = 15.0
_HAPPY_EYEBALLS_DELAY = 0.25


class FastTransport:
    """Sends attempts to one URL over a pool of at most *max_connections* connections."""

    #: The protocol of each connection (benchmarks swap in another parser).
    _connection_class: type[_Connection] = _Connection

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        max_bytes: int,
        user_agent: str,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http(s) URL")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._ssl: ssl.SSLContext | None = None
        if self._tls:
            self._ssl = ssl_context or ssl.create_default_context()
        host = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port is not None and parts.port != (443 if self._tls else 80):
            host = f"{host}:{parts.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._lines = (
            f"GET {target} HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            f"User-Agent: {user_agent}\r\n"
        ).encode("latin-1")
        self._head = self._lines + b"Content-Length: "
        self._max_connections = max_connections
        self._max_bytes = max_bytes
        self._keepalive = keepalive_timeout
        self._timer = CoarseTimer()
        self._loop = asyncio.get_running_loop()
        # Happy eyeballs (RFC 8305) on asyncio's own loop; uvloop has no such arguments and
        # tries the resolved addresses one after another.
        self._eyeballs: dict[str, Any] = {}
        if isinstance(self._loop, asyncio.BaseEventLoop):
            self._eyeballs = {"happy_eyeballs_delay": _HAPPY_EYEBALLS_DELAY, "interleave": 1}
        self._idle: deque[_Connection] = deque()
        self._all: set[_Connection] = set()
        self._opening = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def connections(self) -> int:
        """Open connections, idle or busy (for tests)."""
        return len(self._all)

    async def send(
        self,
        body: bytes,
        attempt_timeout: float,
        *,
        exact: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one GET with *body*; return ``(status, headers, body bytes)``.

        Same contract as ``Transport.send``: *attempt_timeout* bounds connect to last byte
        (coarse, or exact with *exact*); :class:`APITimeoutError`, :class:`APIConnectionError`
        or the body cap's ``ResponseDecodeError`` on failure. *headers* are sent besides
        the client's own (the trace context of a traced attempt).
        """
        head = self._head if headers is None else self._with(headers)
        try:
            if exact:
                async with asyncio.timeout(attempt_timeout):
                    return await self._send(body, head)
            with self._timer.within(attempt_timeout):
                return await self._send(body, head)
        except FAILURES as exc:
            raise attempt_failure(exc, attempt_timeout) from exc

    def _with(self, headers: Mapping[str, str]) -> bytes:
        lines = [self._lines]
        for name, value in headers.items():
            line = f"{name}: {value}\r\n"
            # A name or value carrying a line break would forge headers of its own.
            if "\r" in line[:-2] or "\n" in line[:-2]:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(line.encode("latin-1"))
        lines.append(b"Content-Length: ")
        return b"".join(lines)

    async def _send(self, body: bytes, head: bytes) -> tuple[int, Mapping[str, str], bytes]:
        conn = self._take() or await self._connect()
        transport = conn.transport
        assert transport is not None
        waiter: asyncio.Future[tuple[int, Mapping[str, str], bytes]]
        waiter = conn.waiter = self._loop.create_future()
        done = False
        try:
            transport.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
            result = await waiter
            done = True
            return result
        finally:
            # Only a connection whose response was read to its end goes back; a timeout,
            # a cancellation or an error mid-response closes it.
            if done and conn.keep_alive and conn.alive:
                conn._reset()
                self._release(conn)
            else:
                conn.waiter = None
                conn.close()
                self._wake()

    # -- the pool -------------------------------------------------------------------------------

    def _take(self) -> _Connection | None:
        idle = self._idle
        if not idle:
            return None
        now = self._loop.time()
        while idle:
            conn = idle.pop()  # most recently used first: the warmest, the least likely stale
            if not conn.stale(now):
                return conn
            conn.close()  # dropped before use: no attempt, nothing sent
        return None

    async def _connect(self) -> _Connection:
        while len(self._all) + self._opening >= self._max_connections:
            waiter = self._loop.create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiting.remove(waiter)
            conn = self._take()
            if conn is not None:
                return conn
        if self._closed:
            raise _Disconnected("the client is closed")
        self._opening += 1
        try:
            transport, protocol = await self._loop.create_connection(
                lambda: self._connection_class(self),
                self._host,
                self._port,
                ssl=self._ssl,
                **self._eyeballs,
            )
        except OSError as exc:  # ssl.SSLError and socket.gaierror are OSErrors too
            raise _Disconnected(
                f"Cannot connect to host {self._host}:{self._port} "
                f"ssl:{'default' if self._tls else False} [{type(exc).__name__}: {exc}]"
            ) from exc
        finally:
            self._opening -= 1
        conn = protocol
        # uvloop may call connection_made only after create_connection returned.
        conn.transport = transport
        if self._closed:
            conn.close()
            raise _Disconnected("the client is closed")
        self._all.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = now = self._loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = self._loop.call_at(now + self._keepalive, self._close_idle)
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(self, conn: _Connection) -> None:
        if conn in self._all:
            self._all.discard(conn)
            with contextlib.suppress(ValueError):
                self._idle.remove(conn)
            self._wake()

    def _close_idle(self) -> None:
        self._sweep = None
        cutoff = self._loop.time() - self._keepalive
        while self._idle and self._idle[0].idle_since <= cutoff:
            self._idle.popleft().close()  # oldest first
        if self._idle:
            self._sweep = self._loop.call_at(
                self._idle[0].idle_since + self._keepalive, self._close_idle
            )

    async def aclose(self) -> None:
        """Close every connection and wait until their sockets are gone. Idempotent."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        conns = list(self._all)
        for conn in conns:
            conn.close()
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)
        if conns:
            await asyncio.wait([conn.lost for conn in conns], timeout=5)
