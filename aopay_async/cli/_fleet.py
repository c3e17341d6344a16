# The fleet flags (--redis-url, --limit-key, --redis-fallback, --shard) and the one shared
# limiter they build. The limiter's key is never the company code itself
# (RedisLimiter.default_key hashes it), and the URL is never echoed (it may hold a password).
# What a run does while Redis cannot be reached is decided here, and the default must never
# send faster than --rate fleet-wide: without --redis-fallback, bulk rows wait for Redis
# (_hold.py) and none fails for it; with --redis-fallback N each process goes on alone at
# --rate/N, which keeps the fleet at or under --rate only while N is at least the number of
# processes and every one of them has lost Redis (a process that still reaches Redis keeps
# its share of the shared grid, so a partial outage can reach (1 + k/N) x --rate with k
# processes cut off: at most just under twice the rate, the API's 429s then slow the rest).
"""The fleet flags, :func:`make_limiter`, :func:`check_limiter`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from aopay_async._errors import InvalidRequestError, RateLimiterError
from aopay_async._events import Event, EventHook, EventKind

from ._argtypes import count, limit_key, shard
from ._options import Knob, add_knobs
from ._status import UsageError

if TYPE_CHECKING:
    from aopay_async._redis import RedisLimiter

__all__ = [
    "ENV_REDIS_URL",
    "add_fleet_flags",
    "check_limiter",
    "fallback_announcer",
    "fallback_settings",
    "make_limiter",
]

#: The environment variable --redis-url defaults to.
ENV_REDIS_URL: Final = "AOPAY_REDIS_URL"


def add_fleet_flags(parser: argparse.ArgumentParser, *, with_shard: bool) -> None:
    """--redis-url, --limit-key, --redis-fallback, and (for bulk) --shard K/N."""
    group = parser.add_argument_group(
        "fleet",
        "Share one rate limit (--rate, --burst) with every process using the same Redis and "
        "key; split one INPUT over several runs with --shard.",
    )
    group.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help=f"Redis holding the shared rate limit, e.g. redis://redis:6379/0 "
        f"(default: ${ENV_REDIS_URL}; none: this process's own limit)",
    )
    add_knobs(
        group,
        Knob(
            "--limit-key",
            limit_key,
            None,
            "KEY",
            "the shared limit's key (default: 'aopay:' + a hash of the company code, the "
            "same on every host)",
        ),
        Knob(
            "--redis-fallback",
            count(1),
            None,
            "N",
            "while Redis cannot be reached, go on alone at --rate/N (burst --burst/N, at "
            "least 1), N being how many processes share the limit (e.g. the N of --shard "
            "K/N); without it, bulk rows wait for Redis (none is sent, none fails) and get "
            "fails",
        ),
    )
    if with_shard:
        add_knobs(
            group,
            Knob(
                "--shard",
                shard,
                None,
                "K/N",
                "take only the rows whose 0-based row number modulo N is K (e.g. "
                "$JOB_COMPLETION_INDEX/4); give each shard its own OUTPUT",
            ),
        )


def fallback_announcer(say: Callable[[str], None], rate: float, processes: int) -> EventHook:
    """An event hook saying when --redis-fallback takes over (the client's
    ``fallback_limiter`` events) and when the shared limit is back."""

    def announce(event: Event) -> None:
        if event.kind is not EventKind.FALLBACK_LIMITER:
            return
        if event.state == "fallback":
            say(
                f"rate limiter unavailable (Redis: {event.reason}): going on alone at "
                f"{rate / processes:g}/s (--redis-fallback {processes}) until it is back"
            )
        else:
            say("rate limiter back: the shared limit again")

    return announce


def fallback_settings(rate: float, burst: int, processes: int) -> tuple[float, int]:
    """The fallback bucket of one of *processes*: ``(rate / processes, burst // processes)``,
    the burst at least 1 (a pure decision)."""
    return rate / processes, max(1, burst // processes)


def make_limiter(args: argparse.Namespace) -> RedisLimiter | None:
    """The shared limiter --redis-url (or ``$AOPAY_REDIS_URL``) asks for, or None.

    Its rate and burst are --rate and --burst, fleet-wide; its key is --limit-key, else
    :meth:`RedisLimiter.default_key` of the company code; with --redis-fallback N, a
    :class:`TokenBucket` of :func:`fallback_settings` stands in while Redis is down. The
    caller closes it, and calls :func:`check_limiter` before the first row.
    """
    url = args.redis_url if args.redis_url is not None else os.environ.get(ENV_REDIS_URL)
    fallback_n: int | None = getattr(args, "redis_fallback", None)
    if not url:
        if fallback_n is not None:
            raise UsageError(
                f"--redis-fallback is for a shared limit: give --redis-url (or ${ENV_REDIS_URL})"
            )
        return None
    if args.rate is None:
        raise UsageError("--redis-url shares a rate limit: give a --rate (not 'none')")
    from aopay_async._limiter import TokenBucket
    from aopay_async._redis import RedisLimiter

    key = args.limit_key
    if key is None:
        from aopay_async._client import ENV_COMPANY_CODE, _credential

        key = RedisLimiter.default_key(_credential("company_code", None, ENV_COMPANY_CODE))
    fallback = None
    if fallback_n is not None:
        fallback = TokenBucket(*fallback_settings(args.rate, args.burst, fallback_n))
    try:
        return RedisLimiter.from_url(
            url, key=key, rate=args.rate, burst=args.burst, fallback=fallback
        )
    except ImportError as exc:  # redis-py is missing: the message names the extra
        raise UsageError(str(exc)) from None
    except InvalidRequestError:
        raise
    except ValueError:  # a URL redis-py cannot read (not echoed: it may hold a password)
        raise UsageError(
            "--redis-url is not a Redis URL (redis://HOST:PORT/DB, rediss://, unix://)"
        ) from None


async def check_limiter(limiter: RedisLimiter | None) -> bool:
    """Stop at once (InvalidRequestError: exit 2) if the key is live with other settings.

    A key holding something else than a limit's state is a UsageError (exit 2): waiting
    would never end. A Redis that cannot be reached yet is no reason to stop: it may be
    starting alongside this run (a Kubernetes Job and its Redis). Returns False then (True
    when it answered, or with no limiter); the caller decides whether rows wait for it.
    """
    if limiter is None:
        return True
    try:
        await limiter.check()
    except RateLimiterError as exc:
        if exc.__cause__ is None:  # Redis answered, with a key that is not a limit's state
            raise UsageError(f"--limit-key: {exc}") from None
        return False
    return True
