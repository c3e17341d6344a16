"""The public data types: what a call takes and what it gives back.

This module owns the frozen msgspec Structs users see, their redacting reprs, and the
checks on request arguments. It must never do I/O, import aiohttp, or let a customer's
personal data reach a repr, a str or an error message.

The Structs are decoded straight from response bytes by :mod:`aopay_async._decode`; their
field names are the API's names in snake_case.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import secrets
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from ._errors import AOPayError, InvalidRequestError

__all__ = [
    "Account",
    "BulkResult",
    "CreditAge",
    "CreditHistory",
    "CreditHistoryRequest",
    "CreditMix",
    "CreditUtilization",
    "UserInfo",
    "check_id",
    "new_client_order_id",
]

#: The longest id the client accepts for any request field.
MAX_ID_LENGTH = 64
_MASK = "'***'"


class _Model(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every public Struct: a repr that masks the fields named in ``__sensitive__``."""

    __sensitive__: ClassVar[frozenset[str]] = frozenset()

    def _masked_items(self) -> Iterator[tuple[str, Any]]:
        sensitive = self.__sensitive__
        for name in self.__struct_fields__:
            value = getattr(self, name)
            yield name, ("***" if name in sensitive and value not in (None, "") else value)

    def __repr__(self) -> str:
        parts = []
        for name, value in self._masked_items():
            parts.append(f"{name}={_MASK if value == '***' else repr(value)}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec gives Structs a __rich_repr__ of their own, which would show the raw values.
        return list(self._masked_items())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (dates and datetimes as ISO strings, Decimals as strings).

        This holds the real, unmasked values: treat it like the model itself.
        """
        result = msgspec.to_builtins(self)
        assert isinstance(result, dict)
        return result


class UserInfo(_Model, frozen=True):
    """The customer's identity and score (``data.result.userInfo``)."""

    __sensitive__: ClassVar[frozenset[str]] = frozenset(
        {"cibil_id", "cibil_score", "first_name", "middle_name", "last_name", "mobile_number"}
    )

    cibil_id: str = ""
    cibil_score: int | None = None
    first_name: str = ""
    middle_name: str = ""
    last_name: str = ""
    mobile_number: str = ""
    #: When CIBIL computed the score, as an aware datetime in Asia/Kolkata.
    cibil_score_fetch_date: _dt.datetime | None = None


class Account(_Model, frozen=True):
    """One credit account of the customer (an item of ``data.result.activityInfo``)."""

    __sensitive__: ClassVar[frozenset[str]] = frozenset({"account_detail_id", "account_number"})

    account_detail_id: str = ""
    #: The lender, e.g. "AXIS BANK".
    member_name: str = ""
    account_number: str = ""
    date_opened: _dt.date | None = None
    #: None while the account is open (the API sends "0000-00-00").
    date_closed: _dt.date | None = None
    newly_opened: bool = False
    #: The account type, e.g. "Housing Loan".
    name: str = ""


class CreditAge(_Model, frozen=True):
    """Age of the customer's credit history (``data.result.creditAge``)."""

    #: As sent, e.g. "8 Years 8 Months".
    text: str = msgspec.field(default="", name="credit_age")
    #: ``text`` in whole months (104 for "8 Years 8 Months"); None when it cannot be read.
    months: int | None = None


class CreditMix(_Model, frozen=True):
    """Secured against unsecured loans (``data.result.creditMix``)."""

    secured_loan: int | None = None
    unsecured_loan: int | None = None
    total_percent_completed: int | None = None


class CreditUtilization(_Model, frozen=True):
    """Credit used against the limit (``data.result.creditUtilize``)."""

    __sensitive__: ClassVar[frozenset[str]] = frozenset({"credit_limit", "total_balance"})

    #: Percent of the limit in use, e.g. 18.0.
    credit_utilize: float | None = None
    credit_limit: Decimal | None = None
    total_balance: Decimal | None = None


class CreditHistory(_Model, frozen=True):
    """A customer's credit history: the success envelope of GetCreditHistory, flattened.

    ``repr()`` masks personal data; the attributes hold the real values.
    """

    __sensitive__: ClassVar[frozenset[str]] = frozenset({"access_token"})

    error_code: str
    status: str
    message: str
    user_info: UserInfo
    soft_ref_id: str | None = None
    activity_info: list[Account] = msgspec.field(default_factory=list)
    credit_age: CreditAge | None = None
    credit_mix: CreditMix | None = None
    inquiry_count: int | None = None
    last_month_inquiry_count: int | None = None
    last_6_month_inquiry_count: int | None = None
    credit_utilize: CreditUtilization | None = None
    on_time_payment_percentile: int | None = None
    access_token: str | None = None


class _OrderIds:
    """Unique ids without a syscall each: 96 random bits per process, then a counter.

    A forked child draws new random bits (``os.register_at_fork``), so workers forked from
    one parent never repeat each other's ids.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(12)
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFF:08x}"


_ORDER_IDS = _OrderIds()
os.register_at_fork(after_in_child=_ORDER_IDS.reset)


def new_client_order_id() -> str:
    """A fresh, unique ``client_order_id`` (32 hex characters) for a call that was given none."""
    return _ORDER_IDS.next()


def check_id(name: str, value: object, *, env: str | None = None) -> str:
    """Return *value* if it is a usable id, else raise :class:`InvalidRequestError`.

    Usable: a ``str``, not blank, at most 64 characters, no control characters. The message
    names the argument (and the environment variable it came from) but never the value.
    """
    where = f"{name} (from the environment variable {env})" if env else name
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise InvalidRequestError(f"{where} must not be empty or blank")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRequestError(
            f"{where} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed"
        )
    if not value.isprintable():
        raise InvalidRequestError(f"{where} contains a control or non-printable character")
    return value


class CreditHistoryRequest(_Model, frozen=True):
    """One lookup: the customer's ``cibil_id`` and, optionally, the ids to send with it.

    Without ``client_order_id`` the client generates a unique one per call.
    ``registration_id`` overrides the client's for this call only.
    """

    __sensitive__: ClassVar[frozenset[str]] = frozenset({"cibil_id", "registration_id"})

    cibil_id: str
    client_order_id: str | None = None
    registration_id: str | None = None

    def with_order_id(self) -> CreditHistoryRequest:
        """This request with a generated ``client_order_id`` if it has none."""
        if self.client_order_id is not None:
            return self
        return msgspec.structs.replace(self, client_order_id=new_client_order_id())

    def validate(self) -> CreditHistoryRequest:
        """Check every field; raise :class:`InvalidRequestError` naming the bad one."""
        check_id("cibil_id", self.cibil_id)
        if self.client_order_id is not None:
            check_id("client_order_id", self.client_order_id)
        if self.registration_id is not None:
            check_id("registration_id", self.registration_id)
        return self

    @classmethod
    def coerce(cls, item: object) -> CreditHistoryRequest:
        """Turn a bulk input item into a checked request.

        Accepts a :class:`CreditHistoryRequest`, a ``str`` (the cibil id) or a mapping with
        ``cibil_id`` and optional ``client_order_id`` / ``registration_id``.
        """
        if isinstance(item, CreditHistoryRequest):
            return item.validate()
        if isinstance(item, str):
            return cls(cibil_id=item).validate()
        if isinstance(item, Mapping):
            if "cibil_id" not in item:
                raise InvalidRequestError("the item has no 'cibil_id' key")
            unknown = set(item) - {"cibil_id", "client_order_id", "registration_id"}
            if unknown:
                # Never the keys themselves: csv.DictReader on a file without a header row
                # makes the first row's values (customer data) the keys.
                raise InvalidRequestError(
                    f"the item has {len(unknown)} unexpected key(s) (only cibil_id, "
                    "client_order_id and registration_id are read; a CSV without a header row?)"
                )
            request = cls(
                cibil_id=item["cibil_id"],
                client_order_id=item.get("client_order_id"),
                registration_id=item.get("registration_id"),
            )
            return request.validate()
        raise InvalidRequestError(
            "an item must be a CreditHistoryRequest, a str cibil id or a mapping with "
            f"'cibil_id', not {type(item).__name__}"
        )

    @classmethod
    def placeholder(cls, item: object) -> CreditHistoryRequest:
        """What can be read of an invalid *item*, unchecked, so a failed result still has one."""
        if isinstance(item, CreditHistoryRequest):
            return item
        if isinstance(item, str):
            return cls(cibil_id=item)
        if isinstance(item, Mapping):
            cibil_id, order_id = item.get("cibil_id"), item.get("client_order_id")
            return cls(
                cibil_id=cibil_id if isinstance(cibil_id, str) else "",
                client_order_id=order_id if isinstance(order_id, str) else None,
            )
        return cls(cibil_id="")


class BulkResult(msgspec.Struct, frozen=True):
    """The outcome of one bulk item: exactly one per input item.

    ``history`` is set when ``ok``; otherwise ``error`` says what went wrong. ``request`` is
    the request as sent, with the ``client_order_id`` that every attempt used (generated when
    the item had none). For an invalid item it holds what could be read of the item, and
    ``error`` is an :class:`InvalidRequestError`.
    """

    # A Struct, not a frozen dataclass: a frozen dataclass's __init__ sets each of the eight
    # fields through object.__setattr__, measured at ~2-5 µs per result against ~0.4 µs here,
    # a tenth of a whole bulk item's cost on the fast path. Tracked by the GC (the default):
    # ``error`` holds an exception, whose traceback can lead back to this result.
    request: CreditHistoryRequest
    history: CreditHistory | None = None
    error: AOPayError | None = None
    #: HTTP attempts sent for this item (0 when it was invalid).
    attempts: int = 0
    #: Seconds from the item's start to its outcome.
    elapsed: float = 0.0
    #: The item's position in the input, counting from 0.
    item_index: int = 0
    #: Seconds on the wire (each attempt's send to its response), over all attempts.
    wire_seconds: float = 0.0
    #: Seconds waited for a connection slot and the rate limiter, over all attempts.
    #: ``elapsed`` minus these two is mostly retry backoff.
    wait_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the lookup succeeded and ``history`` holds the result."""
        return self.error is None and self.history is not None

    def __repr__(self) -> str:
        outcome = "ok" if self.ok else type(self.error).__name__
        return (
            f"BulkResult(item_index={self.item_index}, {outcome}, attempts={self.attempts}, "
            f"elapsed={self.elapsed:.3f}, request={self.request!r})"
        )

    __str__ = __repr__
