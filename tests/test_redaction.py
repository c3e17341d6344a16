"""No customer value, credential or access token in any repr, str or error message.

Every text a user might log (``repr``/``str`` of results, requests, bulk results, errors,
``.message``, ``.body``, ``args``) is checked against the synthetic customer's values, the
company code, the registration id and the access token.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from _data import COMPANY, REGISTRATION, SEED_SUCCESS
from _local_server import LocalServer, hang, reset
from aiohttp import web

from aopay_async import (
    AOPayClient,
    AOPayError,
    BulkResult,
    CreditHistoryRequest,
    InvalidRequestError,
    ServerError,
)
from aopay_async._decode import decode_response

BASE: dict[str, Any] = json.loads(SEED_SUCCESS)

CIBIL_ID = "SYNCIBIL77"
TOKEN = "feedfacefeedfacefeedfacefeedfacefeedface"
MOBILE = "5550001234"

#: Every value of the synthetic customer that must never be printed.
CUSTOMER = {
    "cibil_id": CIBIL_ID,
    "first_name": "Testfirst",
    "middle_name": "Testmiddle",
    "last_name": "Sandboxlast",
    "mobile_number": MOBILE,
    "account_number": "XXXXXXXXXXXXXXXX9901",
    "account_detail_id": "9990001777",
    "credit_limit": "255123",
    "total_balance": "48032",
}
SECRETS = [*CUSTOMER.values(), COMPANY, REGISTRATION, TOKEN]


def customer_body() -> bytes:
    """The seed's success body carrying the synthetic customer's values."""
    data = copy.deepcopy(BASE)
    result = data["data"]["result"]
    user = result["userInfo"]
    for key in ("cibil_id", "first_name", "middle_name", "last_name", "mobile_number"):
        user[key] = CUSTOMER[key]
    user["cibil_score"] = "812"
    for account in result["activityInfo"]:
        account["account_number"] = CUSTOMER["account_number"]
        account["account_detail_id"] = CUSTOMER["account_detail_id"]
    result["creditUtilize"]["credit_limit"] = CUSTOMER["credit_limit"]
    result["creditUtilize"]["total_balance"] = CUSTOMER["total_balance"]
    data["data"]["access_token"] = TOKEN
    return json.dumps(data).encode()


def assert_clean(text: str) -> None:
    """*text* holds none of the secrets (nor the score)."""
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"leaked {leaked} in {text!r}"
    assert "812" not in text


def error_texts(err: AOPayError) -> list[str]:
    """Everything of an error that ends up in a log line or a traceback."""
    texts = [str(err), repr(err), err.message, *map(str, err.args)]
    for name in ("body", "code"):
        value = getattr(err, name, None)
        if isinstance(value, str):
            texts.append(value)
    return texts


# -- results ------------------------------------------------------------------------------------


def test_history_repr_and_str_mask_the_customer() -> None:
    """``repr``/``str``/f-strings of a decoded history and of each part show no personal data."""
    history = decode_response(200, {}, customer_body(), secrets=(COMPANY, REGISTRATION, CIBIL_ID))
    assert history.user_info.first_name == "Testfirst"  # the attributes hold the real values
    parts: list[object] = [
        history,
        history.user_info,
        history.activity_info,
        *history.activity_info,
        history.credit_utilize,
        history.credit_age,
        history.credit_mix,
    ]
    for part in parts:
        for text in (repr(part), str(part), f"{part}", f"{part!r}"):
            assert_clean(text)


def test_rich_pretty_printing_masks_the_customer() -> None:
    """rich's pretty printer (which uses ``__rich_repr__``) shows no personal data either."""
    pretty = pytest.importorskip("rich.pretty")
    history = decode_response(200, {}, customer_body())
    assert_clean(pretty.pretty_repr(history))


