"""The transport: the only module that talks aiohttp.

It owns one thing: send one attempt (a GET with a JSON body) and hand back the status, the
headers and the body bytes, or raise one of our connection errors. It must never retry,
decide, decode JSON, or follow a redirect (the body carries the company code; it goes to the
configured host or nowhere), and never switch TLS verification off.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import aiohttp
from yarl import URL

from ._errors import APIConnectionError, APITimeoutError, too_large
from ._timeouts import CoarseTimer

__all__ = ["FAILURES", "Transport", "attempt_failure", "create_session"]

_CHUNK = 64 * 1024
# aiohttp arms no timer of its own: the attempt's timeout is ours (see _timeouts.py).
_NO_AIOHTTP_TIMEOUT = aiohttp.ClientTimeout()


def create_session(
    max_concurrency: int, *, trace_configs: list[aiohttp.TraceConfig] | None = None
) -> aiohttp.ClientSession:
    """A session whose connection pool holds *max_concurrency* connections.

    Must be called inside the running event loop (aiohttp binds the session to it).
    *trace_configs* lets a caller (the command line's summary) watch every attempt.
    """
    connector = aiohttp.TCPConnector(limit=max_concurrency, limit_per_host=max_concurrency)
    # The API sets no cookies we need; a dummy jar skips cookie filtering on every request.
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trace_configs=trace_configs,
    )
    # aiohttp silently sends an idempotent request (our GET) a second time after a reset or
    # disconnect. That hidden resend takes no rate-limit token and is not counted in
    # `.attempts`: every resend must go through our retry policy, so switch it off. (A
    # private flag with no public switch; skipped if a future aiohttp drops it.)
    if "_retry_connection" in getattr(aiohttp.ClientSession, "ATTRS", ()):
        session._retry_connection = False
    return session


class Transport:
    """Sends attempts to one URL over a session it does not own."""

    __slots__ = ("_headers", "_max_bytes", "_timer", "_url", "session")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        max_bytes: int,
        user_agent: str,
    ) -> None:
        self.session = session
        # Parsed once: aiohttp would otherwise parse the URL string on every request.
        self._url = URL(url)
        self._timer = CoarseTimer()
        self._max_bytes = max_bytes
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }

    async def aclose(self) -> None:
        """Close the session (the client calls this only for a session it created)."""
        await self.session.close()

    async def send(
        self,
        body: bytes,
        attempt_timeout: float,
        *,
        exact: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send one GET with *body*; return ``(status, headers, body bytes)``.

        *attempt_timeout* bounds the whole attempt, connect to last byte: to within one
        ``TIMEOUT_TICK`` (never early), or to the loop's precision when *exact*. Raises
        :class:`APITimeoutError` when it runs out, :class:`APIConnectionError` when no
        complete response arrived, and ``ResponseDecodeError`` for a body over the limit.
        *headers* are sent besides the client's own (the trace context of a traced attempt).
        """
        sending = self._headers if headers is None else {**self._headers, **headers}
        try:
            if exact:
                async with asyncio.timeout(attempt_timeout):
                    return await self._send(body, sending)
            with self._timer.within(attempt_timeout):
                return await self._send(body, sending)
        except FAILURES as exc:
            raise attempt_failure(exc, attempt_timeout) from exc

    async def _send(
        self, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        async with self.session.request(
            "GET",
            self._url,
            data=body,
            headers=headers,
            timeout=_NO_AIOHTTP_TIMEOUT,
            allow_redirects=False,
        ) as response:
            length = response.content_length
            if length is not None and length > self._max_bytes:
                raise too_large(self._max_bytes)
            if length is not None and "Content-Encoding" not in response.headers:
                data = await response.read()
            else:
                data = await self._read_capped(response)
            return response.status, response.headers, data

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            total += len(chunk)
            if total > self._max_bytes:
                raise too_large(self._max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


#: What an attempt may raise that :func:`attempt_failure` turns into one of our errors
#: (TimeoutError first among the OSErrors; aiohttp's ServerTimeoutError is both).
FAILURES = (TimeoutError, aiohttp.ClientError, OSError)


def attempt_failure(exc: BaseException, attempt_timeout: float) -> APIConnectionError:
    """Our error for an attempt that failed with *exc* (one of :data:`FAILURES`).

    Both transports raise it ``from exc``, so a timeout or a cut connection reads the same
    on either path: an :class:`APITimeoutError` for a timeout, else an
    :class:`APIConnectionError` naming the cause in aiohttp's words.
    """
    if isinstance(exc, TimeoutError):
        return APITimeoutError(
            f"the attempt timed out after {attempt_timeout:.3g}s (connect to last byte)"
        )
    return APIConnectionError(
        f"no complete response from the API: {type(exc).__name__}: {_describe(exc)}"
    )


# aiohttp's parser errors print an internal code that looks like an HTTP status
# ("<ContentLengthError: 400, message='Not enough data ...'>") although no 400 was received.
_PARSER_CODE = re.compile(r"(\w+Error): \d{3}, message=")


def _describe(exc: BaseException) -> str:
    """aiohttp's text for *exc*, without the parser code that reads like an HTTP status."""
    return _PARSER_CODE.sub(r"\1 (a broken response, not an HTTP status), message=", str(exc))[:200]
