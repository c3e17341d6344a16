"""The circuit breaker: when the API looks down, stop sending and probe now and then.

This module owns the state machine only. :class:`CircuitBreaker` is the frozen setting a
user passes; :class:`Circuit` is one client's breaker, a value with transitions that take
the time as an argument (the client passes its loop's monotonic clock). It must never
await, sleep, read a clock of its own, raise the client's errors or import aiohttp: the
client turns a refusal into ``CircuitOpenError``; this module only decides.

What counts: outage outcomes only. A connection error, a timeout or a 5xx is a *failure*;
any other complete answer (2xx, 4xx, 429, a body that fails to decode) proves the API is up
and is a *success*. A 429 is the rate limiter's business, never the breaker's.

The states (closed → open → half-open → closed | open):

- **closed**: attempts go out. Outcomes are counted over a sliding window of ``window``
  seconds (a ``_window.SlidingWindow`` of ``SLICES`` slices). It opens when, as a failure
  is recorded, the window holds at least ``minimum_calls`` outcomes of which at least
  ``failure_ratio`` failed, or after ``consecutive_failures`` failures in a row (judged on
  failures only: a success costs a counter update and no comparison). The second rule exists
  because a busy client's window is full of successes from before an outage: at 200
  attempts/s a 50% ratio over 10 s would need ~1,000 failed sends to trip; ten in a row take
  50 ms (Finagle's FailureAccrual and Envoy's outlier detection trip on consecutive failures
  for the same reason). At 3% random faults ten in a row has a chance of 0.03**10 per
  attempt: never in practice.
- **open**: every attempt is refused at once (nothing sent) for ``open_seconds``; the wait
  doubles after each failed probe, up to ``max_open_seconds``.
- **half-open**: at most ``probes`` attempts are let through as probes; the others are
  refused. A probe that succeeds closes the circuit (fresh window, wait back to
  ``open_seconds``); one that fails opens it again with the longer wait. A probe abandoned
  (cancelled, or cut by the call's own deadline) frees its place without a verdict.

Outcomes of attempts admitted before the circuit opened, arriving while it is open or
half-open, are ignored: they say nothing about the API *now*. Every transition is returned
as a :class:`CircuitChange` value and passed to ``on_change`` when one is set (the client's
hook for logging, events and the command line's "paused" line).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from ._errors import APIConnectionError, APIStatusError
from ._window import SLICES, SlidingWindow

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "NORMAL",
    "OPEN",
    "REFUSED",
    "SLICES",
    "Circuit",
    "CircuitBreaker",
    "CircuitChange",
    "State",
    "is_outage",
]

State = Literal["closed", "open", "half_open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half_open"

#: :meth:`Circuit.admit`: send normally.
NORMAL: Final = 0
#: :meth:`Circuit.admit`: refused; see :meth:`Circuit.retry_after`. (A probe is a positive ticket.)
REFUSED: Final = -1
#: While half-open with every probe place taken, how long a refused caller is told to wait:
#: the probe's answer is usually much sooner than an open period, so ask again soon.
HALF_OPEN_RETRY_AFTER: Final = 1.0


def is_outage(exc: BaseException) -> bool:
    """True for an outage outcome: a connection error, a timeout, or a 5xx answer."""
    if isinstance(exc, APIConnectionError):
        return True
    return isinstance(exc, APIStatusError) and exc.status_code >= 500


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """When the API looks down, refuse calls at once (``CircuitOpenError``) and probe.

    Opens when, over the last ``window`` seconds, at least ``minimum_calls`` attempts ended
    and at least ``failure_ratio`` of them were outage outcomes (connection errors,
    timeouts, 5xx — never 4xx or 429), or after ``consecutive_failures`` outage outcomes in
    a row. Stays open ``open_seconds``, then lets ``probes`` attempts through: a success
    closes it, a failure reopens it for twice as long, up to ``max_open_seconds``. Each
    client keeps its own state. Defaults (why: see the README, "Resilience"): 10 s window,
    20 calls, 50%, 10 in a row, 5 s open, up to 60 s, 1 probe.
    """

    window: float = 10.0
    minimum_calls: int = 20
    failure_ratio: float = 0.5
    consecutive_failures: int = 10
    open_seconds: float = 5.0
    max_open_seconds: float = 60.0
    probes: int = 1

    def __post_init__(self) -> None:
        for name in ("window", "open_seconds", "max_open_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, not {type(value).__name__}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number above 0, not {value!r}")
        for name in ("minimum_calls", "consecutive_failures", "probes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        ratio = self.failure_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float):
            raise TypeError(f"failure_ratio must be a number, not {type(ratio).__name__}")
        if not 0 < ratio <= 1:  # NaN fails this too
            raise ValueError(f"failure_ratio must be in (0, 1], not {ratio!r}")
        if self.max_open_seconds < self.open_seconds:
            raise ValueError("max_open_seconds must be at least open_seconds")

    def new_state(self, on_change: Callable[[CircuitChange], None] | None = None) -> Circuit:
        """A fresh, closed circuit with these settings (one per client)."""
        return Circuit(self, on_change)


@dataclass(frozen=True, slots=True)
class CircuitChange:
    """One transition: from *old* to *new* at time *at*.

    ``retry_after`` is the seconds until the next probe when *new* is ``"open"``, else 0.
    ``opens`` counts the times this circuit has opened so far (this one included).
    """

    old: State
    new: State
    at: float
    retry_after: float
    opens: int


class Circuit:
    """One client's breaker state; see the module docstring for the rules.

    The client calls :meth:`admit` just before sending an attempt (:data:`NORMAL`, a
    positive probe ticket, or :data:`REFUSED`), then :meth:`record` with the outcome and the
    ticket, or :meth:`abandon` if the attempt ended with no verdict.
    """

    __slots__ = (
        "_consecutive",
        "_open_for",
        "_probes_out",
        "_window",
        "down_since",
        "downtime",
        "generation",
        "on_change",
        "open_until",
        "opens",
        "outages",
        "settings",
        "state",
    )

    def __init__(
        self,
        settings: CircuitBreaker,
        on_change: Callable[[CircuitChange], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_change = on_change
        self.state: State = CLOSED
        #: When an open circuit lets its next probe through (monotonic seconds).
        self.open_until = -math.inf
        #: Times the circuit has opened.
        self.opens = 0
        #: Bumped on every entry to half-open; a probe's ticket is the generation it ran in.
        self.generation = 0
        #: Seconds spent not closed, over finished outages; and when the current one began.
        self.downtime = 0.0
        self.down_since = -math.inf
        #: Times it went from closed to open (an outage; reopenings after probes excluded).
        self.outages = 0
        self._open_for = settings.open_seconds
        #: Probes let through in the current half-open period (read only while half-open;
        #: set to 0 on entering it).
        self._probes_out = 0
        #: Outcomes (``a``) and failures (``b``) over the closed window.
        self._window = SlidingWindow(settings.window)
        self._consecutive = 0

    # -- reading ------------------------------------------------------------------------

    def retry_after(self, now: float) -> float:
        """Seconds a refused caller should wait before asking again (0 when closed)."""
        if self.state == OPEN:
            return max(0.0, self.open_until - now)
        if self.state == HALF_OPEN:
            return HALF_OPEN_RETRY_AFTER
        return 0.0

    def down_for(self, now: float) -> float:
        """Seconds this circuit has spent open or half-open so far (the pauses in all)."""
        if self.state == CLOSED:
            return self.downtime
        return self.downtime + (now - self.down_since)

    def window_counts(self, now: float) -> tuple[int, int]:
        """``(outcomes, failures)`` in the closed window at *now*."""
        return self._window.totals(now)

    # -- transitions --------------------------------------------------------------------

    def admit(self, now: float) -> int:
        """May an attempt go out at *now*? :data:`NORMAL`, a probe ticket (> 0), or REFUSED."""
        state = self.state
        if state == CLOSED:
            return NORMAL
        if state == OPEN:
            if now < self.open_until:
                return REFUSED
            self.generation += 1
            self._probes_out = 0
            self._change(HALF_OPEN, now)
        if self._probes_out < self.settings.probes:
            self._probes_out += 1
            return self.generation
        return REFUSED

    def would_refuse(self, now: float) -> bool:
        """True when :meth:`admit` would refuse at *now* (a cheap look, no transition)."""
        if self.state == CLOSED:
            return False
        if self.state == OPEN:
            return now < self.open_until
        return self._probes_out >= self.settings.probes

    def record(self, now: float, ok: bool, ticket: int = NORMAL) -> CircuitChange | None:
        """Count an attempt's outcome (*ok*: not an outage); return the transition, if any."""
        state = self.state
        if ticket > 0:
            if state != HALF_OPEN or ticket != self.generation:
                return None  # a probe of an earlier half-open period: no longer news
            # The verdict ends the half-open period: its probe count is not read again.
            if ok:
                self._open_for = self.settings.open_seconds
                self._window.reset()
                self._consecutive = 0
                return self._change(CLOSED, now)
            self._open_for = min(self._open_for * 2.0, self.settings.max_open_seconds)
            return self._open(now)
        if state != CLOSED:
            return None  # sent before the circuit opened
        if ok:
            # The path every successful attempt takes (after two comparisons): two counters
            # and a reset.
            self._consecutive = 0
            self._window.add_a(now)
            return None
        self._consecutive += 1
        window = self._window
        window.add_ab(now)
        settings = self.settings
        if self._consecutive >= settings.consecutive_failures or (
            window.a >= settings.minimum_calls and window.b >= settings.failure_ratio * window.a
        ):
            return self._open(now)
        return None

    def abandon(self, ticket: int) -> None:
        """An admitted attempt ended with no verdict (cancelled, or cut by its deadline)."""
        if ticket > 0 and self.state == HALF_OPEN and ticket == self.generation:
            self._probes_out -= 1

    # -- internals ----------------------------------------------------------------------

    def _open(self, now: float) -> CircuitChange:
        if self.state == CLOSED:
            self.down_since = now
            self.outages += 1
        self.opens += 1
        self.open_until = now + self._open_for
        return self._change(OPEN, now)

    def _change(self, new: State, now: float) -> CircuitChange:
        old, self.state = self.state, new
        if new == CLOSED:
            self.downtime += now - self.down_since
        change = CircuitChange(old, new, now, self.retry_after(now), self.opens)
        if self.on_change is not None:
            self.on_change(change)
        return change

    def __repr__(self) -> str:
        return f"Circuit(state={self.state!r}, opens={self.opens})"
