"""Deterministic synthetic customers for the sandbox.

This module owns the made-up credit profiles the sandbox serves: the same ``cibil_id``
always gives the same profile, on every machine and every Python version (all draws come
from SHA-256 of the id, never from :mod:`random`), and every profile is internally
consistent (the credit mix adds up to the accounts, utilisation is balance over limit,
no account closes before it opens, the credit age is the oldest account's age).

It must never produce real-looking personal data: names are obviously synthetic
("Testfirst Sandboxlast"), mobile numbers start with 555 (no Indian mobile number does),
ids and account numbers are masked like the real API masks them. It must never do I/O.

A ``cibil_id`` of the form ``ACCTS<n>`` or ``ACCTS<n>-<anything>`` (``n`` from 0 to 1000)
gets exactly ``n`` accounts, for benchmarks and tests that need a body of a known size.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "ACCOUNT_TYPES",
    "MAX_FORCED_ACCOUNTS",
    "CustomerProfile",
    "SyntheticAccount",
    "forced_account_count",
    "make_customer",
]

_T = TypeVar("_T")

#: The most accounts an ``ACCTS<n>`` id can ask for.
MAX_FORCED_ACCOUNTS = 1000
_FORCED = re.compile(r"ACCTS(\d{1,7})(?:[-_:.].*)?", re.DOTALL)

#: Every fetch date falls in these three years, so profiles do not change with the clock.
_EPOCH = _dt.datetime(2023, 1, 1, 9, 0, 0)
_FETCH_SPAN_SECONDS = 3 * 365 * 86400
#: An account opened this many days before the fetch date or later is "newly opened".
NEWLY_OPENED_DAYS = 183

# (account type, secured?, weight, lenders): realistic Indian lenders and products.
_BANKS = (
    "HDFC BANK",
    "ICICI BANK",
    "STATE BANK OF INDIA",
    "AXIS BANK",
    "KOTAK MAHINDRA BANK",
    "PUNJAB NATIONAL BANK",
    "BANK OF BARODA",
    "IDFC FIRST BANK",
    "INDUSIND BANK",
    "YES BANK",
)
_TYPES: tuple[tuple[str, bool, int, tuple[str, ...]], ...] = (
    ("Credit Card", False, 30, (*_BANKS[:5], "SBI CARDS", "RBL BANK", "AMERICAN EXPRESS")),
    ("Personal Loan", False, 16, (*_BANKS, "BAJAJ FINANCE LTD", "TATA CAPITAL")),
    ("Consumer Loan", False, 14, ("BAJAJ FINANCE LTD", "HOME CREDIT", "HDB FINANCIAL")),
    ("Housing Loan", True, 8, ("ADIBIRHFL", "LIC HOUSING FINANCE", *_BANKS[:4])),
    ("Auto Loan (Personal)", True, 9, ("MAHINDRA FINANCE", "TATA MOTORS FINANCE", *_BANKS[:4])),
    ("Two-Wheeler Loan", True, 8, ("HERO FINCORP", "TVS CREDIT", "BAJAJ FINANCE LTD")),
    ("Gold Loan", True, 6, ("MUTHOOT FINANCE", "MANAPPURAM FINANCE", "FEDERAL BANK")),
    ("Loan Against Property", True, 3, ("ADIBIRHFL", "PNB HOUSING FINANCE", *_BANKS[:3])),
    ("Education Loan", False, 3, ("STATE BANK OF INDIA", "AVANSE FINANCIAL", "HDFC CREDILA")),
    ("Business Loan - General", False, 3, ("LENDINGKART", "TATA CAPITAL", *_BANKS[:3])),
)
#: The account types the sandbox uses, with whether each counts as a secured loan.
ACCOUNT_TYPES: dict[str, bool] = {name: secured for name, secured, _, _ in _TYPES}
_TYPE_WEIGHT_TOTAL = sum(weight for _, _, weight, _ in _TYPES)

_FIRST = ("Testfirst", "Demofirst", "Samplefirst", "Mockfirst", "Fakefirst", "Dummyfirst")
_LAST = ("Sandboxlast", "Testlast", "Demolast", "Mocklast", "Fixturelast", "Stublast")


class _Draw:
    """A stream of numbers from SHA-256 of a key: stable across runs, machines and Pythons."""

    __slots__ = ("_counter", "_key")

    def __init__(self, key: str) -> None:
        self._key = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        self._counter = 0

    def below(self, n: int) -> int:
        """An int in ``[0, n)`` (``n`` well below 2**64, so the bias is negligible)."""
        self._counter += 1
        digest = hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
        return int.from_bytes(digest[:8], "big") % n

    def between(self, low: int, high: int) -> int:
        """An int in ``[low, high]``."""
        return low + self.below(high - low + 1)

    def chance(self, percent: int) -> bool:
        """True ``percent`` times in a hundred."""
        return self.below(100) < percent

    def choice(self, items: Sequence[_T]) -> _T:
        """One of *items*."""
        return items[self.below(len(items))]

    def digits(self, n: int) -> str:
        """*n* decimal digits, the first one not zero."""
        return str(self.between(10 ** (n - 1), 10**n - 1))


def _round_half_up(numerator: int, denominator: int) -> int:
    """``round(numerator / denominator)`` with halves going up, in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


