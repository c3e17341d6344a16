"""The command-line face of the sandbox: ``aopay-async sandbox``.

This module owns the flags for every sandbox knob (:func:`add_arguments`) and the loop
that runs the server until it is stopped (:func:`serve`). The CLI module wires both into
its ``sandbox`` subcommand; ``python -m aopay_async.testing._serve`` runs them alone.
It must never bind anything but what ``--host`` says (127.0.0.1 by default) and never
swallow a bad flag: a bad value is a usage error (exit status 2) that says what is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Sequence

from ._faults import FAULTS, REPEAT
from ._sandbox import DEFAULT_COMPANY_CODE, DEFAULT_REGISTRATION_ID, SandboxServer

__all__ = ["add_arguments", "main", "serve"]


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0.0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not in 0-65535")
    return value


def _latency(text: str) -> float | tuple[float, float]:
    """``SECONDS`` or ``LOW:HIGH`` (uniform between the two)."""
    if ":" not in text:
        return _non_negative(text)
    low_text, _, high_text = text.partition(":")
    low, high = _non_negative(low_text), _non_negative(high_text)
    if low > high:
        raise argparse.ArgumentTypeError(f"in {text!r} LOW must not exceed HIGH")
    return low, high


def _fault(text: str) -> tuple[str, float]:
    name, sep, fraction = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FRACTION, e.g. 503=0.02")
    if name not in FAULTS:
        raise argparse.ArgumentTypeError(
            f"unknown fault {name!r}; known faults: {', '.join(sorted(FAULTS))}"
        )
    value = _non_negative(fraction)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"the fraction in {text!r} must be at most 1")
    return name, value


def _script(text: str) -> tuple[str, list[str]]:
    cibil_id, sep, steps = text.partition("=")
    if not sep or not cibil_id or not steps:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not CIBIL_ID=OUTCOME[,OUTCOME...][,*], e.g. FAILTWICE01=503,503"
        )
    return cibil_id, [step.strip() for step in steps.split(",")]


def _outage(text: str) -> tuple[float, float, str]:
    start, sep, rest = text.partition(":")
    seconds, _, fault = rest.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not START:SECONDS[:FAULT], e.g. 30:10 or 30:10:reset"
        )
    fault = fault or "503"
    if fault not in FAULTS:
        raise argparse.ArgumentTypeError(
            f"unknown fault {fault!r}; known faults: {', '.join(sorted(FAULTS))}"
        )
    return _non_negative(start), _non_negative(seconds), fault


# argparse's group type is private (argparse._ArgumentGroup); the helpers take what they use.
_Group = argparse._ActionsContainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every sandbox knob to *parser* (one group; ``--help`` lists them in order)."""
    group = parser.add_argument_group("sandbox server")
    _add_address_flags(group)
    _add_rate_flags(group)
    _add_fault_flags(group)
    _add_data_flags(group)


def _add_address_flags(group: _Group) -> None:
    """Where the server listens and which credentials it accepts."""
    group.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    group.add_argument(
        "--port", type=_port, default=0, help="port to bind (default 0: any free port)"
    )
    group.add_argument(
        "--company-code",
        default=DEFAULT_COMPANY_CODE,
        help=f"the CompanyCode to accept (default {DEFAULT_COMPANY_CODE})",
    )
    group.add_argument(
        "--registration-id",
        default=DEFAULT_REGISTRATION_ID,
        help=f"the RegistrationID to accept (default {DEFAULT_REGISTRATION_ID})",
    )


def _add_rate_flags(group: _Group) -> None:
    """The server-side token bucket and its 429s."""
    group.add_argument(
        "--rate",
        type=_positive,
        default=None,
        metavar="R",
        help="server-side rate limit in requests a second; over it: 429 (default: none)",
    )
    group.add_argument(
        "--burst", type=int, default=1, metavar="B", help="token-bucket capacity (default 1)"
    )
    group.add_argument(
        "--retry-after",
        type=_non_negative,
        default=None,
        metavar="SECONDS",
        help="Retry-After sent with every 429 (default: seconds until the next token, >= 1)",
    )


