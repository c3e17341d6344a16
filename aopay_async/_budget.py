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
the retry is not sent. The window is a ``_window.SlidingWindow`` of ``SLICES`` slices, so a
deposit or a withdrawal expires ``window`` seconds (to one slice) after it was made, and both
expire together: the bound above holds in every slice-aligned window. A deposit costs a few
attribute updates and no allocation (it runs on every call's fast path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._window import SLICES, SlidingWindow

__all__ = ["SLICES", "BudgetState", "RetryBudget"]


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

    __slots__ = ("_floor", "_percent", "_window", "refused", "settings")

    def __init__(self, settings: RetryBudget) -> None:
        self.settings = settings
        self._percent = settings.percent
        self._floor = settings.min_per_second * settings.window
        #: Deposits (``a``) and withdrawals (``b``) over the window.
        self._window = SlidingWindow(settings.window)
        #: Retries refused since the ledger was made (for observability).
        self.refused = 0

    def deposit(self, now: float) -> None:
        """Count one first attempt sent at *now*."""
        self._window.add_a(now)

    def allowance(self, now: float) -> float:
        """Retries the window allows in all at *now* (spent ones included)."""
        window = self._window
        window.advance(now)
        return max(self._percent * window.a, self._floor)

    def balance(self, now: float) -> float:
        """Retries that may still be sent at *now* (may be fractional)."""
        return self.allowance(now) - self._window.b

    def try_withdraw(self, now: float) -> bool:
        """Take one retry at *now* if the window allows it; False (and nothing taken) if not."""
        window = self._window
        window.advance(now)
        if window.b + 1 > max(self._percent * window.a, self._floor):
            self.refused += 1
            return False
        window.add_b(now)
        return True

    def __repr__(self) -> str:
        window = self._window
        return f"BudgetState(deposits={window.a}, withdrawals={window.b}, refused={self.refused})"
