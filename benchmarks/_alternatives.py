"""The alternatives aopay_async is compared against, kept out of the benchmark loops.

- ``PydanticCreditHistory``: pydantic v2 models of the success response with the same
  conversions our decoder does (numeric strings to int/float/Decimal, "1"/"0" to bool,
  "0000-00-00" to None, an aware Asia/Kolkata fetch time, the credit age in months), the
  way a hand-written or Stainless-style httpx + pydantic SDK would model it.
- ``WireCreditHistory``: plain msgspec Structs of the wire shape with no conversions (what a
  "raw aiohttp + msgspec" loop would decode into).
"""

from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = ["PydanticCreditHistory", "WireCreditHistory"]

IST = ZoneInfo("Asia/Kolkata")
_YEARS = re.compile(r"(\d+)\s*(?:years?|yrs?|y)\b", re.IGNORECASE)
_MONTHS = re.compile(r"(\d+)\s*(?:months?|mths?|mons?|mos?|m)\b", re.IGNORECASE)


def _no_date(value: Any) -> Any:
    return None if value in ("0000-00-00", "") else value


def _blank_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _in_ist(value: _dt.datetime | None) -> _dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=IST) if value.tzinfo is None else value.astimezone(IST)


OptDate = Annotated[_dt.date | None, BeforeValidator(_no_date)]
OptInt = Annotated[int | None, BeforeValidator(_blank_none)]
FetchTime = Annotated[_dt.datetime | None, BeforeValidator(_no_date), AfterValidator(_in_ist)]


class _Base(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PydUserInfo(_Base):
    cibil_id: str = ""
    cibil_score: OptInt = None
    first_name: str = ""
    middle_name: str = ""
    last_name: str = ""
    mobile_number: str = ""
    cibil_score_fetch_date: FetchTime = None


class PydAccount(_Base):
    account_detail_id: str = ""
    member_name: str = ""
    account_number: str = ""
    date_opened: OptDate = None
    date_closed: OptDate = None
    newly_opened: bool = False
    name: str = ""


class PydCreditAge(_Base):
    text: str = Field(default="", alias="credit_age")
    months: int | None = None

    @model_validator(mode="after")
    def _months(self) -> PydCreditAge:
        years = _YEARS.search(self.text)
        months = _MONTHS.search(self.text)
        if years is not None or months is not None:
            total = (int(years.group(1)) * 12 if years else 0) + (
                int(months.group(1)) if months else 0
            )
            object.__setattr__(self, "months", total)
        return self


class PydCreditMix(_Base):
    secured_loan: OptInt = None
    unsecured_loan: OptInt = None
    total_percent_completed: OptInt = None


class PydCreditUtilization(_Base):
    credit_utilize: float | None = None
    credit_limit: Decimal | None = None
    total_balance: Decimal | None = None


class PydResult(_Base):
    userInfo: PydUserInfo
    activityInfo: list[PydAccount] = []
    creditAge: PydCreditAge | None = None
    creditMix: PydCreditMix | None = None
    inquiryCount: int | None = None
    lastMonthInquiryCount: int | None = None
    last6MonthInquiryCount: int | None = None
    creditUtilize: PydCreditUtilization | None = None
    onTimePaymentPercentile: int | None = None


class PydData(_Base):
    result: PydResult
    access_token: str | None = None


class PydanticCreditHistory(_Base):
    """The success envelope as pydantic v2 models, with all of our decoder's conversions."""

    error_code: str
    status: str
    message: str = ""
    soft_ref_id: str | None = None
    data: PydData


class _WireUser(msgspec.Struct):
    cibil_id: str = ""
    cibil_score: str = ""
    first_name: str = ""
    middle_name: str = ""
    last_name: str = ""
    mobile_number: str = ""
    cibil_score_fetch_date: str = ""


class _WireAccount(msgspec.Struct):
    account_detail_id: str = ""
    member_name: str = ""
    account_number: str = ""
    date_opened: str = ""
    date_closed: str = ""
    newly_opened: str = ""
    name: str = ""


class _WireAge(msgspec.Struct):
    credit_age: str = ""


class _WireMix(msgspec.Struct):
    secured_loan: str = ""
    unsecured_loan: str = ""
    total_percent_completed: str = ""


class _WireUtil(msgspec.Struct):
    credit_utilize: str = ""
    credit_limit: str = ""
    total_balance: str = ""


class _WireResult(msgspec.Struct):
    userInfo: _WireUser
    activityInfo: list[_WireAccount] = []
    creditAge: _WireAge | None = None
    creditMix: _WireMix | None = None
    inquiryCount: int | None = None
    lastMonthInquiryCount: int | None = None
    last6MonthInquiryCount: int | None = None
    creditUtilize: _WireUtil | None = None
    onTimePaymentPercentile: int | None = None


class _WireData(msgspec.Struct):
    result: _WireResult
    access_token: str | None = None


class WireCreditHistory(msgspec.Struct):
    """The success envelope as plain msgspec Structs of strings: no conversions at all."""

    error_code: str
    status: str
    message: str = ""
    soft_ref_id: str | None = None
    data: _WireData | None = None
