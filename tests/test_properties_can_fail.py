"""Every property test can fail: each one, run against a deliberately broken function, reports it.

A Hypothesis test that cannot fail is worse than none: it reads as a guarantee. Issue 14 found
one ("the wait never passes the cap" drew from the global ``random``, which Hypothesis reseeds
per example, so a cap of 9 instead of 8 passed). Here each property of the suite is re-run
with the function it checks swapped (in the test module's namespace) for a plausible bug, and
must raise. A last test keeps the table complete: a new ``@given`` test anywhere in tests/
needs its row here (its breaker), or the suite fails.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
import math
import pathlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import Phase, settings

from aopay_async._decode import decode_response, parse_credit_age
from aopay_async._errors import redact
from aopay_async._limiter import RateLimiter, TokenBucket
from aopay_async._models import check_id
from aopay_async._observe import Observer
from aopay_async._retry import backoff_delay, next_wait, parse_retry_after
from aopay_async._slots import Slots
from aopay_async._window import SlidingWindow
from aopay_async.cli._pauses import Outage
from aopay_async.cli._seen import FirstLines, digest
from aopay_async.events import Event, EventKind

TESTS = pathlib.Path(__file__).parent

#: A breaker swaps names in the test module for broken versions (it gets the module).
Breaker = Callable[[pytest.MonkeyPatch, ModuleType], None]
#: What the property raises when it catches the bug: its assertion, as a rule.
Caught = type[BaseException] | tuple[type[BaseException], ...]


# -- the broken functions -----------------------------------------------------------------------


def _retry_after_one_short(value: str | None, *, now: float | None = None) -> float | None:
    """Off by one: reads "3" as 2 seconds."""
    got = parse_retry_after(value, now=now)
    return None if got is None else max(0.0, got - 1.0)


def _retry_after_ignoring_now(value: str | None, *, now: float | None = None) -> float | None:
    """Forgets *now* and measures from the real clock."""
    return parse_retry_after(value)


def _backoff_without_cap(
    retry_number: int, *, base: float = 0.5, cap: float = 8.0, uniform: Any = None
) -> float:
    """Forgets the cap."""
    return backoff_delay(retry_number, base=base, cap=math.inf, uniform=uniform)


class _LeakyBucket(TokenBucket):
    """One token more than asked for: lets one start too many through in a window."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        super().__init__(rate, burst + 1)


class _SlowBucket(TokenBucket):
    """1% under the rate asked for: safe, but not exact."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        super().__init__(rate * 0.99, burst)


class _OneSlotTooMany(Slots):
    """A gate that admits one holder more than its size."""

    def __init__(self, size: int) -> None:
        super().__init__(size + 1)


def _redact_forgetting_secrets(text: str, secrets: Any = (), limit: int = 200) -> str:
    """Scrubs digits and controls but forgets the known secrets."""
    return redact(text, (), limit)


def _credit_age_years_only(text: str) -> int | None:
    """Reads the years and drops the months."""
    months = parse_credit_age(text)
    return None if months is None else months - months % 12


def _decoder_leaking_unicode_errors(
    status: int, headers: Any, body: bytes, *, secrets: Any = ()
) -> Any:
    """Lets a UnicodeDecodeError escape for bytes that are not UTF-8."""
    body.decode("utf-8")
    return decode_response(status, headers, body, secrets=secrets)


def _check_id_allowing_100(name: str, value: object, *, env: str | None = None) -> str:
    """Accepts ids up to 100 characters instead of 64."""
    if isinstance(value, str) and len(value) <= 100:
        return value
    return check_id(name, value, env=env)


def _replace_profile(**changes: object) -> Breaker:
    """A make_customer whose profiles have *changes* applied."""

    def breaker(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
        real = module.make_customer

        def broken(*args: Any, **kwargs: Any) -> Any:
            return dataclasses.replace(real(*args, **kwargs), **changes)

        monkeypatch.setattr(module, "make_customer", broken)

    return breaker


def _non_deterministic_profiles(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """A make_customer that draws a different customer on every call for the same id."""
    real = module.make_customer
    counter = itertools.count()

    def broken(cibil_id: str, **kwargs: Any) -> Any:
        return real(f"{cibil_id}#{next(counter)}", **kwargs)

    monkeypatch.setattr(module, "make_customer", broken)


def _gcra_one_token_more(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """The Redis script's mirror with one token more than asked for."""
    real = module.gcra_reserve
    monkeypatch.setattr(
        module,
        "gcra_reserve",
        lambda now, tat, interval, burst: real(now, tat, interval, burst + 1),
    )


