"""Response classification: the cases mutation testing found unpinned (issue 14).

The worst bug this library could have is a failed credit check returned as a history, so
every combination of ``error_code`` and ``status`` the success rule distinguishes is a row
here. The rest pins whole messages, the attributes an error carries (headers, body preview,
status code), the rarer spellings of "nothing" on the slow path, and the status boundaries.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from _data import SEED_401, SEED_SUCCESS

from aopay_async import (
    APIResponseError,
    APIStatusError,
    AuthenticationError,
    CreditHistory,
    ResponseDecodeError,
    ServerError,
)
from aopay_async._decode import IST, _credit_age_months, decode_response
from aopay_async._errors import too_large

BASE: dict[str, Any] = json.loads(SEED_SUCCESS)
#: A synthetic credential, to check it is scrubbed wherever the API echoes it.
SECRET = "CMPSYNTH77"
HEADERS = {"X-Request-Id": "req-synthetic-1"}

Mutation = Callable[[dict[str, Any]], object]


def body_with(mutate: Mutation) -> bytes:
    """The seed's success body after *mutate* changed a deep copy of it."""
    data = copy.deepcopy(BASE)
    mutate(data)
    return json.dumps(data).encode()


def envelope(**fields: object) -> bytes:
    """The seed's success body with its top-level fields replaced (``None``: removed)."""

    def mutate(d: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is None:
                d.pop(key, None)
            else:
                d[key] = value

    return body_with(mutate)


def user(d: dict[str, Any]) -> dict[str, Any]:
    """``data.result.userInfo`` of a success body."""
    return d["data"]["result"]["userInfo"]  # type: ignore[no-any-return]


def account(d: dict[str, Any]) -> dict[str, Any]:
    """The first account of a success body."""
    return d["data"]["result"]["activityInfo"][0]  # type: ignore[no-any-return]


def decode(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> CreditHistory:
    """Decode with :data:`SECRET` among the secrets."""
    return decode_response(status, headers if headers is not None else {}, body, secrets=[SECRET])


def slow_path(d: dict[str, Any]) -> None:
    """Force the slow path: an empty score fails the fast decode (``""`` is no int)."""
    user(d)["cibil_score"] = ""


# -- success or failure: every combination the rule distinguishes -------------------------------

MISSING = None  # the field is absent from the body

SUCCESS_RULE: list[tuple[str, object, object, bool]] = [
    # (id, error_code, status, is a success)
    ("documented", "SPC-200", "SUCCESS", True),
    ("code-ok-status-failed", "SPC-200", "FAILED", False),
    ("code-failed-status-ok", "SPC-500", "SUCCESS", False),
    ("code-failed-status-failed", "SPC-500", "FAILED", False),
    ("no-code-status-ok", MISSING, "SUCCESS", True),
    ("no-code-status-lowercase", MISSING, "success", True),
    ("no-code-status-true", MISSING, True, True),
    ("no-code-status-false", MISSING, False, False),
    ("no-code-status-failed", MISSING, "FAILED", False),
    ("code-ok-no-status", "SPC-200", MISSING, True),
    ("code-ok-status-true", "SPC-200", True, True),
    ("code-ok-status-false", "SPC-200", False, False),
    ("code-ok-status-mixed-case", "SPC-200", "Success", True),
    ("code-failed-no-status", "SPC-500", MISSING, False),
    ("code-failed-status-true", "SPC-500", True, False),
]


@pytest.mark.parametrize(
    ("error_code", "status", "success"),
    [case[1:] for case in SUCCESS_RULE],
    ids=[case[0] for case in SUCCESS_RULE],
)
def test_success_rule(error_code: object, status: object, success: bool) -> None:
    """Success needs a success code (or none) AND a success status (or none), not both absent.

    A failed check must never come back as a history: a failing code with status SUCCESS,
    or SPC-200 with status FAILED, is an APIResponseError carrying the API's code.
    """
    body = envelope(error_code=error_code, status=status, message="No record found")
    if success:
        assert decode(body).user_info.cibil_score == 770
        return
    with pytest.raises(APIResponseError) as info:
        decode(body)
    assert info.value.code == error_code
    assert info.value.message == "No record found"
    assert str(info.value) == f"the API reported a failure (code {error_code}): No record found"


def test_neither_code_nor_status_is_no_documented_shape() -> None:
    """With data but no ``error_code`` and no ``status``, nothing reports success or failure."""
    body = envelope(error_code=MISSING, status=MISSING, message=MISSING)
    with pytest.raises(ResponseDecodeError) as info:
        decode(body)
    assert str(info.value) == (
        "the response is a JSON object of none of the documented shapes (no `error_code`, "
        "`status`, `responsecode` or `code`): not the documented shape"
    )


def test_a_failure_without_a_message_says_only_the_code() -> None:
    """No ``message`` in a failed envelope: the error says the code, and ``.message`` is generic."""
    with pytest.raises(APIResponseError) as info:
        decode(envelope(error_code="SPC-500", status="FAILED", message=MISSING))
    assert str(info.value) == "the API reported a failure (code SPC-500)"
    assert info.value.message == "the API reported a failure (code SPC-500)"


def test_the_failure_message_is_redacted() -> None:
    """A credential the API echoes in a failed envelope's message is scrubbed."""
    body = envelope(error_code="SPC-401", status="FAILED", message=f"bad company {SECRET}")
    with pytest.raises(APIResponseError) as info:
        decode(body)
    assert info.value.message == "bad company ***"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("fields", "error_code", "status", "message"),
    [
        ({"error_code": MISSING}, "", "SUCCESS", "success"),
        ({"status": True}, "SPC-200", "", "success"),
        ({"message": MISSING}, "SPC-200", "SUCCESS", ""),
    ],
    ids=["no-code", "status-true", "no-message"],
)
def test_absent_envelope_fields_read_as_empty_strings(
    fields: dict[str, object], error_code: str, status: str, message: str
) -> None:
    """A success without a code, with ``status: true`` or without a message reads back ``""``."""
    history = decode(envelope(**fields))
    assert (history.error_code, history.status, history.message) == (error_code, status, message)


@pytest.mark.parametrize(
    ("mutate", "missing"),
    [
        (lambda d: d["data"].pop("result"), "`$.data.result`"),
        (lambda d: d["data"]["result"].pop("userInfo"), "`$.data.result.userInfo`"),
    ],
    ids=["no-result", "no-user-info"],
)
def test_success_without_its_payload_says_exactly_what_is_missing(
    mutate: Mutation, missing: str
) -> None:
    """The whole message names the missing path and the rule it breaks."""
    with pytest.raises(ResponseDecodeError) as info:
        decode(body_with(mutate))
    assert str(info.value) == (
        f"the API reported success but sent no {missing}: not the documented shape"
    )


# -- the slow path's spellings of "nothing" -----------------------------------------------------

SLOW_PATH: list[tuple[str, Mutation, Callable[[CreditHistory], object], object]] = [
    ("opened-empty", lambda d: account(d).update(date_opened=""),
     lambda h: h.activity_info[0].date_opened, None),
    ("closed-empty", lambda d: account(d).update(date_closed=""),
     lambda h: h.activity_info[0].date_closed, None),
    ("cibil-id-null", lambda d: user(d).update(cibil_id=None), lambda h: h.user_info.cibil_id, ""),
    ("first-name-null", lambda d: user(d).update(first_name=None),
     lambda h: h.user_info.first_name, ""),
    ("middle-name-null", lambda d: user(d).update(middle_name=None),
     lambda h: h.user_info.middle_name, ""),
    ("last-name-null", lambda d: user(d).update(last_name=None),
     lambda h: h.user_info.last_name, ""),
    ("mobile-null", lambda d: user(d).update(mobile_number=None),
     lambda h: h.user_info.mobile_number, ""),
    ("activity-null", lambda d: (d["data"]["result"].update(activityInfo=None), slow_path(d)),
     lambda h: h.activity_info, []),
    ("activity-null-alone", lambda d: d["data"]["result"].update(activityInfo=None),
     lambda h: h.activity_info, []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "read", "expected"),
    [case[1:] for case in SLOW_PATH],
    ids=[case[0] for case in SLOW_PATH],
)
def test_rarer_spellings_of_nothing(
    mutate: Mutation, read: Callable[[CreditHistory], object], expected: object
) -> None:
    """``""`` dates become None and null names/ids/mobile become ``""``, whichever path decodes."""
    assert read(decode(body_with(mutate))) == expected


@pytest.mark.parametrize(
    ("fetched", "wall"),
    [
        ("2023-08-16T10:06:46Z", (2023, 8, 16, 15, 36, 46)),
        ("2023-08-16T15:36:46+05:30", (2023, 8, 16, 15, 36, 46)),
        ("2023-08-16T03:06:46-07:00", (2023, 8, 16, 15, 36, 46)),
    ],
)
def test_a_fetch_date_with_a_zone_is_shown_in_india_time(
    fetched: str, wall: tuple[int, ...]
) -> None:
    """A fetch date that already carries a zone is converted to Asia/Kolkata, not elsewhere.

    Equality of aware datetimes compares instants only, so the zone and the wall-clock
    fields are checked themselves.
    """
    when = decode(
        body_with(lambda d: user(d).update(cibil_score_fetch_date=fetched))
    ).user_info.cibil_score_fetch_date
    assert when is not None
    assert when.tzinfo is IST
    assert when.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert (when.year, when.month, when.day, when.hour, when.minute, when.second) == wall


# -- the error shapes: whole messages and every attribute ---------------------------------------

AUTH_MESSAGE = (
    "the API refused the credentials (responsecode {code}): check the company code and "
    "registration id"
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (SEED_401, AUTH_MESSAGE.format(code=401) + "; it said: Unauthorized access"),
        (b'{"responsecode": 403}', AUTH_MESSAGE.format(code=403)),
        (b'{"responsecode": 401, "message": ""}', AUTH_MESSAGE.format(code=401)),
        (
            f'{{"responsecode": 401, "message": "company {SECRET} unknown"}}'.encode(),
            AUTH_MESSAGE.format(code=401) + "; it said: company *** unknown",
        ),
    ],
    ids=["seed", "bare-403", "empty-message", "secret-in-message"],
)
def test_401_shape_message_word_for_word(body: bytes, message: str) -> None:
    """The 401 shape's message: what happened, what to check, and the API's own (redacted) words."""
    with pytest.raises(AuthenticationError) as info:
        decode(body)
    assert str(info.value) == message


