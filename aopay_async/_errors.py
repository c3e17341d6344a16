"""The exception tree of aopay_async.

This module owns every error the library raises and the table that maps an HTTP status to
an error class. It must never import aiohttp or hold customer data: messages are written
by the library (or redacted by :func:`redact` before they get here), never copied raw from
a request.

::

    AOPayError
    ├── InvalidRequestError (also ValueError)   bad arguments or configuration; nothing was sent
    ├── APIConnectionError                      no complete response (refused, reset, DNS, cut body)
    │   └── APITimeoutError                     an attempt timed out or the deadline passed
    ├── APIStatusError                          HTTP status >= 400: .status_code, .headers, .body
    │   ├── AuthenticationError                 401 / 403, or a body with responsecode 401
    │   ├── RateLimitError                      429: .retry_after (seconds or None)
    │   └── ServerError                         >= 500
    ├── APIResponseError                        2xx whose body reports failure: .code, .message
    ├── ResponseDecodeError                     not JSON, not the documented shape, or too large
    ├── RateLimiterError                        a shared limiter (Redis) failed; nothing was sent
    └── CircuitOpenError                        the API is considered down; nothing was sent

Every error carries ``.attempts`` (how many HTTP attempts were sent for the call) and
``.client_order_id`` (the id every attempt of the call used; ``None`` when nothing was sent).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = [
    "AOPayError",
    "APIConnectionError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "CircuitOpenError",
    "InvalidRequestError",
    "RateLimitError",
    "RateLimiterError",
    "ResponseDecodeError",
    "ServerError",
    "redact",
    "status_error",
    "too_large",
]

#: How much of a response body an :class:`APIStatusError` keeps (after redaction).
BODY_PREVIEW_CHARS = 200

_LONG_DIGITS = re.compile(r"\d{5,}")
# Personal data an API's free text may quote besides digit runs (issue 8): a PAN (ABCDE1234F),
# an e-mail address, a date (of birth, in the common spellings: 1990-04-23, 23/04/1990,
# 23-04-90, 23.04.1990, 23 Apr 1990, April 23, 1990) and an Aadhaar-like 12-digit number
# written in groups of four. Names and addresses in free text cannot be told from other words
# and are NOT masked (the README says so).
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_PERSONAL = re.compile(
    "|".join(
        (
            r"\b[A-Z]{5}[0-9]{4}[A-Z]\b",  # PAN
            r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail
            r"(?<!\d)\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?!\d)",  # 1990-04-23
            r"(?<!\d)\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?!\d)",  # 23/04/1990, 23-04-90
            rf"(?<!\d)\d{{1,2}}(?:st|nd|rd|th)?[ -]{_MONTH}[ -,]*\d{{2,4}}(?!\d)",  # 23 Apr 1990
            rf"\b{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}(?!\d)",  # April 23, 1990
            r"(?<!\d)\d{4}[ -]\d{4}[ -]\d{4}(?!\d)",  # Aadhaar-like, grouped
        )
    ),
    re.IGNORECASE,
)
# A JSON field named like a token ("token", "access_token", "accessToken"): the gateway
# shape has a `token` field, and an error body may echo the access token.
_TOKEN_FIELD = re.compile(r'("[A-Za-z_]*token"\s*:\s*")(?:[^"\\]|\\.)*"?', re.IGNORECASE)
# C0 and C1 controls and the Unicode line/paragraph separators: anything that could forge a
# new line (or a terminal escape) in a log that quotes an error message.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def redact(text: str, secrets: Iterable[str | None] = (), limit: int = BODY_PREVIEW_CHARS) -> str:
    """Return *text* safe for a log line or an error message.

    Known secrets (credentials, the customer's ids) are replaced by ``***``; so is any run of
    five or more digits, which is how mobile, account, cibil and Aadhaar numbers look, a PAN,
    an e-mail address, a date (of birth) in the common spellings, a 12-digit number in groups
    of four, and the value of any JSON field named like a token; control characters become
    one space; the result is cut to *limit* characters. Names and addresses are not masked:
    nothing tells them apart from other words.
    """
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    text = _PERSONAL.sub("***", text)
    text = _LONG_DIGITS.sub("***", text)
    text = _TOKEN_FIELD.sub(r'\1***"', text)
    text = _CONTROL.sub(" ", text)
    if len(text) > limit:
        text = text[:limit] + "…"
    return text


class AOPayError(Exception):
    """Base class of every error raised by aopay_async."""

    attempts: int
    client_order_id: str | None

    def __init__(
        self, message: str, *, attempts: int = 0, client_order_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts
        self.client_order_id = client_order_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, attempts={self.attempts})"


class InvalidRequestError(AOPayError, ValueError):
    """Bad arguments or configuration, found before anything was sent."""


class APIConnectionError(AOPayError):
    """No complete HTTP response arrived: refused, reset, DNS failure, a body cut short."""


class APITimeoutError(APIConnectionError):
    """An attempt timed out, or the call's deadline passed."""


class APIStatusError(AOPayError):
    """The server answered with an HTTP status of 400 or more (or a 3xx: never followed).

    ``.body`` is a short, redacted preview of what the server sent, for diagnostics only.
    ``.retry_after`` is the wait in seconds a ``Retry-After`` header asked for, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        headers: Mapping[str, str] | None = None,
        body: str = "",
        retry_after: float | None = None,
        attempts: int = 0,
        client_order_id: str | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts, client_order_id=client_order_id)
        self.status_code = status_code
        # Kept as given (aiohttp's case-insensitive proxy from the transport).
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.body = body
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code}, "
            f"attempts={self.attempts})"
        )


class AuthenticationError(APIStatusError):
    """401 or 403, or a body saying ``responsecode: 401``.

    Check the company code and registration id.
    """


class RateLimitError(APIStatusError):
    """429 Too Many Requests. ``.retry_after``: the server's requested wait in seconds, or None."""


class ServerError(APIStatusError):
    """The server failed (HTTP 500 or above)."""


class APIResponseError(AOPayError):
    """A 2xx answer whose body reports a failure. ``.code`` and ``.message`` are the API's own."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        api_message: str | None = None,
        attempts: int = 0,
        client_order_id: str | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts, client_order_id=client_order_id)
        self.code = code
        # ``.message`` is the API's own (redacted) text when it sent one; str(err) says more.
        if api_message is not None:
            self.message = api_message


class ResponseDecodeError(AOPayError):
    """The body is not JSON, not the documented shape, or larger than ``max_response_bytes``."""


def too_large(limit: int) -> ResponseDecodeError:
    """The error for a body over ``max_response_bytes`` (raised by the transport, unread)."""
    return ResponseDecodeError(
        f"the response body is larger than max_response_bytes ({limit} bytes); "
        "it was refused without being read whole"
    )


class RateLimiterError(AOPayError):
    """A shared rate limiter (Redis) could not be reached or failed; nothing was sent.

    Retryable within the call's deadline, like a connection error: the limiter may be back
    on the next attempt. A ``RedisLimiter`` given ``fallback=`` uses that limiter instead of
    raising this.
    """


class CircuitOpenError(AOPayError):
    """The client's circuit breaker is open: the API looked down, so nothing was sent.

    ``.retry_after`` is the seconds until the breaker lets a probe through (a caller that
    waits that long and calls again may be the probe). ``.attempts`` counts what the call
    sent before the breaker refused it.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        attempts: int = 0,
        client_order_id: str | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts, client_order_id=client_order_id)
        self.retry_after = retry_after