def test_request_and_bulk_result_reprs_mask_ids() -> None:
    """A request's and a bulk result's repr hide the cibil id and registration id."""
    request = CreditHistoryRequest(
        cibil_id=CIBIL_ID, client_order_id="ord-1", registration_id=REGISTRATION
    )
    history = decode_response(200, {}, customer_body())
    results = [
        BulkResult(request=request, history=history, attempts=1),
        BulkResult(request=request, error=ServerError("x", status_code=503), attempts=4),
    ]
    for item in [request, *results]:
        assert_clean(repr(item))
        assert_clean(str(item))
    assert "ord-1" in repr(request)  # the order id is the caller's handle: shown


# -- errors from decoding -----------------------------------------------------------------------

ECHO = {"CompanyCode": COMPANY, "RegistrationID": REGISTRATION, "cibil_id": CIBIL_ID}
ECHO_TEXT = f"CompanyCode {COMPANY} RegistrationID {REGISTRATION} cibil {CIBIL_ID} mob {MOBILE}"

ERROR_BODIES: list[tuple[str, int, str | bytes]] = [
    ("401-shape", 200, json.dumps({"responsecode": 401, "status": False, "message": ECHO_TEXT})),
    ("401-http", 401, json.dumps({"responsecode": 401, "status": False, "message": ECHO_TEXT})),
    ("gateway", 200, json.dumps({"code": "207", "description": ECHO_TEXT, "token": TOKEN,
                                 "merchantTrxnRefId": MOBILE, "status": "False"})),
    ("failed-envelope", 200, json.dumps({"error_code": "SPC-404", "status": "FAILED",
                                         "message": ECHO_TEXT})),
    ("other-responsecode", 200, json.dumps({"responsecode": 500, "message": ECHO_TEXT})),
    ("500-echo", 500, json.dumps({"request": ECHO, "message": ECHO_TEXT})),
    ("429-echo", 429, json.dumps({"request": ECHO, "token": TOKEN})),
    ("400-echo", 400, json.dumps(ECHO)),
    ("html-502", 502, f"<html><body>upstream {ECHO_TEXT}</body></html>"),
    ("html-200", 200, f"<html><body>{ECHO_TEXT}</body></html>"),
    ("not-json-200", 200, f"oops {ECHO_TEXT}"),
    ("wrong-kind-name", 200, customer_body().replace(b'"812"', json.dumps(MOBILE + "x").encode())),
    ("wrong-kind-date", 200, customer_body().replace(b'"2023-06-24"', b'"Testfirst"')),
    ("wrong-kind-limit", 200, customer_body().replace(b'"255123"', b'"Sandboxlast"')),
    ("truncated", 200, customer_body()[:-30]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body"),
    [(c[1], c[2] if isinstance(c[2], bytes) else c[2].encode()) for c in ERROR_BODIES],
    ids=[c[0] for c in ERROR_BODIES],
)
def test_error_messages_hold_no_secret(status: int, body: bytes) -> None:
    """Whatever the server echoes back, no error text keeps a credential or customer value."""
    with pytest.raises(AOPayError) as info:
        decode_response(status, {}, body, secrets=(COMPANY, REGISTRATION, CIBIL_ID))
    for text in error_texts(info.value):
        assert_clean(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cibil_id": CIBIL_ID + "\n"},
        {"cibil_id": CIBIL_ID * 7},
        {"cibil_id": CIBIL_ID, "registration_id": REGISTRATION + "\x00"},
        {"cibil_id": CIBIL_ID, "client_order_id": MOBILE * 7},
    ],
)
async def test_argument_errors_hold_no_value(kwargs: dict[str, str]) -> None:
    """An argument error names the argument and why, never the value."""
    async with AOPayClient(COMPANY, REGISTRATION, base_url="http://127.0.0.1:9") as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.get_credit_history(**kwargs)
    for text in error_texts(info.value):
        assert_clean(text)


