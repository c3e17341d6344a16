"""The exception tree, the status table and redaction: plain tables, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async import (
    AOPayError,
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    CircuitOpenError,
    InvalidRequestError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)
from aopay_async._errors import BODY_PREVIEW_CHARS, redact, status_error

#: (class, its parent in the tree drawn in the README, "Errors")
TREE: list[tuple[type[BaseException], type[BaseException]]] = [
    (AOPayError, Exception),
    (InvalidRequestError, AOPayError),
    (InvalidRequestError, ValueError),
    (APIConnectionError, AOPayError),
    (APITimeoutError, APIConnectionError),
    (APIStatusError, AOPayError),
    (AuthenticationError, APIStatusError),
    (RateLimitError, APIStatusError),
    (ServerError, APIStatusError),
    (APIResponseError, AOPayError),
    (ResponseDecodeError, AOPayError),
    (CircuitOpenError, AOPayError),
]


@pytest.mark.parametrize(("cls", "parent"), TREE)
def test_tree(cls: type[BaseException], parent: type[BaseException]) -> None:
    """Each error sits where the contract draws it."""
    assert issubclass(cls, parent)


@pytest.mark.parametrize(
    ("cls", "not_parent"),
    [
        (APITimeoutError, TimeoutError),
        (APIStatusError, APIConnectionError),
        (APIResponseError, APIStatusError),
        (ResponseDecodeError, ValueError),
        (AuthenticationError, ServerError),
    ],
)
def test_tree_has_no_extra_branches(
    cls: type[BaseException], not_parent: type[BaseException]
) -> None:
    """Branches stay separate, so ``except`` clauses catch what they say."""
    assert not issubclass(cls, not_parent)


def test_every_error_documents_itself() -> None:
    """Each class has a docstring saying when it is raised."""
    for cls, _ in TREE:
        assert cls.__doc__


def test_errors_carry_attempts_and_order_id() -> None:
    """``.attempts`` and ``.client_order_id`` default to 0 / None and can be given."""
    blank = AOPayError("boom")
    assert (blank.attempts, blank.client_order_id, blank.message) == (0, None, "boom")
    full = APIConnectionError("reset", attempts=4, client_order_id="ord-1")
    assert (full.attempts, full.client_order_id) == (4, "ord-1")
    assert str(full) == "reset"


def test_status_error_fields_and_repr() -> None:
    """APIStatusError keeps status, headers, body, retry_after; its repr shows the status."""
    err = RateLimitError(
        "slow down", status_code=429, headers={"Retry-After": "2"}, body="{}", retry_after=2.0
    )
    assert (err.status_code, err.body, err.retry_after) == (429, "{}", 2.0)
    assert err.headers["Retry-After"] == "2"
    assert repr(err) == "RateLimitError('slow down', status_code=429, attempts=0)"
    assert APIStatusError("x", status_code=400).headers == {}


def test_api_response_error_message_is_the_apis_own() -> None:
    """``.message`` is the API's text and ``.code`` its code; ``str()`` says more."""
    err = APIResponseError("the API reported a failure (code 207): X", code="207", api_message="X")
    assert (err.code, err.message) == ("207", "X")
    assert "code 207" in str(err)
    assert APIResponseError("generic", code=None).message == "generic"


def test_invalid_request_error_is_caught_as_value_error() -> None:
    """Callers that catch ValueError for bad input catch ours too."""
    with pytest.raises(ValueError, match="cibil_id"):
        raise InvalidRequestError("cibil_id must not be empty")


@pytest.mark.parametrize(
    ("status", "cls", "words"),
    [
        (400, APIStatusError, "malformed"),
        (401, AuthenticationError, "company code"),
        (403, AuthenticationError, "company code"),
        (404, APIStatusError, "base_url"),
        (408, APIStatusError, "timed out"),
        (418, APIStatusError, "unexpected"),
        (429, RateLimitError, "rate limit"),
        (500, ServerError, "server error"),
        (503, ServerError, "server error"),
        (302, APIStatusError, "redirect"),
    ],
)
def test_status_error_table(status: int, cls: type[APIStatusError], words: str) -> None:
    """``status_error`` picks the class and a message saying what to do."""
    err = status_error(status, {}, "")
    assert type(err) is cls
    assert err.status_code == status
    assert words in str(err)
    assert f"HTTP {status}" in str(err)


def test_status_error_mentions_the_requested_wait() -> None:
    """A Retry-After wait is part of the message and of ``.retry_after``."""
    err = status_error(429, {}, "", retry_after=2.5)
    assert err.retry_after == 2.5
    assert "2.5s" in str(err)


REDACTIONS = [
    # (text, secrets, expected)
    ("company CMP1045 said no", ["CMP1045"], "company *** said no"),
    ("registration AOP-554!", ["AOP-554"], "registration ***!"),
    ("mobile 5550001234 here", [], "mobile *** here"),
    ("acct XXXX99012345", [], "acct XXXX***"),
    ("four 1234 digits stay", [], "four 1234 digits stay"),
    ("line\nbreak\ttab\x00nul", [], "line break tab nul"),
    ("c1\x85next\u2028line\u2029para\x1b[31m", [], "c1 next line para [31m"),
    ("ab is too short to be a secret", ["ab"], "ab is too short to be a secret"),
    ("none and empty secrets", [None, ""], "none and empty secrets"),
    ('{"token": "feedface", "x": 1}', [], '{"token": "***", "x": 1}'),
    ('{"access_token":"a\\"b", "x": 1}', [], '{"access_token":"***", "x": 1}'),
    ('{"accessToken" : "cut-off', [], '{"accessToken" : "***"'),
    ('{"token": null, "status": "False"}', [], '{"token": null, "status": "False"}'),
]


@pytest.mark.parametrize(("text", "secrets", "expected"), REDACTIONS)
def test_redact_table(text: str, secrets: list[str | None], expected: str) -> None:
    """Known secrets, long digit runs and control characters never survive redaction."""
    assert redact(text, secrets) == expected


def test_redact_cuts_to_the_limit() -> None:
    """A long body is cut to the preview size with an ellipsis."""
    out = redact("x" * 1000)
    assert out == "x" * BODY_PREVIEW_CHARS + "…"


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.text(max_size=40),
    secret=st.text(alphabet="ABCDEFGHJKMNPQRSTUVWXYZ-", min_size=3, max_size=12),
    digits=st.integers(10_000, 10**12),
    suffix=st.text(max_size=40),
)
def test_redact_never_leaks(prefix: str, secret: str, digits: int, suffix: str) -> None:
    """Whatever surrounds them, the secret and any 5+ digit number are gone afterwards."""
    out = redact(f"{prefix}{secret} {digits}{suffix}", [secret], limit=10_000)
    assert secret not in out
    assert str(digits) not in out
    assert all(ch >= " " and ch != "\x7f" for ch in out)
