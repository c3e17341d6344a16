"""The sandbox's synthetic customers: deterministic, consistent, obviously fake.

Pure functions, no event loop: Hypothesis drives the invariants over arbitrary ids, and
tables pin the special ``ACCTS<n>`` ids and a few golden profiles (a change to the
generator changes every user's fixtures, so it must be deliberate).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async.testing import CustomerProfile, make_customer
from aopay_async.testing._customers import (
    ACCOUNT_TYPES,
    NEWLY_OPENED_DAYS,
    forced_account_count,
)

ids = st.text(min_size=1, max_size=64)


def check_consistent(profile: CustomerProfile) -> None:
    """Every figure of *profile* adds up, on the typed side and on the wire."""
    fetch_day = profile.fetched_at.date()
    assert 300 <= profile.cibil_score <= 900
    assert profile.secured_loans + profile.unsecured_loans == len(profile.accounts)
    opened = [account.date_opened for account in profile.accounts]
    assert opened == sorted(opened, reverse=True)  # newest first, like the seed
    for account in profile.accounts:
        assert account.date_opened <= fetch_day
        if account.date_closed is not None:
            assert account.date_opened <= account.date_closed <= fetch_day
        assert account.newly_opened == ((fetch_day - account.date_opened).days <= NEWLY_OPENED_DAYS)
        assert ACCOUNT_TYPES[account.name] == account.secured
        assert re.fullmatch(r"[0-9]{6,7}\*{2,3}", account.account_detail_id)
        assert len(account.account_detail_id) == 9
        assert re.fullmatch(r"X{11,16}[0-9]{4}", account.account_number)
    assert 0 <= profile.total_balance <= profile.credit_limit
    if profile.credit_limit:
        expected = round(100 * profile.total_balance / profile.credit_limit)
        assert abs(profile.credit_utilize - expected) <= 1  # ours rounds halves up, exactly
        assert profile.credit_utilize == (200 * profile.total_balance + profile.credit_limit) // (
            2 * profile.credit_limit
        )
    else:
        assert profile.credit_utilize == 0
    if profile.accounts:
        oldest = min(opened)
        months = (fetch_day.year - oldest.year) * 12 + fetch_day.month - oldest.month
        months -= fetch_day.day < oldest.day
        assert profile.credit_age_months == months
    assert profile.credit_age_text == (
        f"{profile.credit_age_months // 12} Years {profile.credit_age_months % 12} Months"
    )
    assert (
        profile.inquiry_count
        >= profile.last_6_month_inquiry_count
        >= profile.last_month_inquiry_count
        >= 0
    )
    assert 0 <= profile.on_time_payment_percentile <= 100
    assert 0 <= profile.total_percent_completed <= 100

    wire = profile.to_wire()
    mix, use = wire["creditMix"], wire["creditUtilize"]
    assert int(mix["secured_loan"]) + int(mix["unsecured_loan"]) == len(wire["activityInfo"])
    if int(use["credit_limit"]):
        ratio = 100 * int(use["total_balance"]) / int(use["credit_limit"])
        assert abs(int(use["credit_utilize"]) - ratio) <= 0.5
    for item in wire["activityInfo"]:
        closed = item["date_closed"]
        assert closed == "0000-00-00" or closed >= item["date_opened"]


@settings(max_examples=200, deadline=None)
@given(ids)
def test_any_id_gives_a_consistent_profile(cibil_id: str) -> None:
    """For any id the profile's figures add up and stay in range."""
    profile = make_customer(cibil_id)
    check_consistent(profile)
    assert forced_account_count(cibil_id) is not None or len(profile.accounts) <= 40


@settings(max_examples=50, deadline=None)
@given(ids)
def test_the_same_id_always_gives_the_same_profile(cibil_id: str) -> None:
    """Determinism: two calls give equal profiles and byte-identical wire JSON."""
    first, second = make_customer(cibil_id), make_customer(cibil_id)
    assert first == second
    assert msgspec.json.encode(first.to_wire()) == msgspec.json.encode(second.to_wire())