@pytest.mark.parametrize(
    ("company", "registration"),
    [(COMPANY + "\t", REGISTRATION), (COMPANY, REGISTRATION * 10), ("", REGISTRATION)],
)
def test_credential_errors_hold_no_value(company: str, registration: str) -> None:
    """A bad credential is refused without printing it."""
    with pytest.raises(InvalidRequestError) as info:
        AOPayClient(company, registration)
    for text in error_texts(info.value):
        assert_clean(text)


# -- errors from a real exchange ---------------------------------------------------------------


def echo(status: int) -> Any:
    """A handler answering *status* with the request body echoed in the message."""

    async def handler(request: web.Request, number: int) -> web.StreamResponse:
        raw = (await request.read()).decode()
        body = json.dumps({"responsecode": status, "status": False, "message": raw})
        return web.Response(status=status, body=body, content_type="application/json")

    return handler


@pytest.mark.parametrize(
    "answer",
    [echo(401), echo(500), echo(200), reset(), hang(30)],
    ids=["echo-401", "echo-500", "echo-200", "reset", "timeout"],
)
async def test_client_errors_hold_no_secret(local_server: LocalServer, answer: Any) -> None:
    """End to end: whether the server echoes the request, resets or hangs, errors stay clean."""
    local_server.reply(answer)
    async with AOPayClient(
        COMPANY,
        REGISTRATION,
        base_url=local_server.url,
        rate_limit=None,
        max_retries=1,
        backoff_base=0.0,
        timeout=0.2,
    ) as client:
        with pytest.raises(AOPayError) as info:
            await client.get_credit_history(cibil_id=CIBIL_ID, client_order_id="ord-1")
    assert info.value.client_order_id == "ord-1"
    for text in error_texts(info.value):
        assert_clean(text)
    assert_clean(repr(client))


@pytest.mark.parametrize(
    ("said", "hidden"),
    [
        ("PAN ABCDE1234F does not match", "ABCDE1234F"),
        ("pan abcde1234f invalid", "abcde1234f"),
        ("mail jose.synthetic+x@example.co.in bounced", "jose.synthetic+x@example.co.in"),
        ("DOB 1990-04-23 mismatch", "1990-04-23"),
        ("DOB 23/04/1990 mismatch", "23/04/1990"),
        ("DOB 23-04-90 mismatch", "23-04-90"),
        ("DOB 23.04.1990 mismatch", "23.04.1990"),
        ("DOB 23 Apr 1990 mismatch", "23 Apr 1990"),
        ("DOB 23rd April, 1990 mismatch", "April, 1990"),
        ("DOB April 23, 1990 mismatch", "April 23, 1990"),
        ("Aadhaar 1234 5678 9012 unknown", "1234 5678 9012"),
        ("Aadhaar 1234-5678-9012 unknown", "5678"),
        ("Aadhaar 123456789012 unknown", "123456789012"),
    ],
)
@pytest.mark.parametrize("field", ["description", "message"])
def test_personal_data_in_the_apis_text_is_masked(said: str, hidden: str, field: str) -> None:
    """A PAN, e-mail, date of birth or Aadhaar-like number quoted by the API is masked."""
    body = json.dumps({"code": "E42", field: said, "status": "False"}).encode()
    if field == "message":
        body = json.dumps({"error_code": "E42", "status": "FAILED", "message": said}).encode()
    with pytest.raises(AOPayError) as info:
        decode_response(200, {}, body)
    for text in (str(info.value), repr(info.value), info.value.message):
        assert hidden not in text
        assert "***" in text
    assert said.split()[0] in str(info.value)  # the rest of the text is kept


@pytest.mark.parametrize(
    "kept", ["Invalid request: code E42 at step 3", "retry after 2 seconds", "version 1.2.3"]
)
def test_ordinary_api_text_is_kept(kept: str) -> None:
    """Text with nothing personal in it comes through as the API wrote it."""
    body = json.dumps({"code": "E42", "description": kept, "status": "False"}).encode()
    with pytest.raises(AOPayError) as info:
        decode_response(200, {}, body)
    assert kept in str(info.value)
