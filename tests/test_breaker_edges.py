"""The breaker's edges the mutation run found unpinned: exact words, boundaries, bookkeeping.

test_breaker.py holds the state machine's rules; here each boundary is checked on both
sides, the refusal messages whole (a user reads them), and the counts a transition reports
(times, opens, outages, downtime) read back exactly. No event loop.
"""

from __future__ import annotations

import math

import pytest

from aopay_async import CircuitBreaker
from aopay_async._breaker import CLOSED, HALF_OPEN, NORMAL, OPEN, REFUSED, Circuit, CircuitChange


def _open(circuit: Circuit, now: float) -> None:
    """Open a default-run circuit at *now* with a run of failures."""
    for _ in range(circuit.settings.consecutive_failures):
        circuit.record(now, False)
    assert circuit.state == OPEN


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"window": 0}, ValueError, "window must be a finite number above 0, not 0"),
        ({"open_seconds": "5"}, TypeError, "open_seconds must be a number, not str"),
        (
            {"max_open_seconds": math.inf},
            ValueError,
            "max_open_seconds must be a finite number above 0, not inf",
        ),
        ({"minimum_calls": 2.5}, TypeError, "minimum_calls must be an int, not float"),
        (
            {"consecutive_failures": True},
            TypeError,
            "consecutive_failures must be an int, not bool",
        ),
        ({"probes": 0}, ValueError, "probes must be at least 1, not 0"),
        ({"failure_ratio": "half"}, TypeError, "failure_ratio must be a number, not str"),
        ({"failure_ratio": True}, TypeError, "failure_ratio must be a number, not bool"),
        ({"failure_ratio": 1.5}, ValueError, "failure_ratio must be in (0, 1], not 1.5"),
        (
            {"open_seconds": 10, "max_open_seconds": 5},
            ValueError,
            "max_open_seconds must be at least open_seconds",
        ),
    ],
)
def test_bad_settings_are_refused_in_words(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """Each refusal names the setting, what it must be, and what it got, word for word."""
    with pytest.raises(error) as info:
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 0.5},  # under a second is a window too
        {"open_seconds": 0.5},
        {"failure_ratio": 1.0},  # "only when every outcome failed"
        {"failure_ratio": 1},
        {"open_seconds": 5.0, "max_open_seconds": 5.0},  # a fixed wait: no doubling
        {"minimum_calls": 1, "consecutive_failures": 1, "probes": 1},
    ],
)
def test_settings_on_the_boundary_are_accepted(kwargs: dict[str, float]) -> None:
    """The bounds are inclusive where the docs say so: each of these is a valid breaker."""
    breaker = CircuitBreaker(**kwargs)
    for name, value in kwargs.items():
        assert getattr(breaker, name) == value


def test_every_transition_reports_its_time_wait_and_count() -> None:
    """Each CircuitChange carries when it happened, the wait to the next probe (open only)
    and how many times the circuit has opened so far."""
    changes: list[CircuitChange] = []
    circuit = CircuitBreaker().new_state(changes.append)
    _open(circuit, 10.0)
    ticket = circuit.admit(15.0)
    circuit.record(15.5, False, ticket)  # reopens for 10 s
    ticket = circuit.admit(25.5)
    circuit.record(26.0, True, ticket)
    assert changes == [
        CircuitChange(CLOSED, OPEN, 10.0, 5.0, 1),
        CircuitChange(OPEN, HALF_OPEN, 15.0, 1.0, 1),
        CircuitChange(HALF_OPEN, OPEN, 15.5, 10.0, 2),
        CircuitChange(OPEN, HALF_OPEN, 25.5, 1.0, 2),
        CircuitChange(HALF_OPEN, CLOSED, 26.0, 0.0, 2),
    ]


def test_downtime_adds_up_over_outages() -> None:
    """down_for counts the time spent open or half-open: the finished outages plus the
    current one; outages counts closed→open only."""
    circuit = CircuitBreaker().new_state()
    assert circuit.down_for(3.0) == 0.0
    _open(circuit, 10.0)
    assert circuit.down_for(12.0) == pytest.approx(2.0)
    ticket = circuit.admit(15.0)
    circuit.record(16.0, True, ticket)  # closed after 6 s down
    assert circuit.down_for(100.0) == pytest.approx(6.0)
    _open(circuit, 200.0)
    assert circuit.down_for(203.0) == pytest.approx(9.0)
    ticket = circuit.admit(205.0)
    circuit.record(205.0, True, ticket)  # 5 s more
    assert circuit.down_for(300.0) == pytest.approx(11.0)
    assert circuit.outages == 2
    assert circuit.opens == 2


