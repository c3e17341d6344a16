"""The fast path's connection: one keep-alive socket and the parsing of the response on it.

This module owns what happens on one connection of ``_fastpath.FastTransport``'s pool: the
``asyncio.Protocol`` that feeds the bytes to httptools (llhttp in C), the body cap and the
decompression cap applied as the bytes arrive, the interim 1xx answers skipped, the
response headers built lazily, and the staleness check made before a pooled connection is
reused. The pool (connecting, reuse, waiting, idle timeouts) and the send stay in
``_fastpath``. It must never write a request, resend, or let a connection carry on after
bytes nobody asked for or a response it could not read to its end (it closes it), and
never decompress past the body cap (a small bomb never grows in memory: each read inflates
at most ``cap - size + 1`` bytes).

Why its own module: ``_fastpath.py`` had grown to 567 lines, the parser half of them.
Splitting on the pool/connection seam adds no cost on the per-request path: the pool calls
the same methods on the same objects (``bench_instructions --impls aopay --accounts 3
--requests 200``, three runs each: 173.8k/177.8k/179.1k instructions a request before,
173.1k/174.4k/168.8k after; runs of one tree differ by up to 3%). Failures are raised as
aiohttp's own exception classes, with aiohttp's wording where it has one, so
``_transport.attempt_failure`` words them the same on both paths.
"""

from __future__ import annotations

import asyncio
import select
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, cast

import aiohttp
import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from ._errors import too_large

__all__ = ["Pool"]

#: Reuse of a connection idle this long first peeks at the socket for a FIN/RST the loop
#: may not have delivered yet (a syscall; hot connections, idle for microseconds, skip it).
_PEEK_AFTER = 1.0


class Pool(Protocol):
    """What a connection reads of its pool (``FastTransport``, or a test's stand-in)."""

    _loop: asyncio.AbstractEventLoop
    _max_bytes: int

    def _forget(self, conn: _Connection) -> None:
        """The connection is gone: take it out of the pool."""


# Failures are raised as aiohttp's own exception classes (see the opening comment).
_Disconnected = aiohttp.ClientConnectionError


class _Headers(Mapping[str, str]):
    """The response headers, case-insensitive; the multidict is built on first use only.

    A successful call never looks at its headers, so the common case pays for a list of
    byte pairs and nothing else.
    """

    __slots__ = ("_built", "_raw")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._built: CIMultiDictProxy[str] | None = None

    def _dict(self) -> CIMultiDictProxy[str]:
        built = self._built
        if built is None:
            built = self._built = CIMultiDictProxy(
                CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw)
            )
        return built

    def __getitem__(self, key: str) -> str:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._raw)

    def getall(self, key: str) -> list[str]:
        """Every value of header *key* (as aiohttp's multidict does)."""
        return self._dict().getall(key)

    def __repr__(self) -> str:
        return f"<Headers {list(self._dict().items())!r}>"


