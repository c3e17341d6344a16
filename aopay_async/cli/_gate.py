# The CLI's own rate limiter: the client's limiter (a token bucket, or none) behind a gate
# the first Ctrl-C closes. Every attempt waits here for its token just before it is sent,
# so once the gate is closed no further request goes on the wire: rows still waiting for a
# token (or for a connection slot, which comes before the token) wait forever and are
# cancelled unsent, and --resume picks them up. Each of them is a billable bureau lookup:
# before the gate, one Ctrl-C at 10/s with 32 rows in flight still sent 32 more.
# It must never grant a token after close() and never let an attempt past the inner limiter
# early. (The summary's "limiter" line times the waits from the client's limiter_waited
# events, not here.)
""":class:`StopGate`: a rate limiter that stops granting at the first Ctrl-C."""

from __future__ import annotations

import asyncio

from aopay_async._limiter import RateLimiter

__all__ = ["StopGate"]


class StopGate:
    """The client's limiter (see :meth:`wrap`) behind a gate; after :meth:`close` none passes.

    ``waiting`` counts callers inside :meth:`acquire` (for a token, or at the closed gate):
    once the gate is closed none of them will be sent, so when it equals the rows in flight
    nothing is on the wire and the job can be cancelled at once.
    """

    def __init__(self) -> None:
        self._inner: RateLimiter | None = None
        self._closed = asyncio.Event()
        self._never = asyncio.Event()
        self.waiting = 0

    def wrap(self, inner: RateLimiter | None) -> StopGate:
        """Put *inner* (the rate limit proper, or None for no limit) behind the gate."""
        self._inner = inner
        return self

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Grant no more tokens: every caller from now on waits until it is cancelled."""
        self._closed.set()

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            if not self.closed and self._inner is not None:
                await self._inner.acquire()
            if self.closed:
                await self._never.wait()  # until cancelled: this attempt is never sent
        finally:
            self.waiting -= 1

    # A shared limiter's fallback reaches the client's event hooks through the client's
    # limiter (Observer.follow): the gate passes the listener on to the limiter behind it.

    def _add_fallback_listener(self, listener: object) -> None:
        add = getattr(self._inner, "_add_fallback_listener", None)
        if add is not None:
            add(listener)

    def _discard_fallback_listener(self, listener: object) -> None:
        discard = getattr(self._inner, "_discard_fallback_listener", None)
        if discard is not None:
            discard(listener)

    def __repr__(self) -> str:
        return f"StopGate({self._inner!r}, closed={self.closed})"
