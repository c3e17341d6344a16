"""Response classification as tables: every shape of the seed, each conversion, each error.

``decode_response`` is pure, so these tests need no event loop and no server.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from _data import SEED_401, SEED_GATEWAY, SEED_SUCCESS, SEED_TRUNCATED
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async import (
    AOPayError,
    APIResponseError,
    APIStatusError,
    AuthenticationError,
    CreditHistory,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)
from aopay_async._decode import IST, decode_response, parse_credit_age

BASE: dict[str, Any] = json.loads(SEED_SUCCESS)

Mutation = Callable[[dict[str, Any]], object]


def body_with(mutate: Mutation) -> bytes:
    """The seed's success body after *mutate* changed a deep copy of it."""
    data = copy.deepcopy(BASE)
    mutate(data)
    return json.dumps(data).encode()


def result(d: dict[str, Any]) -> dict[str, Any]:
    """``data.result`` of a success body."""
    return d["data"]["result"]  # type: ignore[no-any-return]


def user(d: dict[str, Any]) -> dict[str, Any]:
    """``data.result.userInfo`` of a success body."""
    return result(d)["userInfo"]  # type: ignore[no-any-return]


def account(d: dict[str, Any]) -> dict[str, Any]:
    """The first account of a success body."""
    return result(d)["activityInfo"][0]  # type: ignore[no-any-return]