@pytest.mark.parametrize("status", [200, 400])
def test_401_shape_keeps_the_headers_and_a_redacted_body(status: int) -> None:
    """An AuthenticationError from the 401 shape carries the response headers and body preview."""
    body = f'{{"responsecode": 401, "status": false, "message": "no {SECRET}"}}'.encode()
    with pytest.raises(AuthenticationError) as info:
        decode(body, status, HEADERS)
    err = info.value
    assert err.headers["X-Request-Id"] == "req-synthetic-1"
    assert err.body == '{"responsecode": 401, "status": false, "message": "no ***"}'
    assert err.status_code == 401


def test_an_error_shape_with_odd_types_still_classifies() -> None:
    """A 401 shape that fails the strict decode (a list as message) is still AuthenticationError.

    It keeps the headers and the redacted body, and leaves the unreadable message out.
    """
    body = f'{{"responsecode": 401, "message": ["{SECRET}"]}}'.encode()
    with pytest.raises(AuthenticationError) as info:
        decode(body, 200, HEADERS)
    err = info.value
    assert str(err) == AUTH_MESSAGE.format(code=401)
    assert err.headers["X-Request-Id"] == "req-synthetic-1"
    assert err.body == '{"responsecode": 401, "message": ["***"]}'


def test_a_gateway_shape_with_odd_types_still_classifies() -> None:
    """A gateway shape with a list in it fails the strict decode yet reports its code and text."""
    body = f'{{"code": "207", "description": "bad {SECRET}", "status": ["False"]}}'.encode()
    with pytest.raises(APIResponseError) as info:
        decode(body)
    assert (info.value.code, info.value.message) == ("207", "bad ***")


