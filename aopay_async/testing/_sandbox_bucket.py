"""The sandbox's server-side quota: a token bucket that answers "how long until a token".

Owns: :class:`QuotaBucket`, the *server's* rate limit (a request over it gets a 429 with
``Retry-After``). Must never: sleep, read a clock (the caller passes ``now``) or be used by
the client. Why apart, and why this name: the client has its own ``TokenBucket``
(``aopay_async._limiter``, which waits for a token); this one refuses instead, and the two
were easy to confuse (issue 13).
"""

from __future__ import annotations

__all__ = ["QuotaBucket"]


class QuotaBucket:
    """``rate`` tokens a second, at most ``burst`` saved; starts full."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp: float | None = None

    def take(self, now: float) -> float:
        """Take a token: 0.0 when granted, else the seconds until one will be there."""
        if self._stamp is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
