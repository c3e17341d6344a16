# While the shared limiter's Redis cannot be reached, bulk rows wait here instead of
# failing: a row is a billable lookup the user asked for, and without Redis nobody knows
# how fast the rest of the fleet is sending, so the one safe pace is none at all. Before
# this, every row that asked during an outage failed with RateLimiterError once its retries
# were spent, and had to be redone with --retry-failed.
# It owns only the waiting: one caller at a time asks Redis again, once a second, the others
# queue behind it; the first answer lets them all through. It must never grant a token
# Redis did not (nothing is sent while Redis is down), never swallow anything but
# RateLimiterError (a key in use with other settings is InvalidRequestError and stops the
# run), and never read the client's internals: it reports each change to *on_change*
# (down: True with the failure's class name; back: False), which the progress line and the
# summary read. A row whose own deadline passes while it waits here fails with nothing sent;
# the bulk job sends such rows again (_job.py), so none is lost.
""":class:`HeldLimiter`: the shared limiter, waited for while its Redis is down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from aopay_async._errors import RateLimiterError
from aopay_async._limiter import RateLimiter

__all__ = ["RECHECK_SECONDS", "HeldLimiter"]

#: While Redis is down, how often (seconds) one waiting caller asks it again.
RECHECK_SECONDS: Final = 1.0


class HeldLimiter:
    """*inner* (a RedisLimiter without a fallback), whose outages are waited out."""

    def __init__(
        self,
        inner: RateLimiter,
        *,
        recheck: float = RECHECK_SECONDS,
        on_change: Callable[[bool, str], None] | None = None,
    ) -> None:
        self._inner = inner
        self._recheck = recheck
        self.on_change = on_change
        self._down = False
        self._outages = 0  # the number of the current (or last) outage
        self._next_probe = 0.0
        self._probe = asyncio.Lock()  # while down: one caller asks Redis, the others queue

    @property
    def down(self) -> bool:
        """True from a failed ask of Redis to the next answered one."""
        return self._down

    async def acquire(self) -> None:
        """Wait for a token from *inner*, however long its Redis stays down."""
        while True:
            if not self._down:
                if await self._ask():
                    return
                continue
            async with self._probe:
                if not self._down:
                    continue  # back while this caller queued: ask as usual
                delay = self._next_probe - asyncio.get_running_loop().time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if await self._ask():
                    return

    async def _ask(self) -> bool:
        """One ask of *inner*: True with a token, False (now down) when Redis failed."""
        # Only an ask begun during this outage proves Redis is back: one begun before it
        # (its slot reserved, its wait still being slept) may well end after Redis died.
        during = self._outages if self._down else -1
        try:
            await self._inner.acquire()
        except RateLimiterError as exc:
            self._next_probe = asyncio.get_running_loop().time() + self._recheck
            if not self._down:
                self._down = True
                self._outages += 1
                cause = exc.__cause__
                self._report(True, type(cause).__name__ if cause else "unexpected reply")
            return False
        if self._down and during == self._outages:
            self._down = False
            self._report(False, "")
        return True

    def _report(self, down: bool, reason: str) -> None:
        if self.on_change is not None:
            self.on_change(down, reason)

    def __repr__(self) -> str:
        return f"HeldLimiter({self._inner!r}, down={self._down})"
