"""The retry budget's arithmetic: tables of cases and a reference model, no event loop."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async import RetryBudget
from aopay_async._budget import SLICES, BudgetState


def _withdrawals(state: BudgetState, now: float, n: int) -> int:
    """Try *n* withdrawals at *now*; return how many were granted."""
    return sum(state.try_withdraw(now) for _ in range(n))


@pytest.mark.parametrize(
    ("budget", "deposits", "granted"),
    [
        # the floor alone: 1/s over 10 s = 10 retries with no traffic at all
        (RetryBudget(), 0, 10),
        # 20% of 30 = 6 is below the floor of 10: the floor rules
        (RetryBudget(), 30, 10),
        # 20% of 100 = 20 is above the floor: the share rules
        (RetryBudget(), 100, 20),
        (RetryBudget(), 1000, 200),
        # no floor: exactly the share, rounded down
        (RetryBudget(min_per_second=0), 7, 1),
        (RetryBudget(min_per_second=0), 4, 0),
        # no share: the floor only
        (RetryBudget(percent=0, min_per_second=2), 1000, 20),
        # a shorter window holds a smaller floor
        (RetryBudget(window=2, min_per_second=1), 0, 2),
    ],
)
def test_retries_granted_in_one_window(budget: RetryBudget, deposits: int, granted: int) -> None:
    """In one window the budget grants max(percent × first attempts, floor × window)."""
    state = budget.new_state()
    for _ in range(deposits):
        state.deposit(100.0)
    assert _withdrawals(state, 100.0, granted + 50) == granted
    assert state.refused == 50


def test_a_refused_withdrawal_takes_nothing() -> None:
    """A refusal leaves the balance as it was, so a later deposit can make room again."""
    state = RetryBudget(min_per_second=0).new_state()
    for _ in range(5):
        state.deposit(1.0)
    assert state.try_withdraw(1.0)
    assert not state.try_withdraw(1.0)
    assert state.balance(1.0) == pytest.approx(0.0)
    for _ in range(5):
        state.deposit(1.0)
    assert state.try_withdraw(1.0)


@pytest.mark.parametrize(
    ("later", "granted"),
    [
        (0.0, 0),  # same moment: still spent
        (5.0, 0),  # half a window on: still spent
        (9.5, 0),  # the last slice of the window: still spent
        (11.0, 10),  # a whole window on: the spending has expired, the floor is back
        (1000.0, 10),  # long idle
    ],
)
def test_spending_expires_after_the_window(later: float, granted: int) -> None:
    """Withdrawals stop counting one window after they were made (to one slice)."""
    state = RetryBudget().new_state()
    assert _withdrawals(state, 100.2, 10) == 10
    assert _withdrawals(state, 100.2 + later, 10) == granted


def test_deposits_expire_too() -> None:
    """First attempts from more than a window ago no longer pay for retries."""
    state = RetryBudget(min_per_second=0).new_state()
    for _ in range(100):
        state.deposit(0.0)
    assert state.allowance(5.0) == pytest.approx(20.0)
    assert state.allowance(10.5) == pytest.approx(0.0)


def test_settings_are_frozen_and_shared_safely() -> None:
    """One RetryBudget gives each client its own ledger: spending one leaves the other."""
    budget = RetryBudget()
    a, b = budget.new_state(), budget.new_state()
    assert _withdrawals(a, 0.0, 20) == 10
    assert _withdrawals(b, 0.0, 20) == 10
    with pytest.raises(AttributeError):
        budget.percent = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"window": 0}, ValueError),
        ({"window": -1}, ValueError),
        ({"window": math.inf}, ValueError),
        ({"percent": -0.1}, ValueError),
        ({"percent": math.nan}, ValueError),
        ({"min_per_second": -1}, ValueError),
        ({"window": "10"}, TypeError),
        ({"percent": True}, TypeError),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    """Settings that make no budget raise at once, naming the setting."""
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3.0, allow_nan=False),  # time step
        st.sampled_from(["deposit", "withdraw"]),
    ),
    max_size=300,
)
budgets = st.builds(
    RetryBudget,
    window=st.sampled_from([1.0, 2.5, 10.0]),
    percent=st.sampled_from([0.0, 0.1, 0.2, 0.5]),
    min_per_second=st.sampled_from([0.0, 0.5, 1.0]),
)


@settings(max_examples=300, deadline=None)
@given(budget=budgets, steps=events)
def test_matches_a_reference_model(budget: RetryBudget, steps: list[tuple[float, str]]) -> None:
    """Every decision equals a brute-force count over the window's slices, and the bound holds.

    The reference keeps every event with its slice number; a withdrawal is granted exactly
    when the withdrawals in the last SLICES slices, plus this one, fit in
    max(percent × deposits in those slices, floor × window).
    """
    state = budget.new_state()
    width = budget.window / SLICES
    floor = budget.min_per_second * budget.window
    log: list[tuple[int, str]] = []
    now = 0.0
    for step, op in steps:
        now += step
        number = int(now // width)
        recent = [kind for n, kind in log if n > number - SLICES]
        deposits = recent.count("deposit")
        withdrawals = recent.count("withdraw")
        if op == "deposit":
            state.deposit(now)
            log.append((number, "deposit"))
            continue
        expected = withdrawals + 1 <= max(budget.percent * deposits, floor)
        assert state.try_withdraw(now) is expected
        if expected:
            log.append((number, "withdraw"))
            assert withdrawals + 1 <= max(budget.percent * deposits, floor)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"window": 0}, ValueError, "window must be a finite number above 0, not 0"),
        ({"window": "10"}, TypeError, "window must be a number, not str"),
        ({"percent": -0.5}, ValueError, "percent must be a finite number at least 0, not -0.5"),
        ({"percent": None}, TypeError, "percent must be a number, not NoneType"),
        (
            {"min_per_second": math.inf},
            ValueError,
            "min_per_second must be a finite number at least 0, not inf",
        ),
        ({"min_per_second": False}, TypeError, "min_per_second must be a number, not bool"),
    ],
)
def test_bad_settings_say_which_bound_was_missed(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    """The message names the setting, the bound it missed (above 0, or at least 0 where zero
    switches a part off) and the value or type it got, word for word."""
    with pytest.raises(error) as info:
        RetryBudget(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_a_ledger_keeps_its_settings_and_shows_its_counts() -> None:
    """``new_state`` ledgers point at their settings; the repr shows counts, nothing more."""
    budget = RetryBudget(min_per_second=0)
    state = budget.new_state()
    assert state.settings is budget
    for _ in range(10):
        state.deposit(0.0)
    assert state.try_withdraw(0.0)
    assert state.try_withdraw(0.0)
    assert not state.try_withdraw(0.0)
    assert repr(state) == "BudgetState(deposits=10, withdrawals=2, refused=1)"
