# `aopay-async demo`: the sandbox started in-process with a server-side rate limit and a
# few percent of injected faults, a synthetic customer list (with two deliberate bad
# rows), and the same bulk job a user runs, so a newcomer sees progress, retries and the
# summary in one command. It must never touch a real API (it builds its client with the
# sandbox's URL and credentials, leaving the parsed flags as parsed).
"""``aopay-async demo``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from aopay_async.cli._argtypes import count, number
from aopay_async.cli._input import Row
from aopay_async.cli._job import JobOptions, run_job
from aopay_async.cli._options import (
    Knob,
    add_client_flags,
    add_knobs,
    add_loop_flag,
    add_run_flags,
    make_client,
    run_in_loop,
)
from aopay_async.cli._output import STDOUT
from aopay_async.cli._progress import make_progress
from aopay_async.cli._status import EXIT_INTERRUPTED, EXIT_OK

__all__ = ["DEMO_FAULTS", "add_parser", "demo_rows", "run"]

#: The demo's server-side faults: a few percent, so retries show in the summary.
DEMO_FAULTS: Final = {"503": 0.015, "500": 0.005, "502": 0.005, "reset": 0.005, "truncate": 0.002}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        allow_abbrev=False,
        help="run a bulk job against a local sandbox, to see it work",
        description=(
            "Start the sandbox in-process (with a server-side rate limit and a few percent of "
            "injected faults), generate a synthetic customer list, run the bulk job with "
            "progress, print the summary. Overwrites OUTPUT."
        ),
    )
    parser.add_argument("--n", type=count(1), default=2000, help="customers (default 2000)")
    parser.add_argument("-o", "--output", default="demo-output.jsonl", metavar="OUTPUT.jsonl")
    parser.add_argument(
        "--server-rate",
        type=number(1e-3, allow_none=True),
        # The same rate as the client's: the exact limiter then meets a server that enforces
        # it and sees no 429 (try --rate 250 to watch the client cope with being over it).
        default=200.0,
        metavar="R",
        help="the sandbox's own rate limit, requests a second; 'none' for no limit (default 200)",
    )
    parser.add_argument("--no-faults", dest="faults", action="store_false", help="inject no faults")
    parser.add_argument("--seed", type=int, default=0, help="seed for faults and ids (default 0)")
    add_knobs(
        parser,
        Knob(
            "--outage",
            number(0.0),
            0.0,
            "S",
            "take the sandbox down (every answer 503) for S seconds, --outage-at seconds in, "
            "to watch the circuit breaker pause the run and resume it (default 0: none)",
        ),
        Knob(
            "--outage-at",
            number(0.0),
            3.0,
            "S",
            "when the --outage starts, seconds after the sandbox (default 3)",
        ),
    )
    add_run_flags(parser)
    add_client_flags(parser, rate=200.0)
    parser.set_defaults(timeout=5.0, deadline=30.0)
    add_loop_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_in_loop(_demo(args, os.path.abspath(args.output)), args.loop)


def demo_rows(n: int, seed: int) -> Iterator[Row]:
    """A synthetic customer list as if read from a CSV (header on line 1), with 2 bad rows."""
    bad = {n // 3: "", (2 * n) // 3: "X" * 80} if n >= 10 else {}
    for i in range(n):
        line = i + 2
        if i in bad:
            yield Row(line, bad[i])
        else:
            yield Row(line, f"DEMO{seed:02d}{i:07d}")


async def _demo(args: argparse.Namespace, shown_output: str) -> int:
    from aopay_async.testing import DEFAULT_COMPANY_CODE, DEFAULT_REGISTRATION_ID, SandboxServer

    output = Path(args.output)
    server = SandboxServer(
        rate_limit=args.server_rate,
        burst=max(1, int(args.server_rate / 10)) if args.server_rate else 1,
        latency=(0.002, 0.03),
        faults=DEMO_FAULTS if args.faults else None,
        seed=args.seed,
        track_ids=False,
        slow_seconds=0.5,
        outages=[(args.outage_at, args.outage)] if args.outage else (),
    )
    async with server:
        progress = make_progress(args.quiet, args.progress_interval, "demo")
        fault_pct = sum(DEMO_FAULTS.values()) * 100 if args.faults else 0.0
        progress.say(
            f"demo: sandbox at {server.url} (server-side limit "
            f"{args.server_rate or 'none'}/s, {fault_pct:.1f}% injected faults); "
            f"client rate {args.rate or 'unlimited'}/s, concurrency {args.concurrency}; "
            f"{args.n} synthetic customers"
        )
        if args.outage:
            progress.say(
                f"demo: the sandbox goes down (503) for {args.outage:g}s, "
                f"{args.outage_at:g}s in: watch the run pause and resume"
            )
        options = JobOptions(output=output, overwrite=True, grace=args.grace, label="demo")
        code, _ = await run_job(
            lambda **observe: make_client(
                args,
                base_url=server.url,
                company_code=DEFAULT_COMPANY_CODE,
                registration_id=DEFAULT_REGISTRATION_ID,
                **observe,
            ),
            demo_rows(args.n, args.seed),
            options,
            progress,
            concurrency=args.concurrency,
            count_rows=lambda: args.n,
            metrics=args.metrics_port,
        )
    stream = sys.stderr if args.output == STDOUT else sys.stdout
    shown = "stdout" if args.output == STDOUT else shown_output
    print(f"Results: {shown} (one JSON line per customer)", file=stream)
    print(
        "Next: run your own list with `aopay-async bulk customers.csv -o results.jsonl` "
        "(AOPAY_COMPANY_CODE and AOPAY_REGISTRATION_ID set)",
        file=stream,
    )
    # The demo's bad rows are deliberate: it succeeded if it ran to the end.
    return code if code == EXIT_INTERRUPTED else EXIT_OK