@pytest.mark.parametrize(
    ("now", "refused", "retry_after"),
    [
        (104.99, True, 0.01),
        (105.0, False, 0.0),  # the moment open_until is reached, a probe may go
        (106.0, False, 0.0),  # late: still open (nobody asked), nothing left to wait
    ],
)
def test_the_end_of_an_open_period(now: float, refused: bool, retry_after: float) -> None:
    """would_refuse agrees with admit at open_until exactly, and retry_after never goes
    below zero once the wait is over."""
    circuit = CircuitBreaker().new_state()
    _open(circuit, 100.0)
    assert circuit.would_refuse(now) is refused
    assert circuit.retry_after(now) == pytest.approx(retry_after)
    assert circuit.state == OPEN
    assert (circuit.admit(now) == REFUSED) is refused


def test_a_closed_circuit_refuses_nothing_and_asks_no_wait() -> None:
    """Closed: nothing refused, no wait, every admit NORMAL."""
    circuit = CircuitBreaker().new_state()
    assert circuit.would_refuse(0.0) is False
    assert circuit.retry_after(0.0) == 0.0
    assert circuit.admit(0.0) == NORMAL


def test_half_open_refuses_exactly_when_every_probe_is_out() -> None:
    """would_refuse, half-open: False while a probe place is free, True once all are taken."""
    circuit = CircuitBreaker(probes=2).new_state()
    _open(circuit, 0.0)
    circuit.admit(5.0)
    assert circuit.state == HALF_OPEN
    assert circuit.would_refuse(5.0) is False
    circuit.admit(5.0)
    assert circuit.would_refuse(5.0) is True


def _second_half_open(circuit: Circuit) -> tuple[int, int]:
    """Two probes out in a first half-open period; the first fails, and the circuit is
    half-open again with a new probe out. Returns (the stale second probe, the new probe)."""
    _open(circuit, 0.0)
    first, stale = circuit.admit(5.0), circuit.admit(5.0)
    circuit.record(5.1, False, first)  # reopens for 10 s
    new = circuit.admit(15.1)
    assert circuit.state == HALF_OPEN
    assert new > 0
    assert stale > 0
    return stale, new


def test_a_probe_of_an_earlier_period_is_not_news_in_a_later_one() -> None:
    """A late success of the first period's probe does not close the second period's
    half-open circuit: only the current probe's verdict counts."""
    circuit = CircuitBreaker(probes=2).new_state()
    stale, new = _second_half_open(circuit)
    assert stale != new
    assert circuit.record(15.2, True, stale) is None
    assert circuit.state == HALF_OPEN
    change = circuit.record(15.3, True, new)
    assert change is not None
    assert change.new == CLOSED


def test_abandoning_a_probe_of_an_earlier_period_frees_no_place() -> None:
    """Only a current probe's abandonment frees a place: a stale one changes nothing."""
    circuit = CircuitBreaker(probes=2).new_state()
    stale, _ = _second_half_open(circuit)
    assert circuit.admit(15.2) > 0  # the second place of this period
    assert circuit.admit(15.2) == REFUSED
    circuit.abandon(stale)
    circuit.abandon(NORMAL)
    assert circuit.admit(15.3) == REFUSED


def test_window_counts_reads_the_closed_window() -> None:
    """window_counts is (outcomes, failures) over the window at the given time."""
    circuit = CircuitBreaker().new_state()
    circuit.record(0.0, True)
    circuit.record(0.5, False)
    circuit.record(5.0, True)
    assert circuit.window_counts(5.0) == (3, 1)
    assert circuit.window_counts(10.5) == (1, 0)  # the first second's slice has expired


def test_the_first_probe_s_ticket_is_positive_and_distinct_per_period() -> None:
    """Tickets: positive, the same for the probes of one period, new in the next."""
    circuit = CircuitBreaker(probes=2).new_state()
    _open(circuit, 0.0)
    a, b = circuit.admit(5.0), circuit.admit(5.0)
    assert a == b > 0
    circuit.record(5.1, False, a)
    c = circuit.admit(15.1)
    assert c > a