def _months_between(start: _dt.date, end: _dt.date) -> int:
    """Whole months from *start* to *end* (0 when *end* is not later)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day:
        months -= 1
    return max(months, 0)


def _date(value: _dt.date | None) -> str:
    return "0000-00-00" if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class SyntheticAccount:
    """One made-up credit account, with real types (the wire form is :meth:`to_wire`)."""

    #: Masked like the API masks it, e.g. ``"726432***"``.
    account_detail_id: str
    member_name: str
    #: Masked like the API masks it, e.g. ``"XXXXXXXXXXXX4061"``.
    account_number: str
    date_opened: _dt.date
    #: None while the account is open (the API sends ``"0000-00-00"``).
    date_closed: _dt.date | None
    newly_opened: bool
    #: The account type, e.g. ``"Housing Loan"``.
    name: str
    secured: bool

    def to_wire(self) -> dict[str, str]:
        """The account as the API sends it in ``activityInfo``."""
        return {
            "account_detail_id": self.account_detail_id,
            "member_name": self.member_name,
            "account_number": self.account_number,
            "date_opened": _date(self.date_opened),
            "date_closed": _date(self.date_closed),
            "newly_opened": "1" if self.newly_opened else "0",
            "name": self.name,
        }


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """A made-up customer's credit profile, with real types.

    Derived figures (``secured_loans``, ``credit_utilize``, ``credit_age_months`` …) are
    computed from the accounts, so they always add up. :meth:`to_wire` gives the
    ``data.result`` object exactly as the API sends it (numbers as strings where it sends
    strings).
    """

    #: The id that was asked for (the wire carries :attr:`masked_cibil_id` instead).
    cibil_id: str
    masked_cibil_id: str
    cibil_score: int
    first_name: str
    middle_name: str
    last_name: str
    #: Masked like the API masks it, e.g. ``"5550013***"``.
    mobile_number: str
    #: When the score was computed, naive local time in India (the API sends no zone).
    fetched_at: _dt.datetime
    accounts: tuple[SyntheticAccount, ...]
    credit_limit: int
    total_balance: int
    inquiry_count: int
    last_month_inquiry_count: int
    last_6_month_inquiry_count: int
    on_time_payment_percentile: int

    @property
    def secured_loans(self) -> int:
        """Accounts of a secured type."""
        return sum(1 for account in self.accounts if account.secured)

    @property
    def unsecured_loans(self) -> int:
        """Accounts of an unsecured type; ``secured_loans + unsecured_loans == len(accounts)``."""
        return len(self.accounts) - self.secured_loans

    @property
    def total_percent_completed(self) -> int:
        """Percent of the accounts that are closed (repaid), rounded half up; 0 without accounts."""
        if not self.accounts:
            return 0
        closed = sum(1 for account in self.accounts if account.date_closed is not None)
        return _round_half_up(100 * closed, len(self.accounts))

    @property
    def credit_utilize(self) -> int:
        """``round(100 * total_balance / credit_limit)`` (halves up); 0 without a limit."""
        if self.credit_limit == 0:
            return 0
        return _round_half_up(100 * self.total_balance, self.credit_limit)

    @property
    def credit_age_months(self) -> int:
        """Age of the oldest account at the fetch date, in whole months (0 without accounts)."""
        if not self.accounts:
            return 0
        oldest = min(account.date_opened for account in self.accounts)
        return _months_between(oldest, self.fetched_at.date())

    @property
    def credit_age_text(self) -> str:
        """The credit age as the API writes it, e.g. ``"8 Years 8 Months"``."""
        years, months = divmod(self.credit_age_months, 12)
        return f"{years} Years {months} Months"

    def to_wire(self) -> dict[str, Any]:
        """The ``data.result`` object exactly as the API sends it (plain JSON-ready values)."""
        return {
            "userInfo": {
                "cibil_id": self.masked_cibil_id,
                "cibil_score": str(self.cibil_score),
                "first_name": self.first_name,
                "middle_name": self.middle_name,
                "last_name": self.last_name,
                "mobile_number": self.mobile_number,
                "cibil_score_fetch_date": self.fetched_at.strftime("%Y-%m-%d %H:%M:%S"),
            },
            "activityInfo": [account.to_wire() for account in self.accounts],
            "creditAge": {"credit_age": self.credit_age_text},
            "creditMix": {
                "secured_loan": str(self.secured_loans),
                "unsecured_loan": str(self.unsecured_loans),
                "total_percent_completed": str(self.total_percent_completed),
            },
            "inquiryCount": self.inquiry_count,
            "lastMonthInquiryCount": self.last_month_inquiry_count,
            "last6MonthInquiryCount": self.last_6_month_inquiry_count,
            "creditUtilize": {
                "credit_utilize": str(self.credit_utilize),
                "credit_limit": str(self.credit_limit),
                "total_balance": str(self.total_balance),
            },
            "onTimePaymentPercentile": self.on_time_payment_percentile,
        }


def forced_account_count(cibil_id: str) -> int | None:
    """The account count an ``ACCTS<n>`` id asks for (capped at 1000), or None."""
    match = _FORCED.fullmatch(cibil_id)
    if match is None:
        return None
    return min(int(match.group(1)), MAX_FORCED_ACCOUNTS)


def _pick_type(draw: _Draw) -> tuple[str, bool, tuple[str, ...]]:
    ticket = draw.below(_TYPE_WEIGHT_TOTAL)
    for name, secured, weight, lenders in _TYPES:
        if ticket < weight:
            return name, secured, lenders
        ticket -= weight
    raise AssertionError("unreachable: the weights cover every ticket")  # pragma: no cover


def _make_account(draw: _Draw, fetch_day: _dt.date) -> tuple[SyntheticAccount, int]:
    """One account and, for an open credit card, its credit limit (else 0)."""
    name, secured, lenders = _pick_type(draw)
    # A fifth of accounts are recent, so "newly_opened" shows up in ordinary profiles.
    age_days = draw.between(0, 240) if draw.chance(20) else draw.between(0, 25 * 365)
    opened = fetch_day - _dt.timedelta(days=age_days)
    closed: _dt.date | None = None
    if age_days >= 30 and draw.chance(40):
        closed = opened + _dt.timedelta(days=draw.between(30, age_days))
    stars = draw.between(2, 3)
    detail = draw.digits(9)
    length = draw.choice((15, 16, 20))
    account = SyntheticAccount(
        account_detail_id=detail[: 9 - stars] + "*" * stars,
        member_name=draw.choice(lenders),
        account_number="X" * (length - 4) + draw.digits(4),
        date_opened=opened,
        date_closed=closed,
        newly_opened=(fetch_day - opened).days <= NEWLY_OPENED_DAYS,
        name=name,
        secured=secured,
    )
    limit = 0
    if name == "Credit Card" and closed is None:
        limit = 5000 * draw.between(4, 100)  # 20,000 to 5,00,000 rupees
    return account, limit


def make_customer(
    cibil_id: str,
    *,
    accounts: int | None = None,
    fetched_at: _dt.datetime | None = None,
) -> CustomerProfile:
    """The synthetic profile for *cibil_id*: always the same for the same arguments.

    The score is 300–900 and there are 0–40 accounts, unless *accounts* (0–1000) or an
    ``ACCTS<n>`` id fixes the count. *fetched_at* overrides the fetch date, which is
    otherwise a fixed moment in 2023–2025 derived from the id (so profiles never change
    with the clock).
    """
    if accounts is None:
        accounts = forced_account_count(cibil_id)
    if accounts is not None and not 0 <= accounts <= MAX_FORCED_ACCOUNTS:
        raise ValueError(f"accounts must be between 0 and {MAX_FORCED_ACCOUNTS}, not {accounts}")
    draw = _Draw(cibil_id)
    if fetched_at is None:
        fetched_at = _EPOCH + _dt.timedelta(seconds=draw.below(_FETCH_SPAN_SECONDS))
    else:
        draw.below(_FETCH_SPAN_SECONDS)  # keep the rest of the stream the same
    fetch_day = fetched_at.date()

    if accounts is None:
        # A few customers are new to credit (no accounts); most have a handful.
        if draw.chance(4):
            accounts = 0
        else:
            accounts = draw.between(1, 12) if draw.chance(75) else draw.between(1, 40)
    made = [_make_account(draw, fetch_day) for _ in range(accounts)]
    # Newest first, like the API's example.
    made.sort(key=lambda pair: pair[0].date_opened, reverse=True)
    credit_limit = sum(limit for _, limit in made)
    total_balance = 0
    if credit_limit:
        total_balance = min(
            credit_limit, credit_limit * draw.between(0, 95) // 100 + draw.below(1000)
        )

    last_month = draw.between(0, 2)
    last_6_months = last_month + draw.between(0, 5)
    on_time = draw.between(60, 100) if draw.chance(85) else draw.between(0, 59)
    return CustomerProfile(
        cibil_id=cibil_id,
        masked_cibil_id=draw.digits(6) + "*",
        cibil_score=draw.between(550, 900) if draw.chance(80) else draw.between(300, 549),
        first_name=draw.choice(_FIRST),
        middle_name="Synthmiddle" if draw.chance(25) else "",
        last_name=draw.choice(_LAST),
        mobile_number="555" + draw.digits(4) + "***",
        fetched_at=fetched_at,
        accounts=tuple(account for account, _ in made),
        credit_limit=credit_limit,
        total_balance=total_balance,
        inquiry_count=last_6_months + draw.between(0, 15),
        last_month_inquiry_count=last_month,
        last_6_month_inquiry_count=last_6_months,
        on_time_payment_percentile=on_time,
    )