def _add_fault_flags(group: _Group) -> None:
    """What goes wrong, how often, and how slowly."""
    group.add_argument(
        "--latency",
        type=_latency,
        default=0.0,
        metavar="SECONDS|LOW:HIGH",
        help="delay before each answer, fixed or uniform between LOW and HIGH (default 0)",
    )
    group.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="NAME=FRACTION",
        help=(
            "inject a fault into that fraction of requests (repeatable); "
            f"NAME is one of {', '.join(sorted(FAULTS))}"
        ),
    )
    group.add_argument(
        "--script",
        type=_script,
        action="append",
        default=[],
        metavar="CIBIL_ID=OUTCOME[,...]",
        help=(
            "scripted outcomes for one cibil_id's successive requests (repeatable); "
            f"a final {REPEAT!r} repeats the last one forever, e.g. BADAUTH01=401,{REPEAT}"
        ),
    )
    group.add_argument(
        "--outage",
        type=_outage,
        action="append",
        default=[],
        metavar="START:SECONDS[:FAULT]",
        help=(
            "from START seconds after starting, answer every request with FAULT (default "
            "503; 'reset' for a dead host) for SECONDS (repeatable)"
        ),
    )
    group.add_argument(
        "--slow-seconds",
        type=_non_negative,
        default=1.0,
        metavar="SECONDS",
        help="how long a 'slow' body takes to drip (default 1)",
    )


def _add_data_flags(group: _Group) -> None:
    """The generated customers, the random seed and how long to run."""
    group.add_argument(
        "--accounts",
        type=int,
        default=None,
        metavar="N",
        help="give every customer exactly N accounts, 0-1000 (default: 0-40 per customer)",
    )
    group.add_argument(
        "--seed", type=int, default=0, help="seed for faults, latency and ids (default 0)"
    )
    group.add_argument(
        "--duration",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: run until Ctrl-C)",
    )


def _make_server(args: argparse.Namespace) -> SandboxServer:
    faults: dict[str, float] = {}
    for name, fraction in args.fault:
        faults[name] = faults.get(name, 0.0) + fraction
    return SandboxServer(
        host=args.host,
        port=args.port,
        company_code=args.company_code,
        registration_id=args.registration_id,
        rate_limit=args.rate,
        burst=args.burst,
        latency=args.latency,
        faults=faults,
        scripts=dict(args.script),
        seed=args.seed,
        retry_after=args.retry_after,
        slow_seconds=args.slow_seconds,
        accounts=args.accounts,
        outages=args.outage,
        # A sandbox left running for hours must not grow without bound.
        track_ids=False,
    )


async def serve(args: argparse.Namespace) -> int:
    """Run the sandbox with *args*' knobs until cancelled (Ctrl-C) or ``--duration`` ends.

    Prints the base URL first (``AOPay sandbox running at http://…``), then how to point
    a client at it; prints a summary of the counters when it stops. Returns 0, or 2 when
    a knob is invalid or the address cannot be bound.
    """
    try:
        server = _make_server(args)
    except (TypeError, ValueError) as exc:
        print(f"aopay-async sandbox: error: {exc}", file=sys.stderr)
        return 2
    try:
        await server.start()
    except OSError as exc:
        print(
            f"aopay-async sandbox: error: cannot bind {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    try:
        print(f"AOPay sandbox running at {server.url}", flush=True)
        print(f"  endpoint:    GET {server.endpoint} (JSON body)")
        print(
            f"  credentials: CompanyCode={server.company_code} "
            f"RegistrationID={server.registration_id}"
        )
        print(f"  export AOPAY_BASE_URL={server.url}")
        print(f"  export AOPAY_COMPANY_CODE={server.company_code}")
        print(f"  export AOPAY_REGISTRATION_ID={server.registration_id}")
        if server.faults:
            print("  faults:      " + ", ".join(f"{k}={v:g}" for k, v in server.faults.items()))
        for start, seconds, fault in args.outage:
            print(f"  outage:      {fault} for {seconds:g}s from {start:g}s after start")
        if args.duration is None:
            print("Press Ctrl-C to stop.", flush=True)
        try:
            if args.duration is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(args.duration)
        except asyncio.CancelledError:
            # Ctrl-C (or the caller) stopped us: that is how a server ends, not an error.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
    finally:
        await server.close()
    stats = server.stats
    outcomes = ", ".join(f"{k}={v}" for k, v in sorted(stats.by_outcome.items()))
    print(f"AOPay sandbox stopped after {stats.requests} requests ({outcomes or 'none'})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aopay_async.testing._serve [flags]``: the sandbox without the full CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m aopay_async.testing._serve",
        description="Run the local fake AOPay GetCreditHistory server.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