def _interval_rounded_down(rate: float) -> int:
    """The µs grid step rounded down: slightly faster than asked."""
    return max(1, int(1_000_000 / rate))


def _reference_keeping_digits(value: object, secrets: Any = ()) -> str | None:
    """Keeps any string reference, all-digit ones (phone-like) included."""
    return value if isinstance(value, str) else None


def _reference_ignoring_secrets(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """A safe_reference that forgets the secrets it is given."""
    real = module.safe_reference
    monkeypatch.setattr(module, "safe_reference", lambda value, secrets=(): real(value))


def _judge_forgetting_order_ids(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """A judge that never looks at the order ids already taken: duplicates are sent."""
    real = module.judge
    monkeypatch.setattr(module, "judge", lambda row, ledger, order_lines: real(row, ledger, {}))


def _shard_counting_from_one(rows: Any, shard: tuple[int, int] | None) -> Any:
    """Numbers the rows from 1, not 0: every shard takes its neighbour's rows."""
    if shard is None:
        return rows
    k, n = shard
    return (row for number, row in enumerate(rows, start=1) if number % n == k)


def _decoder_parsing_with_json_loads(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """A decoder that parses with json.loads first: its ValueErrors and RecursionError escape."""
    import json
    import sys

    def leaky(status: int, headers: Any, body: bytes, *, secrets: Any = ()) -> Any:
        json.loads(body)
        return decode_response(status, headers, body, secrets=secrets)

    monkeypatch.setattr(sys.modules["hostile_bodies"], "decode_response", leaky)


class _BucketAdmittingAll(TokenBucket):
    """The bucket before admit: every caller woken after a stall starts at once."""

    def admit(self, now: float, slot: float = -math.inf) -> float:
        return 0.0


def _relay_reordering(now: float, last: float, delay: float, jitter: float, u: float) -> float:
    """Forgets the chunk ahead: a later chunk with a shorter draw overtakes it."""
    return now + delay - jitter + 2.0 * jitter * u


def _connection_keeping_the_last_read(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """A fast-path connection that keeps only the body bytes of the last read."""

    class Broken(module._Connection):  # type: ignore[name-defined,misc]
        def on_body(self, body: bytes) -> None:
            self.chunks.clear()
            super().on_body(body)

    monkeypatch.setattr(module, "_Connection", Broken)


def _breaker_one_probe_too_many(**settings: Any) -> Any:
    """A circuit breaker that lets one probe more through than it was given."""
    from aopay_async import CircuitBreaker

    settings["probes"] = settings.get("probes", 1) + 1
    return CircuitBreaker(**settings)


def _breaker_one_failure_late(**settings: Any) -> Any:
    """A circuit breaker that opens one failure after the run it was given."""
    from aopay_async import CircuitBreaker

    settings["consecutive_failures"] = settings.get("consecutive_failures", 10) + 1
    return CircuitBreaker(**settings)


def _budget_one_retry_too_many(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """A retry budget that grants one retry more than the window allows."""
    from aopay_async._budget import BudgetState

    real = BudgetState.try_withdraw

    def leaky(self: BudgetState, now: float) -> bool:
        if real(self, now):
            return True
        self._window.add_b(now)
        return self._window.b <= self.allowance(now) + 1

    monkeypatch.setattr(BudgetState, "try_withdraw", leaky)


class _WindowTooLong(SlidingWindow):
    """A sliding window 10% longer than asked for: counts outlive their window."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds * 1.1)


def _sagging_rate(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """An adaptive rate that drifts down between cuts (a forgotten clamp of its cubic)."""
    from aopay_async._adaptive import RateController

    real = RateController.rate

    def sagging(self: RateController, now: float) -> float:
        return max(self.floor, real(self, now) * (1.0 - min(now, 1.0) * 0.01))

    monkeypatch.setattr(RateController, "rate", sagging)


def _fallback_keeping_the_burst(rate: float, burst: int, processes: int) -> tuple[float, int]:
    """Divides the rate but gives each process the whole fleet's burst."""
    return rate / processes, burst


class _OutageCountingRepeats(Outage):
    """Counts a begin() while already down as another outage."""

    def begin(self, now: float) -> None:
        if self.since is not None:
            self.count += 1
        super().begin(now)


class _FirstLinesLastWins(FirstLines):
    """Keeps the latest line of an id, not its first: a duplicate would name itself."""

    def setdefault(self, order_id: str, line: int) -> int:
        super().setdefault(order_id, line)
        self._lines[self._find(*digest(order_id))] = line
        return line


class _ObserverRepeatingFallback(Observer):
    """An observer that reports every word of a shared limiter, a change or not."""

    def fallback_limiter(self, active: bool, reason: str) -> None:
        state = "fallback" if active else "primary"
        self.emit(Event(EventKind.FALLBACK_LIMITER, state=state, reason=reason))


def _ceiling_preferring_rate_limit(limiter: RateLimiter | None, rate_limit: float | None) -> float:
    """``adaptive=True``'s ceiling taken from ``rate_limit`` even when the limiter has a rate."""
    from aopay_async._policy import adaptive_ceiling

    if rate_limit is not None:
        return float(rate_limit)
    return adaptive_ceiling(limiter, rate_limit)


def swap(name: str, broken: object) -> Breaker:
    """A breaker that replaces *name* in the test module by *broken*."""

    def breaker(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
        monkeypatch.setattr(module, name, broken)

    return breaker


# -- every property test and how to break what it checks ----------------------------------------

BREAKERS: dict[str, Breaker] = {
    "test_retry::test_parse_retry_after_reads_any_whole_seconds": swap(
        "parse_retry_after", _retry_after_one_short
    ),
    "test_retry::test_parse_retry_after_date_is_relative_to_now": swap(
        "parse_retry_after", _retry_after_ignoring_now
    ),
    "test_retry::test_backoff_never_exceeds_its_cap": swap("backoff_delay", _backoff_without_cap),
    # The very mutant the old property let through: the default cap 9 instead of 8.
    "test_retry::test_wait_never_passes_the_deadline_nor_the_cap": swap(
        "next_wait", functools.partial(next_wait, cap=9.0)
    ),
    "test_limiter::test_no_window_holds_more_than_burst_plus_rate_times_t": swap(
        "TokenBucket", _LeakyBucket
    ),
    "test_limiter::test_every_window_bound_is_checked_between_any_two_starts": swap(
        "TokenBucket", _LeakyBucket
    ),
    "test_limiter::test_constant_demand_runs_at_exactly_the_rate": swap("TokenBucket", _SlowBucket),
    "test_limiter::test_closed_loop_demand_long_run_rate_is_the_rate": swap(
        "TokenBucket", _SlowBucket
    ),
    "test_limiter::test_each_start_is_the_earliest_the_bound_allows": swap(
        "TokenBucket", _SlowBucket
    ),
    "test_slots::test_never_more_than_size_holders": swap("Slots", _OneSlotTooMany),
    "test_errors::test_redact_never_leaks": swap("redact", _redact_forgetting_secrets),
    "test_decode::test_parse_credit_age_round_trips": swap(
        "parse_credit_age", _credit_age_years_only
    ),
    "test_decode::test_any_bytes_decode_or_raise_one_of_ours": swap(
        "decode_response", _decoder_leaking_unicode_errors
    ),
    "test_models::test_over_long_ids_always_refused": swap("check_id", _check_id_allowing_100),
    "test_decode_property::test_arbitrary_bytes": _decoder_parsing_with_json_loads,
    "test_decode_property::test_mutated_seed_bodies": _decoder_parsing_with_json_loads,
    "test_decode_property::test_deep_nesting": _decoder_parsing_with_json_loads,
    "test_limiter_stall::test_real_starts_hold_the_bucket_through_a_stall": swap(
        "TokenBucket", _BucketAdmittingAll
    ),
    "test_sandbox_customers::test_any_id_gives_a_consistent_profile": _replace_profile(
        cibil_score=901
    ),
    "test_sandbox_customers::test_the_same_id_always_gives_the_same_profile": (
        _non_deterministic_profiles
    ),
    "test_sandbox_customers::test_names_and_numbers_are_obviously_fake": _replace_profile(
        mobile_number="9876512***"
    ),
    "test_observe::test_all_digit_references_are_never_kept": swap(
        "safe_reference", _reference_keeping_digits
    ),
    "test_observe::test_a_reference_holding_a_secret_is_never_kept": _reference_ignoring_secrets,
    "test_cli_units::test_no_client_order_id_is_sent_twice": _judge_forgetting_order_ids,
    "test_cli_fleet::test_fallback_buckets_of_n_processes_stay_within_the_limit": swap(
        "fallback_settings", _fallback_keeping_the_burst
    ),
    "test_cli_fleet::test_outage_counts_and_seconds_match_the_intervals": swap(
        "Outage", _OutageCountingRepeats
    ),
    "test_cli_seen::test_first_lines_behave_like_a_dict": swap("FirstLines", _FirstLinesLastWins),
    "test_redis_fallback_events::test_an_observer_reports_only_changes_starting_from_primary": swap(
        "Observer", _ObserverRepeatingFallback
    ),
    "test_redis_gcra::test_gcra_never_exceeds_the_window_bound": _gcra_one_token_more,
    "test_redis_gcra::test_gcra_saturated_grid_is_exact": _gcra_one_token_more,
    "test_redis_gcra::test_interval_never_faster_and_within_one_percent": swap(
        "interval_us", _interval_rounded_down
    ),
    "test_redis_cli::test_shards_split_the_rows_exactly": swap(
        "select_shard", _shard_counting_from_one
    ),
    "test_redis_bench::test_relay_keeps_order_and_the_delay": swap("release_at", _relay_reordering),
    "test_transport_fast::test_any_split_of_the_bytes_parses_the_same": (
        _connection_keeping_the_last_read
    ),
    "test_budget::test_matches_a_reference_model": _budget_one_retry_too_many,
    "test_breaker::test_invariants_hold_for_any_sequence": swap(
        "CircuitBreaker", _breaker_one_probe_too_many
    ),
    "test_breaker::test_opens_exactly_on_a_run_of_failures_when_the_ratio_is_off": swap(
        "CircuitBreaker", _breaker_one_failure_late
    ),
    "test_adaptive::test_rate_stays_in_bounds_and_only_climbs_between_cuts": _sagging_rate,
    "test_window::test_matches_a_reference_model": swap("SlidingWindow", _WindowTooLong),
    "test_policy::test_adaptive_ceiling_is_the_limiters_rate_else_rate_limit": swap(
        "adaptive_ceiling", _ceiling_preferring_rate_limit
    ),
}


def _module(name: str) -> ModuleType:
    # pytest's default ("prepend") import mode imports tests/test_x.py as the top-level
    # module test_x; importing it by that name gives the very module pytest collected.
    return importlib.import_module(name)


#: Properties whose failure is not an AssertionError: what escapes, or pytest.raises' own.
CAUGHT_AS: dict[str, Caught] = {
    "test_decode::test_any_bytes_decode_or_raise_one_of_ours": UnicodeDecodeError,
    "test_models::test_over_long_ids_always_refused": pytest.fail.Exception,
    "test_decode_property::test_arbitrary_bytes": (ValueError, RecursionError),
    "test_decode_property::test_mutated_seed_bodies": (ValueError, RecursionError),
    "test_decode_property::test_deep_nesting": (ValueError, RecursionError),
}


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


@pytest.mark.parametrize("test_id", sorted(BREAKERS))
def test_the_property_fails_on_a_broken_function(
    test_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the property against its broken function: Hypothesis must find a failing example.

    Only the failure the property itself reports counts (its assertion, as a rule): a broken
    stand-in that crashed with a TypeError would prove nothing. The run is derandomized (the
    same examples every time), unshrunk and keeps no database, so it is quick and leaves
    nothing behind for the real run to replay.
    """
    module_name, test_name = test_id.split("::")
    module = _module(module_name)
    test = getattr(module, test_name)
    current = test._hypothesis_internal_use_settings
    quick = settings(
        current,
        database=None,
        derandomize=True,
        phases=(Phase.explicit, Phase.generate),
        report_multiple_bugs=False,
        print_blob=False,
    )
    # Hypothesis reads a test's settings from this attribute when the test is called.
    monkeypatch.setattr(test, "_hypothesis_internal_use_settings", quick)
    BREAKERS[test_id](monkeypatch, module)
    caught = CAUGHT_AS.get(test_id, AssertionError)
    with pytest.raises(BaseException) as info:  # noqa: PT011 - checked leaf by leaf below
        test()
    leaves = list(_leaves(info.value))
    assert leaves, info.value
    assert all(isinstance(leaf, caught) for leaf in leaves), info.value


def test_every_property_test_has_a_breaker() -> None:
    """Each ``@given`` test in tests/ is listed above, so none can silently never fail."""
    found = set()
    for path in sorted(TESTS.glob("test_*.py")):
        if path.stem == pathlib.Path(__file__).stem:
            continue
        if "@given" not in path.read_text("utf-8"):
            continue
        module = _module(path.stem)
        for name, value in vars(module).items():
            if name.startswith("test_") and hasattr(value, "hypothesis"):
                found.add(f"{path.stem}::{name}")
    missing, gone = sorted(found - set(BREAKERS)), sorted(set(BREAKERS) - found)
    assert not missing, f"add a breaker to BREAKERS in {__file__} for {missing}"
    assert not gone, f"remove the BREAKERS rows of tests that no longer exist: {gone}"