def decode(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> CreditHistory:
    """Decode with no secrets."""
    return decode_response(status, headers or {}, body)


# -- the success shape --------------------------------------------------------------------------


def test_seed_success_example_decodes_to_every_documented_attribute() -> None:
    """The seed's success example (made valid JSON) fills every attribute with the right type."""
    h = decode(SEED_SUCCESS)
    assert (h.error_code, h.status, h.message) == ("SPC-200", "SUCCESS", "success")
    assert h.soft_ref_id == "23081815284725JQJCESXDTP2"
    u = h.user_info
    assert u.cibil_id == "SYN0001*"
    assert u.cibil_score == 770
    assert (u.first_name, u.middle_name, u.last_name) == ("Testfirst", "", "Sandboxlast")
    assert u.mobile_number == "5550013***"
    assert u.cibil_score_fetch_date == dt.datetime(2023, 8, 16, 15, 36, 46, tzinfo=IST)
    assert u.cibil_score_fetch_date.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert len(h.activity_info) == 3
    first, _, last = h.activity_info
    assert first.account_detail_id == "9990001**"
    assert first.member_name == "ADIBIRHFL"
    assert first.account_number == "XXXXXXXXXXXXXXXX9901"
    assert first.date_opened == dt.date(2023, 6, 24)
    assert first.date_closed is None
    assert first.newly_opened is True
    assert first.name == "Housing Loan"
    assert last.date_closed == dt.date(2023, 6, 20)
    assert last.newly_opened is False
    assert last.name == "Personal Loan"
    assert h.credit_age is not None
    assert (h.credit_age.text, h.credit_age.months) == ("8 Years 8 Months", 104)
    assert h.credit_mix is not None
    assert (h.credit_mix.secured_loan, h.credit_mix.unsecured_loan) == (4, 2)
    assert h.credit_mix.total_percent_completed == 75
    assert (h.inquiry_count, h.last_month_inquiry_count, h.last_6_month_inquiry_count) == (14, 0, 2)
    assert h.credit_utilize is not None
    assert h.credit_utilize.credit_utilize == 18.0
    assert isinstance(h.credit_utilize.credit_utilize, float)
    assert h.credit_utilize.credit_limit == Decimal("255000")
    assert h.credit_utilize.total_balance == Decimal("48032")
    assert h.on_time_payment_percentile == 93
    assert h.access_token == "feedfacefeedfacefeedfacefeedfacefeedface"


CONVERSIONS: list[tuple[str, Mutation, str, object]] = [
    # (id, change to the seed body, attribute path to read, expected value)
    ("score-string", lambda d: user(d).update(cibil_score="770"), "user_info.cibil_score", 770),
    ("score-int", lambda d: user(d).update(cibil_score=705), "user_info.cibil_score", 705),
    ("score-empty", lambda d: user(d).update(cibil_score=""), "user_info.cibil_score", None),
    ("score-spaced", lambda d: user(d).update(cibil_score=" 770 "), "user_info.cibil_score", 770),
    ("score-blank", lambda d: user(d).update(cibil_score="  "), "user_info.cibil_score", None),
    ("score-null", lambda d: user(d).update(cibil_score=None), "user_info.cibil_score", None),
    ("score-missing", lambda d: user(d).pop("cibil_score"), "user_info.cibil_score", None),
    ("fetch-naive-is-india", lambda d: user(d).update(cibil_score_fetch_date="2023-01-02 03:04:05"),
     "user_info.cibil_score_fetch_date", dt.datetime(2023, 1, 2, 3, 4, 5, tzinfo=IST)),
    ("fetch-utc-converted", lambda d: user(d).update(cibil_score_fetch_date="2023-08-16T10:06:46Z"),
     "user_info.cibil_score_fetch_date", dt.datetime(2023, 8, 16, 15, 36, 46, tzinfo=IST)),
    ("fetch-empty", lambda d: user(d).update(cibil_score_fetch_date=""),
     "user_info.cibil_score_fetch_date", None),
    ("fetch-zeros", lambda d: user(d).update(cibil_score_fetch_date="0000-00-00 00:00:00"),
     "user_info.cibil_score_fetch_date", None),
    ("fetch-zero-date", lambda d: user(d).update(cibil_score_fetch_date="0000-00-00"),
     "user_info.cibil_score_fetch_date", None),
    ("name-null", lambda d: user(d).update(first_name=None), "user_info.first_name", ""),
    ("mobile-missing", lambda d: user(d).pop("mobile_number"), "user_info.mobile_number", ""),
    ("closed-zero", lambda d: account(d).update(date_closed="0000-00-00"), "a0.date_closed", None),
    ("closed-empty", lambda d: account(d).update(date_closed=""), "a0.date_closed", None),
    ("closed-null", lambda d: account(d).update(date_closed=None), "a0.date_closed", None),
    ("opened-zero", lambda d: account(d).update(date_opened="0000-00-00"), "a0.date_opened", None),
    ("closed-date", lambda d: account(d).update(date_closed="2024-02-29"), "a0.date_closed",
     dt.date(2024, 2, 29)),
    ("new-1", lambda d: account(d).update(newly_opened="1"), "a0.newly_opened", True),
    ("new-0", lambda d: account(d).update(newly_opened="0"), "a0.newly_opened", False),
    ("new-int", lambda d: account(d).update(newly_opened=0), "a0.newly_opened", False),
    ("new-bool", lambda d: account(d).update(newly_opened=True), "a0.newly_opened", True),
    ("new-missing", lambda d: account(d).pop("newly_opened"), "a0.newly_opened", False),
    ("mix-int", lambda d: result(d)["creditMix"].update(secured_loan=3),
     "credit_mix.secured_loan", 3),
    ("utilize-fraction", lambda d: result(d)["creditUtilize"].update(credit_utilize="18.5"),
     "credit_utilize.credit_utilize", 18.5),
    ("limit-decimal", lambda d: result(d)["creditUtilize"].update(credit_limit="255000.75"),
     "credit_utilize.credit_limit", Decimal("255000.75")),
    ("count-string", lambda d: result(d).update(inquiryCount="14"), "inquiry_count", 14),
    ("count-null", lambda d: result(d).update(inquiryCount=None), "inquiry_count", None),
    ("percentile-string", lambda d: result(d).update(onTimePaymentPercentile="93"),
     "on_time_payment_percentile", 93),
    ("age-months-only", lambda d: result(d)["creditAge"].update(credit_age="7 Months"),
     "credit_age.months", 7),
    ("age-unreadable-text", lambda d: result(d)["creditAge"].update(credit_age="n/a"),
     "credit_age.text", "n/a"),
    ("age-unreadable-months", lambda d: result(d)["creditAge"].update(credit_age="n/a"),
     "credit_age.months", None),
    ("no-activity", lambda d: result(d).pop("activityInfo"), "activity_info", []),
    ("null-activity", lambda d: result(d).update(activityInfo=None), "activity_info", []),
    ("no-age", lambda d: result(d).pop("creditAge"), "credit_age", None),
    ("no-mix", lambda d: result(d).pop("creditMix"), "credit_mix", None),
    ("no-utilize", lambda d: result(d).pop("creditUtilize"), "credit_utilize", None),
    ("no-count", lambda d: result(d).pop("lastMonthInquiryCount"), "last_month_inquiry_count",
     None),
    ("no-percentile", lambda d: result(d).pop("onTimePaymentPercentile"),
     "on_time_payment_percentile", None),
    ("no-token", lambda d: d["data"].pop("access_token"), "access_token", None),
    ("no-soft-ref", lambda d: d.pop("soft_ref_id"), "soft_ref_id", None),
    ("unknown-fields", lambda d: (d.update(extra={"x": [1]}), user(d).update(pan="X")),
     "user_info.cibil_score", 770),
    ("status-lowercase", lambda d: d.update(status="success"), "status", "success"),
]  # fmt: skip


def read(history: CreditHistory, path: str) -> object:
    """Follow a dotted attribute *path*; ``a0`` is the first account."""
    value: object = history
    for part in path.split("."):
        value = history.activity_info[0] if part == "a0" else getattr(value, part)
    return value


@pytest.mark.parametrize(
    ("mutate", "path", "expected"),
    [case[1:] for case in CONVERSIONS],
    ids=[case[0] for case in CONVERSIONS],
)
def test_conversion(mutate: Mutation, path: str, expected: object) -> None:
    """Each of the API's spellings converts to the documented Python value."""
    assert read(decode(body_with(mutate)), path) == expected


def test_fetch_date_is_aware_in_asia_kolkata() -> None:
    """The naive fetch time is read as India time: the result is aware, offset +05:30."""
    when = decode(SEED_SUCCESS).user_info.cibil_score_fetch_date
    assert when is not None
    assert when.tzinfo is not None
    assert when.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert when.astimezone(dt.UTC) == dt.datetime(2023, 8, 16, 10, 6, 46, tzinfo=dt.UTC)


def test_zero_date_inside_a_string_value_is_not_rewritten() -> None:
    """The ``"0000-00-00"`` fast path never changes a string that merely contains it."""
    body = body_with(lambda d: account(d).update(name='Loan "0000-00-00" x'))
    assert decode(body).activity_info[0].name == 'Loan "0000-00-00" x'


def test_zero_date_as_a_whole_string_elsewhere_is_kept_or_refused_never_wrong() -> None:
    """A ``"0000-00-00"`` in a non-date string field is never silently changed to a wrong value."""
    body = body_with(lambda d: account(d).update(member_name="0000-00-00"))
    try:
        member = decode(body).activity_info[0].member_name
    except ResponseDecodeError:
        return
    assert member in ("0000-00-00", "")


WRONG_KINDS: list[tuple[str, Mutation, str]] = [
    ("score-text", lambda d: user(d).update(cibil_score="abc"),
     "$.data.result.userInfo.cibil_score"),
    ("fetch-format", lambda d: user(d).update(cibil_score_fetch_date="16/08/2023"),
     "$.data.result.userInfo.cibil_score_fetch_date"),
    ("name-number", lambda d: user(d).update(first_name=5), "$.data.result.userInfo.first_name"),
    ("opened-text", lambda d: account(d).update(date_opened="yesterday"),
     "$.data.result.activityInfo[0].date_opened"),
    ("new-2", lambda d: account(d).update(newly_opened="2"),
     "$.data.result.activityInfo[0].newly_opened"),
    ("activity-object", lambda d: result(d).update(activityInfo={}), "$.data.result.activityInfo"),
    ("count-text", lambda d: result(d).update(inquiryCount="many"), "$.data.result.inquiryCount"),
    ("percentile-float", lambda d: result(d).update(onTimePaymentPercentile=93.5),
     "$.data.result.onTimePaymentPercentile"),
    ("limit-text", lambda d: result(d)["creditUtilize"].update(credit_limit="lots"),
     "$.data.result.creditUtilize.credit_limit"),
    ("mix-text", lambda d: result(d)["creditMix"].update(secured_loan="four"),
     "$.data.result.creditMix.secured_loan"),
    ("result-list", lambda d: d["data"].update(result=[]), "$.data.result"),
    ("token-number", lambda d: d["data"].update(access_token=5), "$.data.access_token"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "path"), [case[1:] for case in WRONG_KINDS], ids=[case[0] for case in WRONG_KINDS]
)
def test_wrong_kind_names_the_field_path(mutate: Mutation, path: str) -> None:
    """A value of the wrong kind is a ResponseDecodeError whose message names the wire path."""
    with pytest.raises(ResponseDecodeError) as info:
        decode(body_with(mutate))
    assert f"`{path}`" in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "missing"),
    [
        (lambda d: d.pop("data"), "$.data.result"),
        (lambda d: d["data"].pop("result"), "$.data.result"),
        (lambda d: result(d).pop("userInfo"), "$.data.result.userInfo"),
    ],
    ids=["no-data", "no-result", "no-user-info"],
)
def test_success_without_its_payload_is_a_decode_error(mutate: Mutation, missing: str) -> None:
    """A "SUCCESS" without ``data.result.userInfo`` is not the documented shape."""
    with pytest.raises(ResponseDecodeError, match="documented shape") as info:
        decode(body_with(mutate))
    assert missing in str(info.value)


