# What holds a bulk run still, as the progress line and the summary tell it: the API's
# outages (the client's circuit_changed events) and the shared rate limiter's (HeldLimiter's
# changes, _hold.py). A value with transitions that take the time (the loop's clock) as an
# argument, tested as tables. It must never read a clock or the client's internals: before
# it, the progress line read client._circuit directly, so any change to the breaker's
# fields broke the CLI; now the event stream is the one contract.
"""The :class:`Pauses` of a run and the ``paused:`` lines."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aopay_async._breaker import HALF_OPEN_RETRY_AFTER

__all__ = ["Outage", "Pauses", "limiter_paused_line", "paused_line"]


def paused_line(seconds: float) -> str:
    """What the progress shows while the circuit breaker holds the rows."""
    return f"paused: API unavailable, next probe in {math.ceil(seconds)}s"


def limiter_paused_line(seconds: float, reason: str) -> str:
    """What the progress shows while rows wait for the shared rate limiter's Redis."""
    return (
        f"paused: rate limiter unavailable (Redis: {reason}) for {math.floor(seconds)}s; "
        "rows wait, none is sent"
    )


@dataclass
class Outage:
    """One cause of pauses: the current outage (if any), how many, and their seconds."""

    since: float | None = None  # when the current one began; None while not down
    count: int = 0
    finished: float = 0.0  # seconds over the outages that have ended
    ended: float = -math.inf  # when the last one ended
    last: float = 0.0  # how long the last one that ended lasted

    def begin(self, now: float) -> None:
        if self.since is None:
            self.since = now
            self.count += 1

    def end(self, now: float) -> None:
        if self.since is not None:
            self.last = now - self.since
            self.finished += self.last
            self.since, self.ended = None, now

    def seconds(self, now: float) -> float:
        """Seconds down in all, the current outage included."""
        return self.finished + (0.0 if self.since is None else now - self.since)

    def overlaps(self, start: float) -> bool:
        """Was it down at any moment from *start* on?"""
        return self.since is not None or self.ended >= start


@dataclass
class Pauses:
    """The API's outages and the rate limiter's, and the next probe of the API's."""

    api: Outage = field(default_factory=Outage)
    limiter: Outage = field(default_factory=Outage)
    next_probe: float = -math.inf  # while the API is down: when the breaker probes next
    limiter_reason: str = ""

    def circuit_changed(self, state: str | None, delay: float | None, now: float) -> None:
        """A ``circuit_changed`` event: *state* is the new one, *delay* to the next probe."""
        if state == "closed":
            self.api.end(now)
            return
        self.api.begin(now)
        if state == "open":
            self.next_probe = now + (delay or 0.0)
        else:  # half_open: probes are out; a refused caller asks again this much later
            self.next_probe = now + HALF_OPEN_RETRY_AFTER

    def limiter_changed(self, down: bool, reason: str, now: float) -> None:
        """The shared limiter's Redis went *down* (with the failure's class) or came back."""
        if down:
            self.limiter.begin(now)
            self.limiter_reason = reason
        else:
            self.limiter.end(now)

    def status(self, now: float) -> str | None:
        """The ``paused:`` line while something holds the rows, else None (the limiter
        first: rows waiting for it are not even sent, whatever the API's state)."""
        if self.limiter.since is not None:
            return limiter_paused_line(now - self.limiter.since, self.limiter_reason)
        if self.api.since is not None:
            return paused_line(max(0.0, self.next_probe - now))
        return None