class _Connection(asyncio.Protocol):
    """One keep-alive connection and the parser state of the response in flight on it."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, Mapping[str, str], bytes]] | None = None
        self.lost: asyncio.Future[None] = pool._loop.create_future()
        self.alive = True
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.inflate: Any = None
        self.until_eof = False
        self.chunked = False
        self.headers_done = False
        self.keep_alive = True

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports do not subclass asyncio.Transport; they behave as one.)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            # Bytes nobody asked for (on an idle connection): it cannot be trusted again.
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # httptools wraps what a callback raised; the original is the context.
            if isinstance(exc.__context__, _TooLarge):
                self._fail(too_large(self.pool._max_bytes))
            elif isinstance(exc.__context__, _Unsolicited):
                self.close()
            else:
                self._fail(_Disconnected(f"invalid HTTP response: {str(exc)[:100]}"))

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # let asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        if not self.lost.done():
            self.lost.set_result(None)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:
            raise _Unsolicited  # a second response after ours: stop parsing, drop the line

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        length = chunked = None
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"content-length":
                length = value
            elif lower == b"transfer-encoding":
                chunked = value
            elif lower == b"content-encoding":
                coding = value.strip().lower()
                if coding in (b"gzip", b"x-gzip"):
                    self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                elif coding == b"deflate":
                    self.inflate = _Deflate()
        status = self.parser.get_status_code()
        if length is not None and self.inflate is None:
            try:
                declared = int(length)
            except ValueError:
                declared = 0  # the parser rejects a malformed length itself
            if declared > self.pool._max_bytes:
                raise _TooLarge
        self.chunked = chunked is not None
        # A body that ends only when the server closes (no length, not chunked).
        self.until_eof = (
            length is None and chunked is None and status >= 200 and status not in (204, 304)
        )

    def on_body(self, body: bytes) -> None:
        inflate = self.inflate
        limit = self.pool._max_bytes
        if inflate is not None:
            # Inflate no more than the cap allows: a small bomb never grows in memory.
            body = inflate.decompress(body, limit - self.size + 1)
            if inflate.unconsumed_tail:
                raise _TooLarge
        self.size += len(body)
        if self.size > limit:
            raise _TooLarge
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # an interim 1xx answer: the real one follows
            self._reset()
            return
        self.keep_alive = self.parser.should_keep_alive()
        self._complete()

    # -- outcomes -----------------------------------------------------------------------------

    def _complete(self) -> None:
        waiter = self.waiter
        self.waiter = None
        chunks = self.chunks
        if self.inflate is not None:
            try:
                tail = self.inflate.flush()
            except zlib.error as exc:
                self._fail_waiter(
                    waiter, aiohttp.ClientPayloadError(f"invalid compressed body: {exc}")
                )
                return
            if tail:
                chunks.append(tail)
                self.size += len(tail)
                if self.size > self.pool._max_bytes:
                    self._fail_waiter(waiter, too_large(self.pool._max_bytes))
                    return
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        result = (self.parser.get_status_code(), _Headers(self.headers), body)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def _ended(self, exc: Exception | None) -> None:
        was_alive = self.alive
        self.alive = False
        self.pool._forget(self)
        if self.waiter is None:
            return
        if was_alive and self.headers_done and self.until_eof and exc is None:
            self.keep_alive = False
            self._complete()
            return
        if self.headers_done:
            # aiohttp's own words for the same cut (the client's _describe tidies them).
            kind, what = (
                ("TransferEncodingError", "transfer length")
                if self.chunked
                else ("ContentLengthError", "content length")
            )
            failure: Exception = aiohttp.ClientPayloadError(
                f"Response payload is not completed: <{kind}: 400, "
                f"message='Not enough data to satisfy {what} header.'>"
            )
        elif isinstance(exc, OSError):
            failure = aiohttp.ClientOSError(exc.errno, exc.strerror or str(exc))
        else:
            failure = aiohttp.ServerDisconnectedError()
        self._fail(failure)

    def _fail(self, exc: BaseException) -> None:
        waiter = self.waiter
        self.waiter = None
        self.close()
        self._fail_waiter(waiter, exc)

    @staticmethod
    def _fail_waiter(waiter: asyncio.Future[Any] | None, exc: BaseException) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        """Drop the connection now (its response, if any, is abandoned)."""
        self.alive = False
        self.pool._forget(self)
        if self.transport is not None:
            self.transport.abort()

    def stale(self, now: float) -> bool:
        """True if the connection must not carry another request."""
        transport = self.transport
        if not self.alive or transport is None or transport.is_closing():
            return True
        if now - self.idle_since < _PEEK_AFTER:
            return False
        # The loop may not have run since the server's FIN or RST arrived: ask the socket.
        # Anything readable on a connection that was idle this long is a FIN, an RST, a
        # TLS close_notify or bytes that answer nothing: never worth a request. (poll, not
        # select: descriptors above 1024 are common at high concurrency.)
        sock = transport.get_extra_info("socket")
        if sock is None or not hasattr(select, "poll"):
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))


class _Unsolicited(Exception):
    """A response that answers no request of ours."""


class _TooLarge(Exception):
    """Raised inside parser callbacks; turned into the body-cap ResponseDecodeError."""


class _Deflate:
    """``Content-Encoding: deflate``: zlib-wrapped as the RFC says, raw deflate as IIS sends."""

    __slots__ = ("_obj", "unconsumed_tail")

    def __init__(self) -> None:
        self._obj: Any = None
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._obj is None:
            raw = bool(data) and (data[0] & 0x0F) != 8
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        out: bytes = self._obj.decompress(data, max_length)
        self.unconsumed_tail = self._obj.unconsumed_tail
        return out

    def flush(self) -> bytes:
        return b"" if self._obj is None else bytes(self._obj.flush())