# -- the error shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("http_status", [200, 401])
def test_401_shape_is_authentication_error(http_status: int) -> None:
    """The seed's 401 shape ``{responsecode, status, message}`` means bad credentials."""
    with pytest.raises(AuthenticationError) as info:
        decode(SEED_401, http_status)
    assert info.value.status_code == 401
    assert "company code" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        b'{"responsecode": "401", "status": false, "message": "Unauthorized"}',
        b'{"responsecode": 401, "status": "false", "message": "Unauthorized"}',
        b'{"responsecode": 403, "status": false, "message": "Forbidden"}',
        b'{"responsecode": 401}',
    ],
    ids=["code-as-string", "status-as-string", "403", "bare"],
)
def test_401_shape_variants_are_authentication_errors(body: bytes) -> None:
    """Odd types inside the 401 shape still classify as AuthenticationError, not a decode error."""
    with pytest.raises(AuthenticationError):
        decode(body)


def test_401_shape_inside_a_400_is_authentication_error() -> None:
    """A 4xx whose body says ``responsecode: 401`` is an AuthenticationError too."""
    with pytest.raises(AuthenticationError):
        decode(SEED_401, 400)


def test_other_responsecode_with_200_is_api_response_error() -> None:
    """``responsecode`` other than 401/403 in a 200 is the API reporting a failure."""
    body = b'{"responsecode": 500, "status": false, "message": "Internal failure"}'
    with pytest.raises(APIResponseError) as info:
        decode(body)
    assert info.value.code == "500"
    assert info.value.message == "Internal failure"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (SEED_GATEWAY, "207", "Amount is Requaired"),
        (b'{"code": 207, "description": "Amount is Requaired", "status": "False"}', "207",
         "Amount is Requaired"),
        (b'{"code": "209", "status": "False"}', "209", None),
        (b'{"description": "Something failed", "status": "False"}', None, "Something failed"),
    ],
    ids=["seed-gateway", "code-int", "no-description", "no-code"],
)  # fmt: skip
def test_gateway_shape_with_200_is_api_response_error(
    body: bytes, code: str | None, message: str | None
) -> None:
    """The gateway shape with HTTP 200 is an APIResponseError with the API's code and text."""
    with pytest.raises(APIResponseError) as info:
        decode(body)
    assert info.value.code == code
    if message is not None:
        assert info.value.message == message
        assert message in str(info.value)


