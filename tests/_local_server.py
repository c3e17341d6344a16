"""A tiny local AOPay stand-in on 127.0.0.1 for tests that pin exact wire behaviour.

Owns: :class:`LocalServer` (one route, a script of plain-function answers, a record of what
arrived) and the answers tests script with (:func:`ok`, :func:`status`, :func:`reset`,
:func:`hang`, :func:`stream`). Must never: bind anything but 127.0.0.1, or imitate the API's
logic — the sandbox (``aopay_async.testing``) is the faithful fake; this one is deliberately
dumb, so a test states every answer it relies on. Kept importable (as h11 keeps
``tests/helpers.py``) rather than hidden in ``conftest.py``; conftest only wires the fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _data import SEED_SUCCESS
from aiohttp import web

from aopay_async._client import PATH

__all__ = [
    "Handler",
    "LocalServer",
    "Seen",
    "hang",
    "ok",
    "reset",
    "serve",
    "status",
    "stream",
]

#: A handler answers one attempt; it gets the request and the attempt's number (from 1).
Handler = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request as the server saw it."""

    body: Any
    raw: bytes
    headers: dict[str, str]
    method: str
    started: float


@dataclass
class LocalServer:
    """A one-route aiohttp.web server; ``script`` picks each attempt's answer."""

    url: str = ""
    script: list[Handler] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    finished: int = 0

    def reply(self, *handlers: Handler) -> None:
        """Answer attempt i with ``handlers[i]``; the last one answers every later attempt."""
        self.script = list(handlers)

    @property
    def order_ids(self) -> list[str]:
        """The ``client_order_id`` of every request received, in order."""
        return [s.body["client_order_id"] for s in self.seen]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.seen.append(
            Seen(
                body,
                raw,
                dict(request.headers),
                request.method,
                asyncio.get_running_loop().time(),
            )
        )
        number = len(self.seen)
        handler = self.script[min(number, len(self.script)) - 1] if self.script else ok()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await handler(request, number)
        finally:
            self.in_flight -= 1
            self.finished += 1


# -- answers ---------------------------------------------------------------------------------


def ok(body: bytes = SEED_SUCCESS, *, delay: float = 0.0) -> Handler:
    """200 with *body* (the seed's success example by default), after *delay* seconds."""

    async def handler(request: web.Request, number: int) -> web.StreamResponse:
        if delay:
            await asyncio.sleep(delay)
        return web.Response(body=body, content_type="application/json")

    return handler


def status(
    code: int,
    body: bytes = b'{"message": "failed"}',
    *,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Handler:
    """An answer with HTTP *code*, *body* and extra *headers*."""

    async def handler(request: web.Request, number: int) -> web.StreamResponse:
        return web.Response(status=code, body=body, headers=headers, content_type=content_type)

    return handler


def reset() -> Handler:
    """Drop the connection with a TCP RST before any response byte."""

    async def handler(request: web.Request, number: int) -> web.StreamResponse:
        transport = request.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return web.Response()  # never sent

    return handler


def hang(seconds: float = 30.0) -> Handler:
    """Answer only after *seconds* (longer than any test waits)."""

    async def handler(request: web.Request, number: int) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(body=SEED_SUCCESS, content_type="application/json")

    return handler


def stream(chunks: Sequence[bytes], *, content_length: int | None = None) -> Handler:
    """A streamed 200: chunked unless *content_length* is given; counts what it could send."""

    async def handler(request: web.Request, number: int) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        if content_length is not None:
            response.content_length = content_length
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for chunk in chunks:
                await response.write(chunk)
                await asyncio.sleep(0)
            await response.write_eof()
        return response

    return handler


@contextlib.asynccontextmanager
async def serve() -> AsyncIterator[LocalServer]:
    """A running :class:`LocalServer` on 127.0.0.1 (a free port), stopped on exit."""
    server = LocalServer()
    app = web.Application()
    app.router.add_route("*", PATH, server.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        server.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield server
    finally:
        await runner.cleanup()