def test_gateway_description_is_redacted() -> None:
    """A credential in the gateway shape's description is scrubbed from the error."""
    body = f'{{"code": "207", "description": "company {SECRET}", "status": "False"}}'.encode()
    with pytest.raises(APIResponseError) as info:
        decode(body)
    assert info.value.message == "company ***"
    assert str(info.value) == "the API reported a failure (code 207): company ***"


# -- HTTP statuses: the boundaries and the bodies that claim another status ---------------------


def test_http_300_is_a_status_error_even_with_a_success_body() -> None:
    """300 is not 2xx: a redirect is never followed, nor its body read as a history."""
    with pytest.raises(APIStatusError) as info:
        decode(SEED_SUCCESS, 300)
    assert type(info.value) is APIStatusError
    assert info.value.status_code == 300


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_whose_body_says_401_is_a_server_error(status: int) -> None:
    """A server error stays a ServerError (so it is retried) though its body says 401."""
    with pytest.raises(ServerError) as info:
        decode(SEED_401, status)
    assert info.value.status_code == status


@pytest.mark.parametrize(
    ("status", "body"),
    [(401, SEED_401), (403, SEED_401), (401, b'{"responsecode": 403}')],
)
def test_http_401_403_speak_of_the_status_not_the_body(status: int, body: bytes) -> None:
    """On HTTP 401/403 the status decides the error (and its code), whatever the body says."""
    with pytest.raises(AuthenticationError) as info:
        decode(body, status)
    assert info.value.status_code == status
    assert f"(HTTP {status})" in str(info.value)
    assert "responsecode" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "code"),
    [(SEED_401, 401), (b'{"responsecode": "403", "message": "Forbidden"}', 403)],
)
def test_a_4xx_whose_body_says_401_or_403_is_an_authentication_error(
    body: bytes, code: int
) -> None:
    """A 400 or 404 with a 401/403 body is bad credentials, with the headers kept."""
    with pytest.raises(AuthenticationError) as info:
        decode(body, 400, HEADERS)
    assert info.value.status_code == code
    assert info.value.headers["X-Request-Id"] == "req-synthetic-1"