def test_failed_success_envelope_is_api_response_error() -> None:
    """A success-shaped envelope with a failing code and status reports that failure."""
    body = body_with(lambda d: d.update(error_code="SPC-500", status="FAILED", message="No record"))
    with pytest.raises(APIResponseError) as info:
        decode(body)
    assert info.value.code == "SPC-500"
    assert info.value.message == "No record"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "HTML"),
        (b"<!DOCTYPE html><html></html>", "HTML"),
        (SEED_TRUNCATED, "not valid JSON"),
        (SEED_SUCCESS[:-40], "not valid JSON"),
        (b'{"client_order_id": "1234", "cibil_id": "xyz" "CompanyCode": "X"}', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[]", "documented shape"),
        (b"null", "documented shape"),
        (b'"SUCCESS"', "documented shape"),
        (b"770", "documented shape"),
    ],
    ids=[
        "empty",
        "whitespace",
        "html",
        "html-doctype",
        "seed-truncated",
        "cut-mid-value",
        "seed-missing-comma",
        "bad-utf8",
        "array",
        "null",
        "string",
        "number",
    ],
)
def test_unreadable_body_is_decode_error(body: bytes, says: str) -> None:
    """Bodies that are no JSON object (like the seed's own cut example) are ResponseDecodeError."""
    with pytest.raises(ResponseDecodeError, match=says) as info:
        decode(body)
    assert "HTTP 200" in str(info.value)


