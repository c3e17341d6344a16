# The flags several commands share (the client's knobs, the run flags, --loop), the one
# place a client is built from parsed flags, and the event loop the CLI runs in. It must
# never change the global event-loop policy: embedding the library must not switch anyone's
# loop; only this process's own loop is uvloop (a Runner with a loop factory).
# The fleet flags (--redis-url, --limit-key) build the one shared limiter here too; the
# limiter's key is never the company code itself (RedisLimiter.default_key hashes it).
"""Shared flags, :func:`make_client`, :func:`make_limiter`, and :func:`run_in_loop`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from aopay_async._errors import InvalidRequestError

from ._argtypes import count, limit_key, log_level, metrics_address, number, shard
from ._status import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from opentelemetry.metrics import MeterProvider

    from aopay_async._client import AOPayClient
    from aopay_async._observe import EventHook
    from aopay_async._redis import RedisLimiter

    from ._gate import StopGate


#: The flag that stands for the client's ``allow_insecure_http=True``.
INSECURE_FLAG: Final = "--allow-insecure-http"


__all__ = [
    "ENV_REDIS_URL",
    "add_client_flags",
    "add_fleet_flags",
    "add_loop_flag",
    "add_run_flags",
    "check_limiter",
    "make_client",
    "make_limiter",
    "run_in_loop",
]

#: The environment variable --redis-url defaults to.
ENV_REDIS_URL: Final = "AOPAY_REDIS_URL"


def add_client_flags(parser: argparse.ArgumentParser, *, rate: float | None = 10.0) -> None:
    """--base-url, --rate, --burst, --concurrency, --max-retries, --timeout, --deadline."""
    group = parser.add_argument_group(
        "client",
        "Credentials come from the environment: AOPAY_COMPANY_CODE, AOPAY_REGISTRATION_ID "
        "(and AOPAY_BASE_URL unless --base-url is given).",
    )
    group.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="the API's base URL (default: $AOPAY_BASE_URL, else https://api.aopay.co.in)",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow a plain http:// base URL to a non-loopback host (sends the company code "
        "unencrypted; for a test gateway only)",
    )
    group.add_argument(
        "--rate",
        type=number(1e-6, allow_none=True),
        default=rate,
        metavar="R",
        help=f"attempts a second, retries included; 'none' for no limit (default {rate})",
    )
    group.add_argument(
        "--burst", type=count(1), default=1, metavar="B", help="rate-limit burst (default 1)"
    )
    group.add_argument(
        "--concurrency",
        type=count(1),
        default=32,
        metavar="N",
        help="rows (and connections) in flight at once (default 32)",
    )
    group.add_argument(
        "--max-retries",
        type=count(0),
        default=3,
        metavar="N",
        help="retries after a row's first attempt (default 3)",
    )
    group.add_argument(
        "--timeout",
        type=number(1e-3),
        default=30.0,
        metavar="S",
        help="seconds for one attempt (default 30)",
    )
    group.add_argument(
        "--adaptive",
        action="store_true",
        help="treat --rate as a ceiling: slow down on 429s, climb back CUBIC-style",
    )
    group.add_argument(
        "--deadline",
        type=number(1e-3, allow_none=True),
        default=120.0,
        metavar="S",
        help="seconds for one row, all attempts and waits; 'none' for no deadline (default 120)",
    )
    group.add_argument(
        "--log-level",
        type=log_level,
        default=None,
        metavar="LEVEL",
        help="show the library's log lines from LEVEL up on stderr: debug (one per attempt), "
        "info (retries, 429s), warning (default: none; never customer data)",
    )


def add_fleet_flags(parser: argparse.ArgumentParser, *, with_shard: bool) -> None:
    """--redis-url, --limit-key, and (for bulk) --shard K/N."""
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
    group.add_argument(
        "--limit-key",
        type=limit_key,
        default=None,
        metavar="KEY",
        help="the shared limit's key (default: 'aopay:' + a hash of the company code, the "
        "same on every host)",
    )
    if with_shard:
        group.add_argument(
            "--shard",
            type=shard,
            default=None,
            metavar="K/N",
            help="take only the rows whose 0-based row number modulo N is K (e.g. "
            "$JOB_COMPLETION_INDEX/4); give each shard its own OUTPUT",
        )


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """--quiet, --progress-interval, --grace, --metrics-port: the flags of a bulk job."""
    parser.add_argument(
        "--metrics-port",
        type=metrics_address,
        default=None,
        metavar="[HOST:]PORT",
        help="serve Prometheus metrics (the client's OpenTelemetry instruments) at "
        "http://HOST:PORT/metrics while the run lasts; HOST defaults to 127.0.0.1 "
        "(needs: pip install 'aopay-async[prometheus]')",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument(
        "--progress-interval",
        type=number(0.1),
        default=5.0,
        metavar="S",
        help="seconds between progress lines when stderr is not a terminal (default 5)",
    )
    parser.add_argument(
        "--grace",
        type=number(0.0),
        default=5.0,
        metavar="S",
        help="after Ctrl-C, seconds to let rows in flight finish before cancelling (default 5)",
    )


def add_loop_flag(parser: argparse.ArgumentParser) -> None:
    """--loop auto|asyncio|uvloop."""
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when installed (auto, the default), or force one",
    )


def make_client(
    args: argparse.Namespace,
    *,
    base_url: str | None = None,
    company_code: str | None = None,
    registration_id: str | None = None,
    gate: StopGate | None = None,
    limiter: RedisLimiter | None = None,
    event_hooks: Iterable[EventHook] = (),
    meter_provider: MeterProvider | None = None,
) -> AOPayClient:
    """A client from the client flags; *base_url* (if given) stands in for ``--base-url``.

    With *limiter* (from :func:`make_limiter`) the client takes its tokens from it instead
    of a bucket of its own. With *gate*, the rate limit is put behind it (so Ctrl-C can
    stop sending at once). *event_hooks* and *meter_provider* go to the client as given;
    ``--log-level`` shows the library's log lines on stderr.
    """
    level = getattr(args, "log_level", None)
    if level is not None:
        from aopay_async._observe import log_to_stderr

        log_to_stderr(level)
    from aopay_async._client import AOPayClient
    from aopay_async._limiter import RateLimiter, TokenBucket

    own: RateLimiter | None = limiter
    if gate is not None:
        if own is None and args.rate is not None:
            own = TokenBucket(args.rate, args.burst)
        own = gate.wrap(own)
    try:
        return AOPayClient(
            company_code,
            registration_id,
            base_url=base_url if base_url is not None else args.base_url,
            rate_limit=args.rate,
            burst=args.burst,
            max_concurrency=args.concurrency,
            max_retries=args.max_retries,
            timeout=args.timeout,
            deadline=args.deadline,
            limiter=own,
            event_hooks=event_hooks,
            meter_provider=meter_provider,
            allow_insecure_http=args.allow_insecure_http,
            adaptive=args.adaptive,
        )
    except InvalidRequestError as exc:
        # The library's hint names its keyword argument; a CLI user needs the flag.
        if "allow_insecure_http" in exc.message:
            exc.message = exc.message.replace("allow_insecure_http=True", INSECURE_FLAG)
            if INSECURE_FLAG not in exc.message:
                exc.message += f" (on the command line: {INSECURE_FLAG})"
        raise


def make_limiter(args: argparse.Namespace) -> RedisLimiter | None:
    """The shared limiter --redis-url (or ``$AOPAY_REDIS_URL``) asks for, or None.

    Its rate and burst are --rate and --burst, fleet-wide; its key is --limit-key, else
    :meth:`RedisLimiter.default_key` of the company code. The caller closes it, and calls
    :func:`check_limiter` before the first row.
    """
    url = args.redis_url if args.redis_url is not None else os.environ.get(ENV_REDIS_URL)
    if not url:
        return None
    if args.rate is None:
        raise UsageError("--redis-url shares a rate limit: give a --rate (not 'none')")
    from aopay_async._errors import InvalidRequestError
    from aopay_async._redis import RedisLimiter

    key = args.limit_key
    if key is None:
        from aopay_async._client import ENV_COMPANY_CODE, _credential

        key = RedisLimiter.default_key(_credential("company_code", None, ENV_COMPANY_CODE))
    try:
        return RedisLimiter.from_url(url, key=key, rate=args.rate, burst=args.burst)
    except ImportError as exc:  # redis-py is missing: the message names the extra
        raise UsageError(str(exc)) from None
    except InvalidRequestError:
        raise
    except ValueError:  # a URL redis-py cannot read (not echoed: it may hold a password)
        raise UsageError(
            "--redis-url is not a Redis URL (redis://HOST:PORT/DB, rediss://, unix://)"
        ) from None


async def check_limiter(limiter: RedisLimiter | None) -> None:
    """Stop at once (InvalidRequestError: exit 2) if the key is live with other settings.

    A Redis that cannot be reached yet is no reason to stop: it may be starting alongside
    this run (a Kubernetes Job and its Redis); each attempt asks it again.
    """
    if limiter is None:
        return
    from aopay_async._errors import RateLimiterError

    with contextlib.suppress(RateLimiterError):
        await limiter.check()


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for or (``auto``) installed; else asyncio's default."""
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise UsageError(
                "--loop uvloop: uvloop is not installed (pip install 'aopay-async[speed]')"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_in_loop(coro: Coroutine[Any, Any, int], loop: str) -> int:
    """Run *coro* to its end in a loop of the kind ``--loop`` names."""
    try:
        factory = loop_factory(loop)
    except UsageError:
        coro.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