@pytest.mark.parametrize(
    ("cibil_id", "accounts"),
    [
        ("ACCTS0", 0),
        ("ACCTS3", 3),
        ("ACCTS100", 100),
        ("ACCTS100-7", 100),
        ("ACCTS3_batch-42", 3),
        ("ACCTS1000", 1000),
        ("ACCTS99999", 1000),
        ("accts3", None),
        ("XACCTS3", None),
        ("ACCTS", None),
        ("ACCTS3x", None),
    ],
)
def test_accts_ids_fix_the_account_count(cibil_id: str, accounts: int | None) -> None:
    """ACCTS<n> (optionally followed by -, _, : or . and anything) gives exactly n accounts."""
    assert forced_account_count(cibil_id) == accounts
    profile = make_customer(cibil_id)
    if accounts is not None:
        assert len(profile.accounts) == accounts
    check_consistent(profile)


@pytest.mark.parametrize("accounts", [0, 1, 3, 100, 1000])
def test_the_accounts_argument_overrides_the_count(accounts: int) -> None:
    """make_customer(id, accounts=n) gives exactly n accounts, still consistent."""
    profile = make_customer("ANY", accounts=accounts)
    assert len(profile.accounts) == accounts
    check_consistent(profile)


@pytest.mark.parametrize("accounts", [-1, 1001])
def test_the_accounts_argument_is_bounded(accounts: int) -> None:
    """An account count outside 0–1000 is refused."""
    with pytest.raises(ValueError, match="between 0 and 1000"):
        make_customer("ANY", accounts=accounts)


def test_fetched_at_moves_only_the_dates() -> None:
    """A given fetch date keeps the customer (name, score, accounts) and shifts the dates."""
    base = make_customer("MOVE01")
    moved = make_customer("MOVE01", fetched_at=dt.datetime(2030, 1, 1, 12, 0, 0))
    assert (moved.first_name, moved.cibil_score, len(moved.accounts)) == (
        base.first_name,
        base.cibil_score,
        len(base.accounts),
    )
    assert moved.to_wire()["userInfo"]["cibil_score_fetch_date"] == "2030-01-01 12:00:00"
    check_consistent(moved)


def test_profiles_vary_across_ids() -> None:
    """Across 300 ids the generator covers the ranges the issue asks for."""
    profiles = [make_customer(f"VARY{i}") for i in range(300)]
    counts = {len(p.accounts) for p in profiles}
    assert 0 in counts
    assert max(counts) > 20
    assert min(p.cibil_score for p in profiles) < 550 < max(p.cibil_score for p in profiles)
    assert any(a.newly_opened for p in profiles for a in p.accounts)
    assert any(a.date_closed is None for p in profiles for a in p.accounts)
    assert {a.name for p in profiles for a in p.accounts} == set(ACCOUNT_TYPES)
    assert len({p.masked_cibil_id for p in profiles}) > 250


@settings(max_examples=100, deadline=None)
@given(ids)
def test_names_and_numbers_are_obviously_fake(cibil_id: str) -> None:
    """Names are from the synthetic list; mobiles start with 555, which no Indian mobile does."""
    profile = make_customer(cibil_id)
    assert profile.first_name.endswith("first")
    assert profile.last_name.endswith("last")
    assert profile.middle_name in ("", "Synthmiddle")
    assert re.fullmatch(r"555[0-9]{4}\*{3}", profile.mobile_number)
    assert re.fullmatch(r"[0-9]{6}\*", profile.masked_cibil_id)


@pytest.mark.parametrize(
    ("cibil_id", "digest"),
    [
        ("xyz", "77f6be069f3b3cda"),
        ("ACCTS3", "9aea84ef444a7c65"),
        ("ACCTS100", "65ca1d03d7913257"),
    ],
)
def test_golden_profiles_do_not_drift(cibil_id: str, digest: str) -> None:
    """Pinned digests of the wire JSON: the generator is stable across runs and Pythons."""
    encoded = msgspec.json.encode(make_customer(cibil_id).to_wire())
    assert hashlib.sha256(encoded).hexdigest()[:16] == digest
