"""The retry budget: how many retries the client may send, as a share of its recent calls.

This module owns the arithmetic only. :class:`RetryBudget` is the frozen setting a user
passes; :class:`BudgetState` is one client's ledger, a value plus two transitions that take
the time as an argument (the client passes its loop's monotonic clock). It must never
await, sleep, read a clock of its own, or import aiohttp: the event loop carries the
decision out, this module only makes it.

Why a budget (Finagle's ``RetryBudget`` shape): measured on main before it existed, a total
outage met every call with 1 + ``max_retries`` = 4 requests (3.81–3.87 sends per call with
200 callers), so an incident at AOPay was answered with 4× our normal traffic. With the
budget, retries in any window of ``window`` seconds are at most
``max(percent × first attempts, min_per_second × window)`` in that window, so a total outage
costs at most 1 + ``percent`` sends per call (1.2 by default) however many callers there
are, while a few random faults (3% measured) are all retried as before.

Each first attempt *deposits* one; each retry *withdraws* one if the balance allows, else
the retry is not sent. The window is kept as ``SLICES`` slices, so a deposit or a
withdrawal expires ``window`` seconds (to one slice) after it was made, and both expire
together: the bound above holds in every slice-aligned window. A deposit costs a few
attribute updates and no allocation (it runs on every call's fast path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["SLICES", "BudgetState", "RetryBudget"]

#: Slices the window is kept in (10 slices of 1 s for the default 10 s window).
SLICES: Final = 10


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not math.isfinite(value) or not low_ok:
        bound = "at least 0" if allow_zero else "above 0"
        raise ValueError(f"{name} must be a finite number {bound}, not {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """Retries allowed as a share of recent first attempts, plus a small floor.

    In any ``window`` seconds a client sends at most
    ``max(percent × first attempts, min_per_second × window)`` retries; when the budget is
    spent, a retryable failure is raised at once, with no further send. Each client keeps
    its own ledger (passing one ``RetryBudget`` to two clients shares the settings, not the
    balance). Defaults (why: see the README, "Resilience"): a 10 s window, 20%, 1 per second.
    """

    window: float = 10.0
    percent: float = 0.2
    min_per_second: float = 1.0

    def __post_init__(self) -> None:
        _positive("window", self.window)
        _positive("percent", self.percent, allow_zero=True)
        _positive("min_per_second", self.min_per_second, allow_zero=True)

    def new_state(self) -> BudgetState:
        """A fresh, empty ledger with these settings (one per client)."""
        return BudgetState(self)


class BudgetState:
    """One client's ledger: deposits and withdrawals per slice of the window.

    ``deposit(now)`` on every first attempt sent; ``try_withdraw(now)`` before a retry, which
    is sent only if it returns True. *now* is monotonic seconds; it must not go backwards
    (an earlier *now* is treated as the current slice).
    """

    __slots__ = (
        "_deposits",
        "_end",
        "_floor",
        "_index",
        "_newest",
        "_percent",
        "_slice",
        "_total_deposits",
        "_total_withdrawals",
        "_withdrawals",
        "refused",
        "settings",
    )

    def __init__(self, settings: RetryBudget) -> None:
        self.settings = settings
        self._slice = settings.window / SLICES
        self._percent = settings.percent
        self._floor = settings.min_per_second * settings.window
        self._deposits = [0] * SLICES
        self._withdrawals = [0] * SLICES
        self._total_deposits = 0
        self._total_withdrawals = 0
        self._newest = -(2**62)  # the slice number the ring's newest entry belongs to
        self._index = 0  # its place in the ring
        self._end = -math.inf  # when it ends: before then, no slice expires (the fast path)
        #: Retries refused since the ledger was made (for observability).
        self.refused = 0

    def _advance(self, now: float) -> int:
        """Expire slices older than the window; return the ring index of *now*'s slice."""
        if now < self._end:
            return self._index
        number = int(now // self._slice)
        newest = self._newest
        if number > newest:
            gap = number - newest
            if gap >= SLICES:
                self._deposits = [0] * SLICES
                self._withdrawals = [0] * SLICES
                self._total_deposits = 0
                self._total_withdrawals = 0
            else:
                deposits, withdrawals = self._deposits, self._withdrawals
                for n in range(newest + 1, number + 1):
                    i = n % SLICES
                    self._total_deposits -= deposits[i]
                    self._total_withdrawals -= withdrawals[i]
                    deposits[i] = 0
                    withdrawals[i] = 0
            self._newest = number
            self._index = number % SLICES
            self._end = (number + 1) * self._slice
        return self._index

    def deposit(self, now: float) -> None:
        """Count one first attempt sent at *now*."""
        # Inlined fast path (every call pays it): the current slice has not ended.
        i = self._index if now < self._end else self._advance(now)
        self._deposits[i] += 1
        self._total_deposits += 1

    def allowance(self, now: float) -> float:
        """Retries the window allows in all at *now* (spent ones included)."""
        self._advance(now)
        return max(self._percent * self._total_deposits, self._floor)

    def balance(self, now: float) -> float:
        """Retries that may still be sent at *now* (may be fractional)."""
        return self.allowance(now) - self._total_withdrawals

    def try_withdraw(self, now: float) -> bool:
        """Take one retry at *now* if the window allows it; False (and nothing taken) if not."""
        i = self._advance(now)
        if self._total_withdrawals + 1 > max(self._percent * self._total_deposits, self._floor):
            self.refused += 1
            return False
        self._withdrawals[i] += 1
        self._total_withdrawals += 1
        return True

    def __repr__(self) -> str:
        return (
            f"BudgetState(deposits={self._total_deposits}, "
            f"withdrawals={self._total_withdrawals}, refused={self.refused})"
        )
