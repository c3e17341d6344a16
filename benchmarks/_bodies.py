"""The response bodies the benchmarks serve and decode (3 and 100 accounts), and the credentials.

The 3-account body is the repository's fixture ``tests/fixtures/seed_success.json`` (the
seed's example made valid, with synthetic values), compacted. The 100-account body is a
valid success envelope around a synthetic customer with exactly 100 accounts: from the
sandbox's generator (``aopay_async.testing.make_customer``) when it is importable, else from
the small deterministic generator below, so the suite also runs without the sandbox.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

__all__ = ["BODY_3", "COMPANY", "REGISTRATION", "body_for", "generator_used", "make_body"]

#: The credentials every benchmark sends: the sandbox's defaults (``aopay_async.testing``'s
#: ``DEFAULT_COMPANY_CODE`` / ``DEFAULT_REGISTRATION_ID``, which tests/test_bench_smoke.py checks),
#: written out here because importing ``aopay_async.testing`` loads aiohttp.web (1.9 s cold).
COMPANY, REGISTRATION = "CMP1045", "AOP-554"

_FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "seed_success.json"

_LENDERS = ("ADIBIRHFL", "AXIS BANK", "HDFC BANK", "ICICI BANK", "SBI CARDS", "BAJAJ FIN")
_TYPES = ("Housing Loan", "Personal Loan", "Credit Card", "Auto Loan", "Gold Loan")


def _fixture() -> dict[str, Any]:
    value: dict[str, Any] = json.loads(_FIXTURE.read_bytes())
    return value


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


BODY_3: bytes = _compact(_fixture())


def _own_accounts(n: int) -> list[dict[str, str]]:
    draw = random.Random(20230816)
    accounts = []
    for i in range(n):
        year = draw.randint(2005, 2023)
        opened = f"{year}-{draw.randint(1, 12):02d}-{draw.randint(1, 28):02d}"
        closed = "0000-00-00"
        if draw.random() < 0.4:
            closed = f"{min(2023, year + draw.randint(1, 5))}-{draw.randint(1, 12):02d}-15"
        accounts.append(
            {
                "account_detail_id": f"{9990000 + i}**",
                "member_name": draw.choice(_LENDERS),
                "account_number": "XXXXXXXXXXXX" + f"{draw.randint(0, 9999):04d}",
                "date_opened": opened,
                "date_closed": closed,
                "newly_opened": "1" if year == 2023 else "0",
                "name": draw.choice(_TYPES),
            }
        )
    return accounts


_generator = "benchmarks/_bodies.py"


def make_body(accounts: int) -> bytes:
    """A valid success body with exactly *accounts* synthetic accounts."""
    global _generator
    envelope = _fixture()
    try:
        from aopay_async.testing import make_customer

        result = make_customer(f"ACCTS{accounts}-bench", accounts=accounts).to_wire()
        _generator = "aopay_async.testing.make_customer"
    except Exception:  # the sandbox is optional here: fall back to our own generator
        result = envelope["data"]["result"]
        result["activityInfo"] = _own_accounts(accounts)
        _generator = "benchmarks/_bodies.py"
    envelope["data"]["result"] = result
    return _compact(envelope)


def generator_used() -> str:
    """Which generator made the last :func:`make_body` body."""
    return _generator


def body_for(accounts: int) -> bytes:
    """The benchmark body for 3 (the fixture) or any other number of accounts."""
    return BODY_3 if accounts == 3 else make_body(accounts)
