# The flags several commands share (the client's knobs, the run flags, --loop), the one
# place a client is built from parsed flags, and the event loop the CLI runs in. It must
# never change the global event-loop policy: embedding the library must not switch anyone's
# loop; only this process's own loop is uvloop (a Runner with a loop factory).
"""Shared flags, :func:`make_client`, and :func:`run_in_loop`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from aopay_async._errors import InvalidRequestError

from ._argtypes import count, number
from ._status import UsageError

if TYPE_CHECKING:
    import aiohttp

    from aopay_async._client import AOPayClient

    from ._gate import StopGate


#: The flag that stands for the client's ``allow_insecure_http=True``.
INSECURE_FLAG: Final = "--allow-insecure-http"

__all__ = ["add_client_flags", "add_loop_flag", "add_run_flags", "make_client", "run_in_loop"]


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
        "--deadline",
        type=number(1e-3, allow_none=True),
        default=120.0,
        metavar="S",
        help="seconds for one row, all attempts and waits; 'none' for no deadline (default 120)",
    )


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """--quiet, --progress-interval, --grace: the flags of a command that runs a bulk job."""
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
    session: aiohttp.ClientSession | None = None,
    gate: StopGate | None = None,
) -> AOPayClient:
    """A client from the client flags; *base_url* (if given) stands in for ``--base-url``.

    With *gate*, the rate limit is put behind it (so Ctrl-C can stop sending at once).
    """
    from aopay_async._client import AOPayClient
    from aopay_async._limiter import TokenBucket

    limiter = None
    if gate is not None:
        limiter = gate.wrap(None if args.rate is None else TokenBucket(args.rate, args.burst))
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
            session=session,
            limiter=limiter,
            allow_insecure_http=args.allow_insecure_http,
        )
    except InvalidRequestError as exc:
        # The library's hint names its keyword argument; a CLI user needs the flag.
        if "allow_insecure_http" in exc.message:
            exc.message = exc.message.replace("allow_insecure_http=True", INSECURE_FLAG)
            if INSECURE_FLAG not in exc.message:
                exc.message += f" (on the command line: {INSECURE_FLAG})"
        raise


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
