"""Response classification: (status, headers, body bytes) -> a CreditHistory or one error.

This module owns the wire format of GetCreditHistory's answers and every conversion the
API's quirks need: numbers sent as strings, ``"0000-00-00"`` for "no date", ``"1"``/``"0"``
for booleans, a naive fetch time meant as India time, and three response shapes (success,
the 401 shape ``{responsecode, status, message}``, the gateway shape ``{code, description,
status: "False"}`` that can arrive with HTTP 200). It is pure: it never awaits, never touches
a socket, and never imports aiohttp (a test checks ``sys.modules``).

Speed: the decoders are built once, at import; msgspec's lax mode (``strict=False``) turns
numeric strings into int/float/Decimal and "1"/"0" into bool natively, which costs almost
nothing. The one conversion msgspec cannot do natively is "0000-00-00" -> None; rather than a
per-value hook (which doubled the decode cost when measured), the raw bytes get the JSON
token ``"0000-00-00"`` replaced by ``null`` before decoding. If that ever broke a body (the
token inside a string after an escaped quote), decoding fails and the untouched body is
decoded again, so the worst case is a clear ResponseDecodeError, never a wrong value.

Containment: for any status, headers and bytes, :func:`decode_response` returns a history or
raises an :class:`AOPayError`. Each hostile input known to escape as something else has its own
fix (invalid UTF-8, deep nesting, a fetch date at the datetime limits, a 4,301-digit number);
behind them, one containment point turns anything else that escapes into a
ResponseDecodeError naming only the exception's type, chained ``from None``, because the
reprs of UnicodeDecodeError and friends carry the raw (customer) bytes. A Hypothesis property
(tests/test_decode_property.py) and benchmarks/fuzz_decode.py hold that rule.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from msgspec.structs import force_setattr

from ._errors import (
    AOPayError,
    APIResponseError,
    AuthenticationError,
    ResponseDecodeError,
    redact,
    status_error,
)
from ._headers import RETRY_AFTER_STATUSES, parse_retry_after
from ._models import (
    Account,
    CreditAge,
    CreditHistory,
    CreditMix,
    CreditUtilization,
    UserInfo,
)

__all__ = ["IST", "decode_response", "parse_credit_age"]

#: The zone AOPay's naive timestamps are meant in.
IST = ZoneInfo("Asia/Kolkata")

_NO_DATE = b'"0000-00-00"'
_NO_DATETIMES = frozenset({"", "0000-00-00", "0000-00-00 00:00:00"})
_SUCCESS_CODE = "SPC-200"


class _Result(msgspec.Struct, gc=False):
    userInfo: UserInfo | None = None
    activityInfo: list[Account] | None = None
    creditAge: CreditAge | None = None
    creditMix: CreditMix | None = None
    inquiryCount: int | None = None
    lastMonthInquiryCount: int | None = None
    last6MonthInquiryCount: int | None = None
    creditUtilize: CreditUtilization | None = None
    onTimePaymentPercentile: int | None = None


class _Data(msgspec.Struct, gc=False):
    result: _Result | None = None
    access_token: str | None = None


class _Envelope(msgspec.Struct, gc=False):
    """Every top-level field of all three shapes, each optional: one decode classifies."""

    error_code: str | None = None
    status: str | bool | None = None
    message: str | None = None
    soft_ref_id: str | None = None
    data: _Data | None = None
    # The 401 shape.
    responsecode: int | str | None = None
    # The gateway shape.
    code: str | int | None = None
    description: str | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope, strict=False)
_LOOSE = msgspec.json.Decoder()

# At most four digits, not preceded by another: a 4,301-digit "years" would otherwise reach
# int() and raise ValueError (Python's int-string conversion limit); it is unreadable instead.
_YEARS = re.compile(r"(?<!\d)(\d{1,4})\s*(?:years?|yrs?|y)\b", re.IGNORECASE)
_MONTHS = re.compile(r"(?<!\d)(\d{1,4})\s*(?:months?|mths?|mons?|mos?|m)\b", re.IGNORECASE)
# What msgspec raises for bytes it cannot read, besides its own DecodeError: invalid UTF-8 in a
# string (UnicodeDecodeError, whose repr carries the raw bytes) and nesting deeper than the
# interpreter's recursion limit (RecursionError, e.g. b"[" * 100000).
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def parse_credit_age(text: str) -> int | None:
    """Whole months in a credit age like ``"8 Years 8 Months"`` (104); None if unreadable."""
    years = _YEARS.search(text)
    months = _MONTHS.search(text)
    if years is None and months is None:
        return None
    return (int(years.group(1)) * 12 if years else 0) + (int(months.group(1)) if months else 0)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value


def _preview(body: bytes, secrets: Iterable[str | None]) -> str:
    return redact(body[:2048].decode("utf-8", "replace"), secrets)


def _not_json(body: bytes, status: int, exc: BaseException | None = None) -> ResponseDecodeError:
    head = body.lstrip()[:1]
    if isinstance(exc, UnicodeDecodeError):
        what = "the response is not valid UTF-8 (a gateway re-encoding the body?)"
    elif isinstance(exc, RecursionError):
        what = "the response is JSON nested too deeply to read"
    elif not head:
        what = "the response body is empty"
    elif head == b"<":
        what = "the response is an HTML page, not JSON (an error page from a proxy or gateway?)"
    else:
        what = "the response is not valid JSON (malformed or cut short)"
    return ResponseDecodeError(f"{what} (HTTP {status})")


def _api_error(
    loose: Mapping[str, Any], headers: Mapping[str, str], body: bytes, secrets: Any
) -> Exception | None:
    """The error an error-shaped body reports, or None when *loose* is not error-shaped."""
    if "responsecode" in loose:
        code = str(loose["responsecode"])
        text = loose.get("message")
        api_message = redact(text, secrets) if isinstance(text, str) else None
        if code in ("401", "403"):
            return AuthenticationError(
                "the API refused the credentials (responsecode "
                f"{code}): check the company code and registration id"
                + (f"; it said: {api_message}" if api_message else ""),
                status_code=int(code),
                headers=headers,
                body=_preview(body, secrets),
            )
        return _response_error(code, api_message)
    if "code" in loose or "description" in loose:
        text = loose.get("description")
        code_value = loose.get("code")
        return _response_error(
            None if code_value is None else str(code_value),
            redact(text, secrets) if isinstance(text, str) else None,
        )
    return None


def _response_error(code: str | None, api_message: str | None) -> APIResponseError:
    message = f"the API reported a failure (code {code})"
    if api_message:
        message += f": {api_message}"
    return APIResponseError(message, code=code, api_message=api_message)


@functools.lru_cache(maxsize=4096)
def _credit_age_months(text: str) -> int | None:
    # Credit ages repeat ("8 Years 8 Months"): a cache turns two regex searches into a lookup.
    return parse_credit_age(text)


def _in_india(when: _dt.datetime) -> _dt.datetime:
    if when.tzinfo is not None:
        try:
            return when.astimezone(IST)
        except OverflowError:
            # "0001-01-01T00:00:00+14:00" is a valid RFC 3339 time whose India time is
            # before year 1 (or after 9999): no datetime can hold it.
            raise ResponseDecodeError(
                "the response's `cibil_score_fetch_date` is outside the years 1-9999 "
                "in India time: not a real fetch date"
            ) from None
    # The constructor, not .replace(tzinfo=...): measured 0.21 against 0.54 µs.
    return _dt.datetime(
        when.year, when.month, when.day, when.hour, when.minute, when.second, when.microsecond, IST
    )


def _decode_envelope_slowly(body: bytes, status: int) -> _Envelope:
    """After the fast decode failed: the untouched body, its quirks normalised, or an error.

    Decodes the body loosely, turns the rarer spellings of "nothing" into null where they
    mean that (see _normalise), and decodes that strictly, so that the error (if any) names
    the real problem and its path.
    """
    try:
        loose = _LOOSE.decode(body)
    except _UNREADABLE as exc:
        raise _not_json(body, status, exc) from None
    _normalise(loose)
    try:
        return _ENVELOPE.decode(msgspec.json.encode(loose))
    except RecursionError:
        raise _not_json(body, status, RecursionError()) from None
    except msgspec.ValidationError as exc:
        raise ResponseDecodeError(
            f"the response does not have the documented shape: {exc} (HTTP {status})"
        ) from None


def _normalise(loose: object) -> None:
    """Turn the API's rarer spellings of "nothing" into null, in place, for the slow path.

    Dates ``"0000-00-00"`` or ``""``, a fetch time of zeros or ``""``, an empty score (and
    spaces around a score), and null names (which become ``""``). Anything else is left for
    the strict decode to judge.
    """
    data = loose.get("data") if isinstance(loose, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if not isinstance(result, dict):
        return
    accounts = result.get("activityInfo")
    for account in accounts if isinstance(accounts, list) else ():
        if isinstance(account, dict):
            for key in ("date_opened", "date_closed"):
                if account.get(key) in ("0000-00-00", ""):
                    account[key] = None
    user = result.get("userInfo")
    if isinstance(user, dict):
        score = user.get("cibil_score")
        if isinstance(score, str):
            user["cibil_score"] = score.strip() or None
        fetched = user.get("cibil_score_fetch_date")
        if isinstance(fetched, str) and fetched.strip() in _NO_DATETIMES:
            user["cibil_score_fetch_date"] = None
        for key in ("cibil_id", "first_name", "middle_name", "last_name", "mobile_number"):
            if key in user and user[key] is None:
                user[key] = ""


def decode_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: Iterable[str | None] = (),
) -> CreditHistory:
    """Classify one complete HTTP response: return the history or raise one error of the tree.

    *secrets* (credentials and the request's ids) are scrubbed from anything the error keeps.
    Whatever *body* holds, nothing but a CreditHistory or an :class:`AOPayError` comes out.
    """
    try:
        return _decode(status, headers, body, secrets)
    except AOPayError:
        raise
    except Exception as exc:
        # The containment point: a bug or a hostile body we have not met yet. Only the type
        # is named; the exception itself (whose repr may quote the body) is dropped.
        raise ResponseDecodeError(
            f"the response could not be decoded ({type(exc).__name__}) (HTTP {status})"
        ) from None


def _decode(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str | None]
) -> CreditHistory:
    if not 200 <= status < 300:
        raise _status_failure(status, headers, body, secrets)
    try:
        envelope = _ENVELOPE.decode(body.replace(_NO_DATE, b"null"))
    except _UNREADABLE:
        try:
            envelope = _decode_envelope_slowly(body, status)
        except ResponseDecodeError as decode_error:
            # A body of the wrong shape may still be an error shape with odd types in it.
            loose = _loose(body)
            found = _api_error(loose, headers, body, secrets) if loose else None
            if found is not None:
                raise found from None
            raise decode_error from None
    if envelope.responsecode is not None or envelope.code is not None or envelope.description:
        shaped = {
            k: v
            for k, v in (
                ("responsecode", envelope.responsecode),
                ("message", envelope.message),
                ("code", envelope.code),
                ("description", envelope.description),
            )
            if v is not None
        }
        found = _api_error(shaped, headers, body, secrets)
        assert found is not None
        raise found
    return _history(envelope, secrets)


def _loose(body: bytes) -> dict[str, Any] | None:
    try:
        value = _LOOSE.decode(body)
    except _UNREADABLE:
        return None
    return value if isinstance(value, dict) else None


def _status_failure(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str | None]
) -> Exception:
    retry_after = None
    if status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
    if status not in (401, 403) and status < 500:
        loose = _loose(body)
        if loose is not None and str(loose.get("responsecode")) in ("401", "403"):
            found = _api_error(loose, headers, body, secrets)
            assert found is not None
            return found
    return status_error(status, headers, _preview(body, secrets), retry_after=retry_after)


def _history(envelope: _Envelope, secrets: Iterable[str | None]) -> CreditHistory:
    status = envelope.status
    error_code = envelope.error_code
    if error_code != _SUCCESS_CODE or status != "SUCCESS":  # else the documented success
        _check_success(error_code, status, envelope.message, secrets)
    data = envelope.data
    result = data.result if data is not None else None
    if result is None or data is None:
        raise ResponseDecodeError(
            "the API reported success but sent no `$.data.result`: not the documented shape"
        )
    if result.userInfo is None:
        raise ResponseDecodeError(
            "the API reported success but sent no `$.data.result.userInfo`: "
            "not the documented shape"
        )
    # The Structs were decoded a moment ago and nobody else holds them yet, so finishing
    # them in place (force_setattr) is safe and cheaper than building copies.
    user_info = result.userInfo
    fetched = user_info.cibil_score_fetch_date
    if fetched is not None:
        force_setattr(user_info, "cibil_score_fetch_date", _in_india(fetched))
    credit_age = result.creditAge
    if credit_age is not None:
        text = credit_age.text
        # Only short texts are cached: a hostile 10 MB credit age must not stay in memory.
        months = _credit_age_months(text) if len(text) <= 64 else parse_credit_age(text)
        force_setattr(credit_age, "months", months)
    return CreditHistory(
        error_code=error_code or "",
        status=status if isinstance(status, str) else "",
        message=envelope.message or "",
        soft_ref_id=envelope.soft_ref_id,
        user_info=user_info,
        activity_info=result.activityInfo or [],
        credit_age=credit_age,
        credit_mix=result.creditMix,
        inquiry_count=result.inquiryCount,
        last_month_inquiry_count=result.lastMonthInquiryCount,
        last_6_month_inquiry_count=result.last6MonthInquiryCount,
        credit_utilize=result.creditUtilize,
        on_time_payment_percentile=result.onTimePaymentPercentile,
        access_token=data.access_token,
    )


def _check_success(
    error_code: str | None,
    status: str | bool | None,
    message: str | None,
    secrets: Iterable[str | None],
) -> None:
    """Raise unless an envelope other than the exact documented success still means success.

    Success: ``error_code`` "SPC-200" or absent, with ``status`` "SUCCESS" in any case (or
    true) or absent; not both absent.
    """
    if error_code is None and status is None:
        # Neither success nor any error shape (e.g. ``{}``): nothing reports a failure, so
        # this is not an APIResponseError; it is a body we cannot read.
        raise ResponseDecodeError(
            "the response is a JSON object of none of the documented shapes (no "
            "`error_code`, `status`, `responsecode` or `code`): not the documented shape"
        )
    ok = error_code == _SUCCESS_CODE or (error_code is None and status is not None)
    if ok and status is not None:
        ok = status is True or (isinstance(status, str) and status.upper() == "SUCCESS")
    if not ok:
        raise _response_error(error_code, redact(message, secrets) if message else None)
