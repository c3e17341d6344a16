"""The error tree's exact words and fields: what mutation testing found unpinned (issue 14).

Messages here are the product (a user reads them to decide what to do), so they are compared
whole, not by substring; every attribute a constructor takes is read back.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aopay_async import (
    AOPayError,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    AuthenticationError,
    RateLimitError,
    ServerError,
)
from aopay_async._errors import BODY_PREVIEW_CHARS, redact, status_error

REDIRECT = (
    "the API answered with a redirect (HTTP {status}), which is never followed "
    "(the request carries the company code): check base_url"
)


@pytest.mark.parametrize(
    ("status", "cls", "message"),
    [
        (300, APIStatusError, REDIRECT.format(status=300)),
        (301, APIStatusError, REDIRECT.format(status=301)),
        (399, APIStatusError, REDIRECT.format(status=399)),
        (400, APIStatusError, "the API rejected the request as malformed (HTTP 400)"),
        (
            401,
            AuthenticationError,
            "the API refused the credentials (HTTP 401): check the company code and "
            "registration id",
        ),
        (
            403,
            AuthenticationError,
            "the API refused access (HTTP 403): check the company code and registration id",
        ),
        (404, APIStatusError, "the API path was not found (HTTP 404): check base_url"),
        (408, APIStatusError, "the API timed out waiting for the request (HTTP 408)"),
        (418, APIStatusError, "the API answered with an unexpected status (HTTP 418)"),
        (499, APIStatusError, "the API answered with an unexpected status (HTTP 499)"),
        (429, RateLimitError, "rate limited by the API (HTTP 429): lower rate_limit or wait"),
        (500, ServerError, "the API answered with a server error (HTTP 500)"),
        (599, ServerError, "the API answered with a server error (HTTP 599)"),
    ],
)
def test_status_error_says_exactly_this(
    status: int, cls: type[APIStatusError], message: str
) -> None:
    """Each status gets its class and its whole message, word for word (HTTP 300 included)."""
    err = status_error(status, {}, "")
    assert type(err) is cls
    assert str(err) == message
    assert err.message == message
    assert err.retry_after is None


def test_the_requested_wait_is_added_to_the_message_not_instead_of_it() -> None:
    """A Retry-After wait is appended to the status message; the message itself stays."""
    err = status_error(503, {}, "", retry_after=2.5)
    assert (
        str(err) == "the API answered with a server error (HTTP 503); the server asked to wait 2.5s"
    )
    assert err.retry_after == 2.5


def test_status_error_keeps_the_headers_and_the_body() -> None:
    """The headers and the (already redacted) body given are the ones the error carries."""
    headers = {"X-Request-Id": "req-1", "Retry-After": "4"}
    err = status_error(503, headers, "upstream down", retry_after=4.0)
    assert err.headers is headers
    assert err.body == "upstream down"
    assert err.status_code == 503


def test_api_status_error_defaults() -> None:
    """Without them, an APIStatusError has empty headers and body, no wait, no attempts."""
    err = APIStatusError("x", status_code=400)
    assert (dict(err.headers), err.body, err.retry_after) == ({}, "", None)
    assert (err.attempts, err.client_order_id) == (0, None)


@pytest.mark.parametrize(
    "make",
    [
        lambda: APIStatusError("x", status_code=502, attempts=3, client_order_id="ord-9"),
        lambda: ServerError("x", status_code=502, attempts=3, client_order_id="ord-9"),
        lambda: APIResponseError("x", code="207", attempts=3, client_order_id="ord-9"),
        lambda: APIConnectionError("x", attempts=3, client_order_id="ord-9"),
    ],
    ids=["APIStatusError", "ServerError", "APIResponseError", "APIConnectionError"],
)
def test_every_error_keeps_attempts_and_order_id(make: Callable[[], AOPayError]) -> None:
    """``attempts`` and ``client_order_id`` reach the error whatever its constructor.

    The errors are built inside the test (not as parametrize values, which are built once
    at collection), so the constructor under test is the one that runs.
    """
    err = make()
    assert (err.attempts, err.client_order_id) == (3, "ord-9")


def test_api_response_error_defaults() -> None:
    """An APIResponseError made by the decoder starts with no attempts and no order id."""
    err = APIResponseError("m", code=None)
    assert (err.attempts, err.client_order_id, err.code, err.message) == (0, None, None, "m")


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda: AOPayError("boom", attempts=2), "AOPayError('boom', attempts=2)"),
        (lambda: APIConnectionError("reset"), "APIConnectionError('reset', attempts=0)"),
        (
            lambda: APIResponseError("m", code="207", api_message="X"),
            "APIResponseError('X', attempts=0)",
        ),
        (
            lambda: ServerError("down", status_code=503, attempts=4),
            "ServerError('down', status_code=503, attempts=4)",
        ),
    ],
    ids=["AOPayError", "APIConnectionError", "APIResponseError", "ServerError"],
)
def test_repr_names_the_class_the_message_and_the_attempts(
    make: Callable[[], AOPayError], text: str
) -> None:
    """The repr is the class's own name with the message and attempts (and the status)."""
    assert repr(make()) == text


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (BODY_PREVIEW_CHARS - 1, "x" * (BODY_PREVIEW_CHARS - 1)),
        (BODY_PREVIEW_CHARS, "x" * BODY_PREVIEW_CHARS),
        (BODY_PREVIEW_CHARS + 1, "x" * BODY_PREVIEW_CHARS + "…"),
    ],
)
def test_redaction_cuts_only_past_the_limit(length: int, expected: str) -> None:
    """A text of exactly the limit is kept whole; one character more is cut with an ellipsis."""
    assert redact("x" * length) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pan ABCDE1234F here", "pan *** here"),
        ("mail synth.user@example.test now", "mail *** now"),
        ("born 1990-04-23.", "born ***."),
    ],
    ids=["pan", "email", "date"],
)
def test_personal_data_becomes_exactly_three_stars(text: str, expected: str) -> None:
    """Personal data is replaced by the same ``***`` as every other redaction, nothing else."""
    assert redact(text) == expected