@pytest.mark.parametrize(
    "body", [b"{}", b'{"foo": 1}', b'{"data": {}}'], ids=["empty-object", "unknown", "bare-data"]
)
def test_object_of_no_documented_shape_is_decode_error(body: bytes) -> None:
    """A JSON object matching none of the three shapes is "not the documented shape".

    It reports no failure, so it is not an APIResponseError (whose ``.code`` would be None
    and whose message would claim the API reported a failure).
    """
    with pytest.raises(ResponseDecodeError, match="documented shape"):
        decode(body)


# -- HTTP statuses ------------------------------------------------------------------------------

STATUSES: list[tuple[int, type[APIStatusError]]] = [
    (301, APIStatusError),
    (400, APIStatusError),
    (401, AuthenticationError),
    (403, AuthenticationError),
    (404, APIStatusError),
    (408, APIStatusError),
    (409, APIStatusError),
    (418, APIStatusError),
    (429, RateLimitError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
    (599, ServerError),
]


@pytest.mark.parametrize(("status", "cls"), STATUSES)
def test_status_maps_to_its_class(status: int, cls: type[APIStatusError]) -> None:
    """Each non-2xx status raises exactly its class, carrying the status code."""
    with pytest.raises(APIStatusError) as info:
        decode(b'{"message": "no"}', status)
    assert type(info.value) is cls
    assert info.value.status_code == status
    assert f"HTTP {status}" in str(info.value)


def test_html_502_is_server_error_with_a_preview() -> None:
    """A proxy's HTML 502 page is a ServerError (so it is retried), its body kept short."""
    page = b"<html><body>" + b"Bad Gateway " * 100 + b"</body></html>"
    with pytest.raises(ServerError) as info:
        decode(page, 502, {"Content-Type": "text/html"})
    assert info.value.status_code == 502
    assert info.value.body.startswith("<html>")
    assert len(info.value.body) <= 201


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [
        (429, {"Retry-After": "3"}, 3.0),
        (429, {"retry-after": "2"}, 2.0),
        (429, {"RETRY-AFTER": "0"}, 0.0),
        (503, {"Retry-After": "1.5"}, 1.5),
        (429, {}, None),
        (429, {"Retry-After": "soon"}, None),
        (500, {"Retry-After": "3"}, None),
        (502, {"Retry-After": "3"}, None),
    ],
)
def test_retry_after_is_read_on_429_and_503_only(
    status: int, headers: dict[str, str], retry_after: float | None
) -> None:
    """``Retry-After`` (any header case) lands in ``.retry_after`` for 429 and 503 only."""
    with pytest.raises(APIStatusError) as info:
        decode(b"", status, headers)
    assert info.value.retry_after == retry_after


def test_status_error_keeps_the_headers() -> None:
    """``.headers`` holds the response headers, for diagnostics."""
    with pytest.raises(ServerError) as info:
        decode(b"", 503, {"X-Request-Id": "abc"})
    assert info.value.headers["X-Request-Id"] == "abc"


@pytest.mark.parametrize("status", [200, 201, 203])
def test_any_2xx_with_a_success_body_decodes(status: int) -> None:
    """Every 2xx is judged by its body."""
    assert decode(SEED_SUCCESS, status).user_info.cibil_score == 770


@pytest.mark.parametrize("status", [200, 204])
def test_2xx_without_a_body_is_decode_error(status: int) -> None:
    """An empty 2xx is a ResponseDecodeError, not a success with nothing in it."""
    with pytest.raises(ResponseDecodeError, match="empty"):
        decode(b"", status)