def test_a_status_error_body_preview_is_redacted_and_bounded() -> None:
    """The preview scrubs secrets and reads at most 2 KiB of the body before redacting."""
    with pytest.raises(ServerError) as info:
        decode(f"down for {SECRET}".encode(), 502)
    assert info.value.body == "down for ***"
    # 2,047 digits collapse to "***": only one more byte of the 2 KiB read is left to show.
    with pytest.raises(ServerError) as info:
        decode(b"1" * 2047 + b"xyz", 502)
    assert info.value.body == "***x"


def test_a_status_error_body_of_invalid_utf8_is_previewed_not_refused() -> None:
    """Invalid UTF-8 in an error page is replaced in the preview; the status error stands."""
    with pytest.raises(ServerError) as info:
        decode(b"bad \xff\xfe gateway", 502)
    assert info.value.body == "bad \ufffd\ufffd gateway"


# -- bodies that are no JSON: the whole message -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the response body is empty (HTTP 200)"),
        (
            b"\r\n  <html><body>Bad Gateway</body></html>",
            "the response is an HTML page, not JSON (an error page from a proxy or gateway?) "
            "(HTTP 200)",
        ),
        (b'{"error_code": ', "the response is not valid JSON (malformed or cut short) (HTTP 200)"),
    ],
    ids=["empty", "html-after-whitespace", "cut"],
)
def test_unreadable_body_message_word_for_word(body: bytes, message: str) -> None:
    """What the body looks like decides the message (leading whitespace skipped), whole."""
    with pytest.raises(ResponseDecodeError) as info:
        decode(body)
    assert str(info.value) == message


def test_too_large_message() -> None:
    """The over-size error names the limit and says the body was not read whole."""
    assert str(too_large(1024)) == (
        "the response body is larger than max_response_bytes (1024 bytes); "
        "it was refused without being read whole"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"error_code": "SPC-200", "message": "\xff\xfe"}',
            "the response is not valid UTF-8 (a gateway re-encoding the body?) (HTTP 200)",
        ),
        (b"[" * 100_000, "the response is JSON nested too deeply to read (HTTP 200)"),
    ],
    ids=["invalid-utf8", "deep-nesting"],
)
def test_hostile_body_message_word_for_word(body: bytes, message: str) -> None:
    """Invalid UTF-8 and nesting too deep to read each say so, whole."""
    with pytest.raises(ResponseDecodeError) as info:
        decode(body)
    assert str(info.value) == message


def test_a_fetch_date_outside_the_calendar_in_india_says_so() -> None:
    """A zoned fetch date whose India time falls before year 1 is refused, saying why."""
    body = body_with(lambda d: user(d).update(cibil_score_fetch_date="0001-01-01T00:00:00+14:00"))
    with pytest.raises(ResponseDecodeError) as info:
        decode(body)
    assert str(info.value) == (
        "the response's `cibil_score_fetch_date` is outside the years 1-9999 in India time: "
        "not a real fetch date"
    )


@pytest.mark.parametrize(("length", "cached"), [(64, 1), (65, 0)])
def test_only_short_credit_ages_are_cached(length: int, cached: int) -> None:
    """Credit ages up to 64 characters are cached; a longer (hostile) one is parsed, not kept."""
    text = "8 Years 8 Months".ljust(length, ".")
    _credit_age_months.cache_clear()
    history = decode(body_with(lambda d: d["data"]["result"]["creditAge"].update(credit_age=text)))
    assert history.credit_age is not None
    assert history.credit_age.months == 104
    assert _credit_age_months.cache_info().currsize == cached
