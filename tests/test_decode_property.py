"""Property: for any status, headers and bytes, decoding yields a history or an AOPayError.

The strategies and the rule live in tests/hostile_bodies.py; benchmarks/fuzz_decode.py runs the
same property for as long as you like. CI's share is small (AOPAY_FUZZ_CASES, default 150 per
strategy); a run of 200,000+ cases by hand is reported in the CHANGELOG.
"""

from __future__ import annotations

import os

from hostile_bodies import HEADERS, STATUSES, check, deep_nesting, mutated_seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES = int(os.environ.get("AOPAY_FUZZ_CASES", "150"))
SETTINGS = settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(STATUSES, HEADERS, st.binary(max_size=4096))
def test_arbitrary_bytes(status: int, headers: dict[str, str], body: bytes) -> None:
    """Arbitrary bytes under any status: a history or an AOPayError, never anything else."""
    check(status, headers, body)


@SETTINGS
@given(STATUSES, HEADERS, mutated_seeds())
def test_mutated_seed_bodies(status: int, headers: dict[str, str], body: bytes) -> None:
    """The seed bodies, cut, flipped and spliced with hostile tokens: still only our errors."""
    check(status, headers, body)


@settings(SETTINGS, max_examples=max(10, CASES // 5))
@given(STATUSES, deep_nesting())
def test_deep_nesting(status: int, body: bytes) -> None:
    """Nesting up to 200,000 deep (no RecursionError escapes), bare or inside a seed body."""
    check(status, {}, body)
