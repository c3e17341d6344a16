"""RedisLimiter: one rate limit shared exactly by every process on every host (extra ``[redis]``).

This module owns the client side of the fleet-wide limiter: it runs the GCRA script of
``_gcra.py`` (whose pure mirror, :func:`gcra_reserve`, is tested as a table) once per
attempt, sleeps the wait it returns, and maps Redis's failures to RateLimiterError or the
fallback.

It must never:
- import redis at module level (``import aopay_async`` works without redis-py; a test
  proves ``redis`` stays out of ``sys.modules``);
- read a client clock for the limit: time is Redis's ``TIME``, read inside the script, so
  hosts whose clocks disagree still share one grid (clock skew is the known failure of
  limiters that send the client's time);
- reload the script on anything but an explicit ``NOSCRIPT`` reply: after a timeout the
  script may have run, and running it again reserves a second slot;
- hand a reserved slot back: the script reserves atomically; a caller cancelled while it
  sleeps simply wastes its slot (one start fewer, never one too many);
- put a credential in a key, a log line or an error (the default key is a hash of the
  company code, :meth:`RedisLimiter.default_key`), or the URL (it may hold a password).

Cost, measured by benchmarks/bench_fleet.py: one round trip (EVALSHA) per attempt, ~100 µs
of Redis time per call; see the README's "Fleet" section for the figures.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import InvalidRequestError, RateLimiterError
from ._gcra import GCRA_SCRIPT, MAX_RATE, SCRIPT_SHA, interval_us, redis_key
from ._limiter import RateLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = ["RedisLimiter"]

logger = logging.getLogger("aopay_async.redis")

#: The largest burst accepted (a bigger one is no limit at all for this API).
MAX_BURST = 100_000
#: How long the state outlives its last reservation, in ms (past that it equals "no state").
EXPIRY_MARGIN_MS = 1000
#: With a fallback in use, how often (seconds) a caller tries Redis again.
RECHECK_SECONDS = 1.0

_KEY_OK = re.compile(r"[!-~]{1,200}")  # printable ASCII, no space
_DEFAULT_KEY_DOMAIN = b"aopay_async rate limit key v1\x00"


class FallbackListener(Protocol):
    """Told when the fallback takes over (*active*) and when Redis is back (a client's
    :class:`~aopay_async._observe.Observer`, which makes it a ``fallback_limiter`` event)."""

    def fallback_limiter(self, active: bool, reason: str) -> None: ...


def _check_settings(key: object, rate: object, burst: object) -> None:
    if not isinstance(key, str) or not _KEY_OK.fullmatch(key) or "{" in key or "}" in key:
        raise InvalidRequestError(
            "key must be 1-200 printable ASCII characters without spaces or braces "
            "(RedisLimiter.default_key(company_code) derives one)"
        )
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise InvalidRequestError(f"rate must be a number, not {type(rate).__name__}")
    if not math.isfinite(rate) or rate <= 0 or rate > MAX_RATE:
        raise InvalidRequestError(
            f"rate must be above 0 and at most {MAX_RATE:g} per second, not {rate!r}"
        )
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise InvalidRequestError(f"burst must be an int, not {type(burst).__name__}")
    if not 1 <= burst <= MAX_BURST:
        raise InvalidRequestError(f"burst must be between 1 and {MAX_BURST}, not {burst!r}")


def _redis_module() -> Any:
    try:
        import redis.asyncio
        import redis.exceptions
    except ImportError as exc:
        raise ImportError("RedisLimiter needs redis-py: pip install 'aopay-async[redis]'") from exc
    return redis


class RedisLimiter:
    """A GCRA limiter whose state lives in Redis: one rate shared by every process using *key*.

    Every process on every host that uses the same *key* with the same *rate* and *burst*
    together starts at most ``burst + rate*T`` attempts in any T seconds (as seen at Redis;
    at the API within network jitter), and the long-run rate is *rate* (within the µs
    rounding, well under 1%).

    ``acquire()`` costs one round trip (EVALSHA): the script reads Redis ``TIME``, reserves
    the next slot atomically and returns the wait, which the caller sleeps. **Cancellation**:
    a caller cancelled while it waits for the reply or sleeps has reserved (or may have
    reserved) a slot; that slot is wasted, never given back and never reused, so
    cancellations can slow the fleet but never let it exceed the rate.

    Redis unreachable or failing: ``acquire()`` raises :class:`RateLimiterError` (nothing was
    sent; the client retries it within the deadline), unless *fallback* is a local limiter
    (e.g. ``TokenBucket(rate / processes, burst)``): then that one is used meanwhile, one
    WARNING on the ``aopay_async.redis`` logger per outage, Redis tried again at most once a
    second, and an INFO line when it is back; every client using this limiter also emits a
    ``fallback_limiter`` event (``state="fallback"``, then ``"primary"``) to its hooks,
    logging and OpenTelemetry. A key in use with other settings is an
    :class:`InvalidRequestError`, whatever the fallback.

    The state expires about a second after its last reservation; a Redis restart without
    persistence forgets it (one fresh burst at most).
    """

    __slots__ = (
        "_burst",
        "_down_since",
        "_errors",
        "_fallback",
        "_interval",
        "_key",
        "_listeners",
        "_next_try",
        "_owned",
        "_rate",
        "_redis",
        "_redis_key",
    )

    def __init__(
        self,
        redis_client: Redis | RedisCluster,
        *,
        key: str,
        rate: float,
        burst: int = 1,
        fallback: RateLimiter | None = None,
    ) -> None:
        module = _redis_module()
        _check_settings(key, rate, burst)
        if fallback is not None and not isinstance(fallback, RateLimiter):
            raise InvalidRequestError("fallback must have an async acquire() method")
        self._redis: Any = redis_client
        self._owned = False
        self._key = key
        self._redis_key = redis_key(key)
        self._rate = float(rate)
        self._burst = burst
        self._interval = interval_us(self._rate)
        self._fallback = fallback
        self._errors: tuple[type[BaseException], ...] = (module.exceptions.RedisError, OSError)
        self._down_since: float | None = None
        self._next_try = 0.0
        # The clients sharing this limiter hear its fallback through these (held weakly: a
        # client never closed must not live on here).
        self._listeners: weakref.WeakSet[FallbackListener] = weakref.WeakSet()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key: str,
        rate: float,
        burst: int = 1,
        fallback: RateLimiter | None = None,
        timeout: float = 1.0,
    ) -> RedisLimiter:
        """Connect lazily to the Redis at *url* (``redis://``, ``rediss://``, ``unix://``).

        The connection is the limiter's own, closed by :meth:`aclose`. *timeout* bounds each
        connect and each reply in seconds. redis-py's own retry is limited to one immediate
        reconnect after a connection error (a stale pooled connection after a Redis
        restart), never after a timeout.
        """
        module = _redis_module()
        _check_settings(key, rate, burst)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidRequestError(f"timeout must be a number above 0, not {timeout!r}")
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = module.asyncio.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(module.exceptions.ConnectionError,)),
        )
        limiter = cls(client, key=key, rate=rate, burst=burst, fallback=fallback)
        limiter._owned = True
        return limiter

    @staticmethod
    def default_key(company_code: str) -> str:
        """The key the command line uses when none is given: ``aopay:`` + a hash of the code.

        SHA-256 over a fixed prefix and the company code, first 20 hex digits: the same code
        gives the same key on every host, and the key never contains the code itself. (A
        company code is short: a key can confirm a guess of it, so give ``key=`` yourself
        where that matters.)
        """
        digest = hashlib.sha256(_DEFAULT_KEY_DOMAIN + company_code.encode()).hexdigest()
        return "aopay:" + digest[:20]

    @property
    def key(self) -> str:
        """The shared key (the Redis key is ``{key}:gcra``)."""
        return self._key

    @property
    def rate(self) -> float:
        """Attempts per second, fleet-wide."""
        return self._rate

    @property
    def burst(self) -> int:
        """The bucket's capacity, fleet-wide."""
        return self._burst

    async def acquire(self) -> None:
        """Wait until this caller's fleet-wide slot comes (see the class for failures)."""
        fallback = self._fallback
        if (
            fallback is not None
            and self._down_since is not None
            and asyncio.get_running_loop().time() < self._next_try
        ):
            await fallback.acquire()
            return
        try:
            wait, _ = await self._reserve()
        except RateLimiterError:
            if fallback is None:
                raise
            await fallback.acquire()
            return
        if wait > 0:
            await asyncio.sleep(wait / 1_000_000)

    async def _reserve(self) -> tuple[int, int]:
        """Run the script once: ``(wait_us, now_us)``, both on the Redis clock."""
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            reply = await self._run_script()
        except self._errors as exc:
            self._failed(type(exc).__name__)
            raise RateLimiterError(
                f"the shared rate limiter's Redis failed ({type(exc).__name__}); nothing was sent"
            ) from exc
        if task is not None and task.cancelling() > cancels:
            # A cancellation arrived during the round trip and was swallowed: on Python 3.11
            # redis-py's send runs in asyncio.wait_for, which drops a cancel that lands as
            # its inner send completes (fixed in 3.12). Deliver it; the slot is wasted.
            raise asyncio.CancelledError
        if (
            not isinstance(reply, list)
            or len(reply) != 3
            or not all(isinstance(v, int) for v in reply)
        ):
            self._failed("unexpected reply")
            raise RateLimiterError(
                "the shared rate limiter's Redis gave an unexpected reply; nothing was sent"
            )
        if reply[0] == 1:
            raise self._mismatch(reply[1], reply[2])
        if self._down_since is not None:
            loop = asyncio.get_running_loop()
            logger.info(
                "the shared rate limiter's Redis is back after %.1fs",
                loop.time() - self._down_since,
            )
            self._down_since = None
            if self._fallback is not None:
                self._tell(False, "recovered")
        return reply[1], reply[2]

    async def check(self) -> None:
        """Fail now if the key is live with other settings; reserves nothing (one HMGET).

        For a program's start (the command line calls it), so a mismatch is one clear error
        rather than every call failing. Raises :class:`InvalidRequestError` on a mismatch and
        :class:`RateLimiterError` when Redis cannot be asked.
        """
        try:
            interval, burst = await self._redis.hmget(self._redis_key, "interval", "burst")
        except self._errors as exc:
            raise RateLimiterError(
                f"the shared rate limiter's Redis failed ({type(exc).__name__})"
            ) from exc
        if interval is None or burst is None:
            return
        try:
            theirs = (int(interval), int(burst))
        except ValueError:
            raise RateLimiterError(
                "the shared rate limiter's key holds something else; use another key"
            ) from None
        if theirs != (self._interval, self._burst):
            raise self._mismatch(*theirs)

    def _mismatch(self, interval: int, burst: int) -> InvalidRequestError:
        return InvalidRequestError(
            f"the rate limit key {self._key!r} is in use with rate={1_000_000 / interval:g}/s "
            f"burst={burst} by another process, and this limiter has rate={self._rate:g}/s "
            f"burst={self._burst}: give every process the same settings, or use another key"
        )

    async def _run_script(self) -> Any:
        args = (self._redis_key, self._interval, self._burst, EXPIRY_MARGIN_MS)
        try:
            return await self._redis.evalsha(SCRIPT_SHA, 1, *args)
        except self._errors[0] as exc:
            if not _is_noscript(exc):
                raise
        # The script cache was emptied (SCRIPT FLUSH, a restart, a failover): EVAL sends the
        # script, runs it and caches it again, still one round trip.
        return await self._redis.eval(GCRA_SCRIPT, 1, *args)

    def _failed(self, what: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._next_try = now + RECHECK_SECONDS
        if self._down_since is not None:
            return
        self._down_since = now
        if self._fallback is not None:
            then = f"using the fallback limiter {self._fallback!r} until it is back"
        else:
            then = "calls fail with RateLimiterError until it is back"
        logger.warning("the shared rate limiter's Redis failed (%s); %s", what, then)
        if self._fallback is not None:
            self._tell(True, what)

    # The emit point: the fallback's takeover and give-back, to every client sharing this
    # limiter (their observers register through Observer.follow, and leave on aclose).

    def _add_fallback_listener(self, listener: FallbackListener) -> None:
        self._listeners.add(listener)

    def _discard_fallback_listener(self, listener: FallbackListener) -> None:
        self._listeners.discard(listener)

    def _tell(self, active: bool, reason: str) -> None:
        for listener in tuple(self._listeners):
            try:
                listener.fallback_limiter(active, reason)
            except Exception:  # a listener's failure must not fail the caller's acquire
                logger.warning("a fallback listener raised; the limiter goes on", exc_info=True)

    async def aclose(self) -> None:
        """Close the connection if :meth:`from_url` opened it; a caller's client stays open."""
        if self._owned:
            self._owned = False
            await self._redis.aclose()

    async def __aenter__(self) -> RedisLimiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"RedisLimiter(key={self._key!r}, rate={self._rate:g}, burst={self._burst})"


def _is_noscript(exc: BaseException) -> bool:
    # redis-py raises NoScriptError for a NOSCRIPT reply; a cluster or proxy may pass the
    # plain ResponseError through, so the reply's text is checked too.
    name = type(exc).__name__
    return name == "NoScriptError" or str(exc).startswith("NOSCRIPT")