# -- credit age ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "months"),
    [
        ("8 Years 8 Months", 104),
        ("1 Year 1 Month", 13),
        ("0 Years 0 Months", 0),
        ("10 Years", 120),
        ("7 Months", 7),
        ("2 yrs 3 mths", 27),
        ("3y 4m", 40),
        ("8 YEARS 8 MONTHS", 104),
        ("", None),
        ("n/a", None),
        ("Years Months", None),
    ],
)
def test_parse_credit_age(text: str, months: int | None) -> None:
    """Credit ages in the API's spellings become whole months; anything else None."""
    assert parse_credit_age(text) == months


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 99), st.integers(0, 11))
def test_parse_credit_age_round_trips(years: int, months: int) -> None:
    """Any "Y Years M Months" reads back as ``12*Y + M``."""
    assert parse_credit_age(f"{years} Years {months} Months") == 12 * years + months


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_one_of_ours(body: bytes) -> None:
    """Whatever the bytes, decoding returns a history or raises one of our errors, never crashes."""
    with contextlib.suppress(ResponseDecodeError, APIResponseError, AuthenticationError):
        decode(body)


# -- hostile bodies: each once escaped as something other than an AOPayError -------------------


def _fetched_at(when: str) -> bytes:
    return body_with(lambda d: user(d).update(cibil_score_fetch_date=when))


HOSTILE: list[tuple[str, bytes, str]] = [
    ("latin1-name", SEED_SUCCESS.replace(b'"first_name": "', b'"first_name": "Jos\xe9'), "UTF-8"),
    ("latin1-message", b'{"status": "SUCCESS", "message": "Jos\xe9"}', "UTF-8"),
    ("fetch-date-before-year-1", _fetched_at("0001-01-01T00:00:00+14:00"), "1-9999"),
    ("fetch-date-after-9999", _fetched_at("9999-12-31T23:59:59-12:00"), "1-9999"),
    ("brackets", b"[" * 100_000, "nested too deeply"),
    ("nested-objects", b'{"a":' * 100_000, "nested too deeply"),
    ("nested-in-result", SEED_SUCCESS.replace(b'"userInfo": {', b'"x": ' + b"[" * 50_000, 1), ""),
]


@pytest.mark.parametrize("status", [200, 400, 401, 429, 503])
@pytest.mark.parametrize(("body", "says"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_body_raises_one_of_ours_without_its_bytes(
    body: bytes, says: str, status: int
) -> None:
    """Invalid UTF-8, out-of-range dates and deep nesting are our errors, for 2xx and 4xx/5xx alike.

    The error's message and repr never carry the raw bytes (a Latin-1 name was seen verbatim in
    a UnicodeDecodeError's repr) and it is not chained to the exception that quoted them.
    """
    with pytest.raises(AOPayError) as info:
        decode(body, status)
    err = info.value
    if status == 200:
        assert isinstance(err, ResponseDecodeError)
        assert says in str(err)
    for text in (str(err), repr(err)):
        assert "Jos" not in text
        assert "\\xe9" not in text
    assert err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__


def test_credit_age_of_4301_digits_is_unreadable_not_a_crash() -> None:
    """A credit age past Python's int-string limit reads as None (no ValueError escapes)."""
    body = body_with(lambda d: result(d).update(creditAge={"credit_age": "9" * 5000 + " Years"}))
    history = decode(body)
    assert history.credit_age is not None
    assert history.credit_age.months is None
    assert parse_credit_age("9" * 5000 + " Years 3 Months") == 3


def test_an_unexpected_exception_inside_the_decoder_is_contained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any non-AOPayError raised while decoding becomes a ResponseDecodeError naming its type."""
    import aopay_async._decode as module

    def broken(*_: object) -> None:
        raise KeyError("5557157123 Jose")

    monkeypatch.setattr(module, "_history", broken)
    with pytest.raises(ResponseDecodeError, match=r"\(KeyError\) \(HTTP 200\)") as info:
        decode(SEED_SUCCESS)
    assert "5557157123" not in repr(info.value)
    assert info.value.__cause__ is None
