"""The public data types: argument checks, ids, frozen Structs, masked reprs, plain dicts."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

import msgspec
import pytest
from _data import SEED_SUCCESS
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async import (
    Account,
    BulkResult,
    CreditHistory,
    CreditHistoryRequest,
    InvalidRequestError,
    ServerError,
    UserInfo,
)
from aopay_async._decode import decode_response
from aopay_async._models import MAX_ID_LENGTH, check_id, new_client_order_id

BAD_IDS = [
    # (value, what the message must say)
    ("", "empty"),
    ("   ", "empty"),
    ("x" * 65, "65 characters"),
    ("ab\ncd", "control"),
    ("ab\tcd", "control"),
    ("ab\x00cd", "control"),
    ("ab\x7fcd", "control"),
    ("ab\u2028cd", "control"),
    (1234, "must be a str"),
    (None, "must be a str"),
    (b"xyz", "must be a str"),
]


@pytest.mark.parametrize(("value", "says"), BAD_IDS)
def test_check_id_refuses_and_names_the_argument_not_the_value(value: object, says: str) -> None:
    """Bad ids raise InvalidRequestError (a ValueError) naming the argument, never the value."""
    with pytest.raises(InvalidRequestError) as info:
        check_id("cibil_id", value)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith("cibil_id ")
    assert says in message
    if isinstance(value, str) and value.strip():
        assert value not in message
        assert repr(value)[1:-1] not in message  # nor its escaped form


@pytest.mark.parametrize(
    "value", ["xyz", "1234", "x" * MAX_ID_LENGTH, "AOP-554", "a b", "नमस्ते", "ID/with:punct."]
)
def test_check_id_accepts_printable_ids_up_to_64(value: str) -> None:
    """Any printable str of 1 to 64 characters passes unchanged."""
    assert check_id("cibil_id", value) == value


def test_check_id_names_the_environment_variable() -> None:
    """An id read from the environment says which variable held it."""
    with pytest.raises(InvalidRequestError, match="AOPAY_COMPANY_CODE"):
        check_id("company_code", "", env="AOPAY_COMPANY_CODE")


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=65, max_size=200))
def test_over_long_ids_always_refused(value: str) -> None:
    """Anything longer than 64 characters is refused, whatever it holds."""
    with pytest.raises(InvalidRequestError):
        check_id("client_order_id", value)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("cibil_id", {"cibil_id": ""}),
        ("client_order_id", {"cibil_id": "x", "client_order_id": "a\nb"}),
        ("registration_id", {"cibil_id": "x", "registration_id": "r" * 65}),
    ],
)
def test_request_validate_names_the_bad_field(field: str, kwargs: dict[str, str]) -> None:
    """``CreditHistoryRequest.validate`` checks every field and names the bad one."""
    with pytest.raises(InvalidRequestError, match=f"^{field} "):
        CreditHistoryRequest(**kwargs).validate()


def test_order_ids_are_unique_hex_and_short() -> None:
    """Generated ``client_order_id``s are 32 hex characters, unique, and valid ids themselves."""
    ids = [new_client_order_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for order_id in ids[:50]:
        assert re.fullmatch(r"[0-9a-f]{32}", order_id)
        assert check_id("client_order_id", order_id) == order_id


def test_with_order_id_fills_only_a_missing_id() -> None:
    """A request keeps its own ``client_order_id``; one without gets a fresh one."""
    given_id = CreditHistoryRequest(cibil_id="x", client_order_id="ord-1")
    assert given_id.with_order_id() is given_id
    filled = CreditHistoryRequest(cibil_id="x").with_order_id()
    assert filled.client_order_id is not None
    assert len(filled.client_order_id) == 32


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("SYN0001", CreditHistoryRequest(cibil_id="SYN0001")),
        ({"cibil_id": "SYN0001"}, CreditHistoryRequest(cibil_id="SYN0001")),
        (
            {"cibil_id": "SYN0001", "client_order_id": "o-1", "registration_id": "R-1"},
            CreditHistoryRequest(cibil_id="SYN0001", client_order_id="o-1", registration_id="R-1"),
        ),
        (
            CreditHistoryRequest(cibil_id="SYN0001", client_order_id="o-2"),
            CreditHistoryRequest(cibil_id="SYN0001", client_order_id="o-2"),
        ),
    ],
)
def test_coerce_accepts_the_three_item_kinds(item: object, expected: CreditHistoryRequest) -> None:
    """A bulk item may be a str, a mapping or a request."""
    assert CreditHistoryRequest.coerce(item) == expected


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ({}, "no 'cibil_id'"),
        ({"cibil_id": "x", "cibil": "y"}, "1 unexpected key(s)"),
        ({"cibil_id": 5}, "must be a str"),
        ("", "empty"),
        (5, "not int"),
        (None, "not NoneType"),
    ],
)
def test_coerce_refuses_bad_items(item: object, says: str) -> None:
    """An unusable item is an InvalidRequestError saying why."""
    with pytest.raises(InvalidRequestError, match=re.escape(says)):
        CreditHistoryRequest.coerce(item)


@pytest.mark.parametrize(
    ("item", "cibil_id", "order_id"),
    [
        ({"cibil_id": 5, "client_order_id": "o-1"}, "", "o-1"),
        ({"client_order_id": 7}, "", None),
        ("bad\nid", "bad\nid", None),
        (3.5, "", None),
    ],
)
def test_placeholder_keeps_what_can_be_read(
    item: object, cibil_id: str, order_id: str | None
) -> None:
    """A failed bulk item still gets a request holding what could be read of it."""
    placeholder = CreditHistoryRequest.placeholder(item)
    assert (placeholder.cibil_id, placeholder.client_order_id) == (cibil_id, order_id)


def test_models_are_frozen() -> None:
    """Results cannot be changed after decoding."""
    history = decode_response(200, {}, SEED_SUCCESS)
    with pytest.raises(AttributeError):
        history.status = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        history.user_info.first_name = "x"  # type: ignore[misc]


def test_defaults_of_an_empty_history() -> None:
    """Every optional part defaults to None or empty."""
    history = CreditHistory(
        error_code="SPC-200", status="SUCCESS", message="", user_info=UserInfo()
    )
    assert history.activity_info == []
    assert history.credit_age is None
    assert history.access_token is None
    assert UserInfo().cibil_score is None
    assert Account().newly_opened is False


def test_to_dict_is_plain_json_ready_and_unmasked() -> None:
    """``to_dict`` gives builtins only: ISO dates, Decimals as strings, the real values."""
    history = decode_response(200, {}, SEED_SUCCESS)
    plain = history.to_dict()
    assert json.loads(json.dumps(plain)) == plain
    assert plain["user_info"]["first_name"] == "Testfirst"
    assert plain["user_info"]["cibil_score"] == 770
    assert plain["user_info"]["cibil_score_fetch_date"] == "2023-08-16T15:36:46+05:30"
    assert plain["activity_info"][0]["date_closed"] is None
    assert plain["activity_info"][2]["date_closed"] == "2023-06-20"
    assert plain["credit_utilize"]["credit_limit"] == "255000"
    assert plain["credit_age"]["months"] == 104


def test_msgspec_encode_round_trips() -> None:
    """``msgspec.json.encode(history)`` works and decodes back to an equal history."""
    history = decode_response(200, {}, SEED_SUCCESS)
    encoded = msgspec.json.encode(history)
    assert msgspec.json.decode(encoded, type=CreditHistory) == history
    assert msgspec.json.decode(encoded)["credit_utilize"]["total_balance"] == "48032"


def test_attributes_hold_real_values_while_repr_masks() -> None:
    """Masking is only in ``repr``/``str``: the attributes are the real data."""
    history = decode_response(200, {}, SEED_SUCCESS)
    assert history.user_info.first_name == "Testfirst"
    assert history.credit_utilize is not None
    assert history.credit_utilize.credit_limit == Decimal("255000")
    assert "Testfirst" not in repr(history)
    assert repr(history) == str(history)


@pytest.mark.parametrize(
    ("model", "shown", "hidden"),
    [
        (UserInfo(first_name="Testfirst", middle_name=""), "middle_name=''", "Testfirst"),
        (UserInfo(cibil_score=0), "cibil_score='***'", "cibil_score=0"),
        (UserInfo(cibil_score=None), "cibil_score=None", "'***'"),
        (Account(account_number="XXXX9901", member_name="AXIS BANK"), "AXIS BANK", "9901"),
        (CreditHistoryRequest(cibil_id="SYN0001", client_order_id="o-1"), "o-1", "SYN0001"),
    ],
)
def test_repr_masks_sensitive_fields_only(model: object, shown: str, hidden: str) -> None:
    """Sensitive fields show as ``'***'`` (empty ones as they are); the rest as usual."""
    assert shown in repr(model)
    assert hidden not in repr(model)


def test_rich_repr_masks_too() -> None:
    """``__rich_repr__`` (used by rich's pretty printer) masks the same fields."""
    info = UserInfo(first_name="Testfirst", mobile_number="5550001234")
    items = dict(info.__rich_repr__())
    assert items["first_name"] == "***"
    assert items["mobile_number"] == "***"
    assert items["middle_name"] == ""


def test_bulk_result_ok_and_repr() -> None:
    """``ok`` needs a history and no error; the repr shows the outcome, masked."""
    request = CreditHistoryRequest(cibil_id="SYN0001", client_order_id="o-1")
    history = decode_response(200, {}, SEED_SUCCESS)
    good = BulkResult(request=request, history=history, attempts=1, elapsed=0.25)
    bad = BulkResult(request=request, error=ServerError("x", status_code=503), attempts=4)
    assert good.ok
    assert not bad.ok
    assert not BulkResult(request=request).ok
    assert "ok" in repr(good)
    assert "ServerError" in repr(bad)
    assert "SYN0001" not in repr(good) + repr(bad)
    assert "Testfirst" not in repr(good)
    with pytest.raises(AttributeError):  # frozen (dataclasses.FrozenInstanceError is one too)
        good.attempts = 2  # type: ignore[misc]


def test_fetch_date_is_a_datetime() -> None:
    """A decoded fetch date is a real aware datetime."""
    when = decode_response(200, {}, SEED_SUCCESS).user_info.cibil_score_fetch_date
    assert isinstance(when, dt.datetime)


def test_unexpected_keys_are_counted_never_quoted() -> None:
    """A headerless CSV read by DictReader makes customer values the keys: none is quoted."""
    row = {"cibil_id": "SYN1", "5557157123": "5557157123", "Jose Synthetic": "x", 7: "y"}
    with pytest.raises(InvalidRequestError) as info:
        CreditHistoryRequest.coerce(row)
    for text in (str(info.value), repr(info.value)):
        assert "3 unexpected key(s)" in text
        assert "555" not in text
        assert "Jose" not in text