_STATUS_MESSAGES: Mapping[int, str] = {
    400: "the API rejected the request as malformed (HTTP 400)",
    401: "the API refused the credentials (HTTP 401): check the company code and registration id",
    403: "the API refused access (HTTP 403): check the company code and registration id",
    404: "the API path was not found (HTTP 404): check base_url",
    408: "the API timed out waiting for the request (HTTP 408)",
    429: "rate limited by the API (HTTP 429): lower rate_limit or wait",
}


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    retry_after: float | None = None,
) -> APIStatusError:
    """Build the :class:`APIStatusError` subclass for an HTTP *status* (400 or more, or a 3xx).

    *body* must already be redacted. ``attempts`` and ``client_order_id`` are filled in by the
    client when the call ends.
    """
    message = _STATUS_MESSAGES.get(status)
    if message is None:
        if status >= 500:
            message = f"the API answered with a server error (HTTP {status})"
        elif 300 <= status < 400:
            message = (
                f"the API answered with a redirect (HTTP {status}), which is never followed "
                "(the request carries the company code): check base_url"
            )
        else:
            message = f"the API answered with an unexpected status (HTTP {status})"
    if retry_after is not None:
        message += f"; the server asked to wait {retry_after:g}s"
    cls: type[APIStatusError]
    if status == 429:
        cls = RateLimitError
    elif status in (401, 403):
        cls = AuthenticationError
    elif status >= 500:
        cls = ServerError
    else:
        cls = APIStatusError
    return cls(message, status_code=status, headers=headers, body=body, retry_after=retry_after)
