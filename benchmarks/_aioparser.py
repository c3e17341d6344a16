"""The fast path with aiohttp's C ``HttpResponseParser`` in place of httptools: for measuring only.

Issue 12 asked to measure both parsers in the same run before choosing. The library ships
httptools (see aopay_async/_fastpath.py for why); this module swaps the parser inside the
same pool so ``bench_instructions`` and ``bench_throughput`` can count the difference. It
reads the payload's buffer directly (aiohttp exposes no synchronous way) and checks the body
cap on the decompressed total only after each feed: good enough for a benchmark, not for use.
"""

from __future__ import annotations

from typing import Any

from aiohttp.http import HttpResponseParser

from aopay_async._errors import too_large
from aopay_async._fastpath import FastTransport, _Connection

__all__ = ["AiohttpParserTransport"]


class _AiohttpParserConnection(_Connection):
    def __init__(self, pool: FastTransport) -> None:
        super().__init__(pool)
        self._reading_paused = False
        self.aparser: Any = HttpResponseParser(self, pool._loop, 2**16)  # type: ignore[arg-type]
        self.message: Any = None
        self.payload: Any = None

    # The StreamReader aiohttp's parser feeds asks its protocol for flow control.
    def pause_reading(self, *args: Any, **kwargs: Any) -> None:
        pass

    def resume_reading(self, *args: Any, **kwargs: Any) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            self.close()
            return
        try:
            messages, _, _ = self.aparser.feed_data(data)
        except Exception as exc:  # aiohttp's HttpProcessingError family
            self._fail(ConnectionError(f"invalid HTTP response: {exc}"))
            return
        for message, payload in messages:
            if message.code >= 200:
                self.message, self.payload = message, payload
        payload = self.payload
        if payload is None:
            return
        if payload.total_bytes > self.pool._max_bytes:
            self._fail(too_large(self.pool._max_bytes))
            return
        if payload.is_eof():
            message = self.message
            waiter = self.waiter
            self.waiter = None
            self.keep_alive = not message.should_close
            body = b"".join(payload._buffer)
            self.message = self.payload = None
            if waiter is not None and not waiter.done():
                waiter.set_result((message.code, message.headers, body))

    def _ended(self, exc: Exception | None) -> None:
        self.alive = False
        self.pool._forget(self)
        if self.waiter is not None:
            self._fail(ConnectionError("the connection closed before a complete response"))


class AiohttpParserTransport(FastTransport):
    """:class:`FastTransport` whose connections parse with aiohttp's C parser."""

    _connection_class = _AiohttpParserConnection
