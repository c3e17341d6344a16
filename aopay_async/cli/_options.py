# The flags several commands share (the client's knobs, the run flags, --loop), the one
# place a client is built from parsed flags, and the event loop the CLI runs in. It must
# never change the global event-loop policy: embedding the library must not switch anyone's
# loop; only this process's own loop is uvloop (a Runner with a loop factory).
# Value flags are declared as Knob rows (flag, type, default, metavar, help) added by one
# loop, in small groups, so a new knob is one row and the --help text stays where it was.
# The fleet flags and the shared limiter live in _fleet.py.
"""Shared flags, :class:`Knob`, :func:`make_client`, and :func:`run_in_loop`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from aopay_async._errors import InvalidRequestError

from ._argtypes import count, log_level, metrics_address, number
from ._status import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from opentelemetry.metrics import MeterProvider

    from aopay_async._client import AOPayClient
    from aopay_async._events import EventHook
    from aopay_async._limiter import RateLimiter

    from ._gate import StopGate


#: The flag that stands for the client's ``allow_insecure_http=True``.
INSECURE_FLAG: Final = "--allow-insecure-http"


__all__ = [
    "INSECURE_FLAG",
    "Knob",
    "add_client_flags",
    "add_knobs",
    "add_loop_flag",
    "add_run_flags",
    "make_client",
    "run_in_loop",
]


class _Group(Protocol):
    """A parser or an argument group: what flags are added to."""

    def add_argument(self, *name_or_flags: str, **kwargs: Any) -> Any: ...


class Knob(NamedTuple):
    """One value flag: its name, ``type=``, default, metavar and help, as argparse takes them."""

    flag: str
    kind: Callable[[str], Any]
    default: object
    metavar: str
    help: str


def add_knobs(group: _Group, *knobs: Knob) -> None:
    """Add each of *knobs* to *group* (a parser or an argument group), in order."""
    for knob in knobs:
        group.add_argument(
            knob.flag, type=knob.kind, default=knob.default, metavar=knob.metavar, help=knob.help
        )


def add_client_flags(parser: argparse.ArgumentParser, *, rate: float | None = 10.0) -> None:
    """The "client" group: where to send, how fast, how patiently, and the library's logs."""
    group = parser.add_argument_group(
        "client",
        "Credentials come from the environment: AOPAY_COMPANY_CODE, AOPAY_REGISTRATION_ID "
        "(and AOPAY_BASE_URL unless --base-url is given).",
    )
    _add_endpoint_flags(group)
    _add_pace_flags(group, rate)
    _add_patience_flags(group)
    add_knobs(group, _LOG_LEVEL)


def _add_endpoint_flags(group: _Group) -> None:
    """--base-url, --allow-insecure-http."""
    group.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="the API's base URL (default: $AOPAY_BASE_URL, else https://api.aopay.co.in)",
    )
    group.add_argument(
        INSECURE_FLAG,
        action="store_true",
        help="allow a plain http:// base URL to a non-loopback host (sends the company code "
        "unencrypted; for a test gateway only)",
    )


def _add_pace_flags(group: _Group, rate: float | None) -> None:
    """--rate (its default is the command's), --burst, --concurrency."""
    add_knobs(
        group,
        Knob(
            "--rate",
            number(1e-6, allow_none=True),
            rate,
            "R",
            f"attempts a second, retries included; 'none' for no limit (default {rate})",
        ),
        Knob("--burst", count(1), 1, "B", "rate-limit burst (default 1)"),
        Knob(
            "--concurrency",
            count(1),
            32,
            "N",
            "rows (and connections) in flight at once (default 32)",
        ),
    )


def _add_patience_flags(group: _Group) -> None:
    """--max-retries, --timeout, --adaptive, --deadline: how long a row may try."""
    add_knobs(
        group,
        Knob("--max-retries", count(0), 3, "N", "retries after a row's first attempt (default 3)"),
        Knob("--timeout", number(1e-3), 30.0, "S", "seconds for one attempt (default %(default)g)"),
    )
    group.add_argument(
        "--adaptive",
        action="store_true",
        help="treat --rate as a ceiling: slow down on 429s, climb back CUBIC-style",
    )
    add_knobs(
        group,
        Knob(
            "--deadline",
            number(1e-3, allow_none=True),
            120.0,
            "S",
            "seconds for one row, all attempts and waits; 'none' for no deadline "
            "(default %(default)g)",
        ),
    )


_LOG_LEVEL: Final = Knob(
    "--log-level",
    log_level,
    None,
    "LEVEL",
    "show the library's log lines from LEVEL up on stderr: debug (one per attempt), "
    "info (retries, 429s), warning (default: none; never customer data)",
)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """--metrics-port, --quiet, --progress-interval, --grace: the flags of a bulk job."""
    add_knobs(
        parser,
        Knob(
            "--metrics-port",
            metrics_address,
            None,
            "[HOST:]PORT",
            "serve Prometheus metrics (the client's OpenTelemetry instruments) at "
            "http://HOST:PORT/metrics while the run lasts; HOST defaults to 127.0.0.1 "
            "(needs: pip install 'aopay-async[prometheus]')",
        ),
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    add_knobs(
        parser,
        Knob(
            "--progress-interval",
            number(0.1),
            5.0,
            "S",
            "seconds between progress lines when stderr is not a terminal (default 5)",
        ),
        Knob(
            "--grace",
            number(0.0),
            5.0,
            "S",
            "after Ctrl-C, seconds to let rows in flight finish before cancelling (default 5)",
        ),
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
    limiter: RateLimiter | None = None,
    event_hooks: Iterable[EventHook] = (),
    meter_provider: MeterProvider | None = None,
) -> AOPayClient:
    """A client from the client flags; *base_url* (if given) stands in for ``--base-url``.

    With *limiter* (the fleet's, from ``_fleet.make_limiter``) the client takes its tokens
    from it instead of a bucket of its own. With *gate*, the rate limit is put behind it
    (so Ctrl-C can stop sending at once). *event_hooks* and *meter_provider* go to the
    client as given; ``--log-level`` shows the library's log lines on stderr.
    """
    level = getattr(args, "log_level", None)
    if level is not None:
        from aopay_async._events import log_to_stderr

        log_to_stderr(level)
    from aopay_async._client import AOPayClient
    from aopay_async._limiter import TokenBucket

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
