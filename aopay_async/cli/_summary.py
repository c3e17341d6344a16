# Counting a run and the summary printed at its end: outcomes by error class, latency
# percentiles (a constant-memory histogram: 2,400 buckets 1% wide, from 1 us to ~3 hours,
# within 1% of the exact percentile), attempts, retries and HTTP statuses seen on the wire.
# Attempts, statuses, wire time and limiter waits come from the client's event stream
# (Tally.on_event is an event hook), so 429s the client retried are counted too, whichever
# transport sent them, and so do the circuit's changes (the "paused" line and the pauses).
# It must never print customer data: counts, classes and statuses only.
"""The :class:`Tally` of a run, :class:`LatencyHistogram`, and :func:`print_summary`."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

from aopay_async._events import Event, EventKind

from ._pauses import Pauses

__all__ = ["LatencyHistogram", "Tally", "format_ms", "print_summary"]


class LatencyHistogram:
    """Percentiles in constant memory: log-spaced buckets 1% wide, from 1 µs to ~3 hours."""

    _BASE: Final = 1e-6
    _LOG_STEP: Final = math.log(1.01)

    def __init__(self) -> None:
        self._counts = [0] * 2400
        self.count = 0

    def add(self, seconds: float) -> None:
        index = int(math.log(max(seconds, self._BASE) / self._BASE) / self._LOG_STEP)
        self._counts[min(index, len(self._counts) - 1)] += 1
        self.count += 1

    def percentile(self, p: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * p / 100))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return self._BASE * math.exp((index + 0.5) * self._LOG_STEP)
        return None  # pragma: no cover - unreachable: the counts add up to self.count


@dataclass
class Tally:
    """Counters for one run, read by the progress display and the summary."""

    total: int | None = None  # input rows, when knowable
    previous_ok: int = 0  # finished in an earlier run, skipped now
    previous_failed: int = 0
    ok: int = 0
    failed: int = 0
    bad_rows: int = 0
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    attempts: int = 0  # HTTP attempts started, retries included
    connection_errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # whole rows
    wire: LatencyHistogram = field(default_factory=LatencyHistogram)  # attempts on the wire
    limiter_wait: LatencyHistogram = field(default_factory=LatencyHistogram)  # slot+token waits
    unsent: int = 0  # rows dropped after Ctrl-C before any attempt was sent
    started: float = field(default_factory=time.monotonic)
    pauses: Pauses = field(default_factory=Pauses)  # the API's and the limiter's outages
    resent: int = 0  # rows sent again: their wait for the rate limiter outlasted --deadline

    def paused(self) -> str | None:
        """The ``paused:`` line while an outage holds the rows; None when none does."""
        return self.pauses.status(_now())

    def limiter_changed(self, down: bool, reason: str) -> None:
        """The shared limiter's Redis went down or came back (HeldLimiter's hook)."""
        self.pauses.limiter_changed(down, reason, _now())

    @property
    def done(self) -> int:
        """Rows finished in this run (bad rows included)."""
        return self.ok + self.failed

    @property
    def previous(self) -> int:
        return self.previous_ok + self.previous_failed

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(self.total - self.previous - self.done, 0) / rate

    def on_event(self, event: Event) -> None:
        """The client's event hook: count each attempt, its status and its times."""
        kind = event.kind
        if kind is EventKind.ATTEMPT_FINISHED:
            if event.status_code is None:
                self.connection_errors += 1
            else:
                self.statuses[event.status_code] += 1
            if event.wire_seconds is not None:
                self.wire.add(event.wire_seconds)
        elif kind is EventKind.ATTEMPT_STARTED:
            self.attempts += 1
        elif kind is EventKind.LIMITER_WAITED and event.wait_seconds is not None:
            self.limiter_wait.add(event.wait_seconds)
        elif kind is EventKind.CIRCUIT_CHANGED:
            self.pauses.circuit_changed(event.state, event.delay_seconds, _now())


def format_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _percentiles(histogram: LatencyHistogram) -> str:
    return ", ".join(f"p{p} {format_ms(histogram.percentile(p))}" for p in (50, 95, 99))


def _now() -> float:
    """The pauses' clock: the running loop's (asyncio's or uvloop's), as the client's."""
    import asyncio

    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # pragma: no cover - the summary is printed inside the loop
        return time.monotonic()


def print_summary(
    tally: Tally, label: str, output: Path, *, interrupted: bool, stream: TextIO | None = None
) -> None:
    """Counts by outcome and error class, times, retries, 429s; no customer data.

    Times are split: ``latency`` is a whole row (limiter waits, retries and backoff
    included), ``wire`` one attempt from send to response, ``limiter`` one wait for a
    connection slot and a rate-limit token: at 10/s with 32 rows in flight a row waits ~3 s
    for a token and spends ~1 ms on the wire, and one number would hide which.
    """
    elapsed = time.monotonic() - tally.started
    out: list[str] = []
    state = "interrupted" if interrupted else "done"
    out.append(f"{label} {state}: {tally.done} rows in {elapsed:.1f}s ({tally.rate():.1f} rows/s)")
    out.append(f"  ok        {tally.ok}")
    if tally.previous_failed:
        out.append(
            f"  failed    {tally.failed} this run, {tally.previous_failed} from earlier runs"
        )
    else:
        out.append(f"  failed    {tally.failed}")
    for name, n in tally.errors.most_common():
        out.append(f"    {name:<22}{n}")
    if tally.bad_rows:
        out.append(f"    (of which bad input rows, not sent: {tally.bad_rows})")
    if tally.unsent:
        out.append(f"  not sent  {tally.unsent} (interrupted while waiting; --resume does them)")
    if tally.previous:
        out.append(
            f"  skipped   {tally.previous} finished in an earlier run "
            f"({tally.previous_ok} ok, {tally.previous_failed} failed)"
        )
    out.append(f"  latency   {_percentiles(tally.latency)} (whole row)")
    out.append(f"  wire      {_percentiles(tally.wire)} (one attempt, send to response)")
    out.append(f"  limiter   {_percentiles(tally.limiter_wait)} (one wait for a slot and a token)")
    out.append(f"  attempts  {tally.attempts} ({tally.retries} retries)")
    out.append(f"  429s seen {tally.statuses.get(429, 0)}")
    now = _now()
    api, limiter = tally.pauses.api, tally.pauses.limiter
    if api.count:
        out.append(
            f"  pauses    {api.count} (API unavailable: rows held, not failed; "
            f"{api.seconds(now):.0f}s paused in all)"
        )
    if limiter.count:
        out.append(
            f"  redis     {limiter.count} {'outage' if limiter.count == 1 else 'outages'} of "
            f"the rate limiter (rows waited, none failed; {limiter.seconds(now):.0f}s paused "
            f"in all; {tally.resent} sent again)"
        )
    other = {s: n for s, n in sorted(tally.statuses.items()) if s not in (200, 429)}
    if other or tally.connection_errors:
        parts = [f"{status}: {n}" for status, n in other.items()]
        if tally.connection_errors:
            parts.append(f"no response: {tally.connection_errors}")
        out.append(f"  other     {', '.join(parts)}")
    out.append(f"  output    {'stdout' if str(output) == '-' else output}")
    print("\n".join(out), file=stream or sys.stdout, flush=True)
