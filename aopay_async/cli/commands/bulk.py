# `aopay-async bulk INPUT -o OUTPUT`: the files checked and INPUT opened before the event
# loop starts (quick stats, so a wrong path is a usage error at once), then the bulk job.
# It owns the resume command printed on an interrupt: argv repeated with --resume, so it
# must never let an abbreviated flag through (the parser refuses abbreviations).
"""``aopay-async bulk``."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aopay_async._events import EventHook
from aopay_async.cli._fleet import (
    add_fleet_flags,
    check_limiter,
    fallback_announcer,
    make_limiter,
)
from aopay_async.cli._hold import HeldLimiter
from aopay_async.cli._input import Row, count_rows, open_input, select_shard, shard_size
from aopay_async.cli._job import JobOptions, run_job
from aopay_async.cli._options import (
    add_client_flags,
    add_loop_flag,
    add_run_flags,
    make_client,
    run_in_loop,
)
from aopay_async.cli._output import STDOUT
from aopay_async.cli._progress import make_progress
from aopay_async.cli._status import UsageError

__all__ = ["add_parser", "resume_command", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bulk",
        allow_abbrev=False,
        help="look up every row of a CSV or JSONL file",
        description=(
            "Look up every row of INPUT, writing one JSON line per row to OUTPUT as it "
            "finishes. Exit status: 0 all rows ok, 1 some failed, 2 bad usage, "
            "130 interrupted."
        ),
    )
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="CSV with a cibil_id column (optional client_order_id), or JSONL; - for stdin",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT.jsonl",
        help="one JSON line per row, written as rows finish (mode 0600); - for stdout",
    )
    parser.add_argument(
        "--format",
        choices=("auto", "csv", "jsonl"),
        default="auto",
        help="INPUT's format (default: by suffix, else by its first line)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip rows OUTPUT already holds an outcome for"
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume (implied), re-do the rows that failed instead of skipping them",
    )
    parser.add_argument("--overwrite", action="store_true", help="start OUTPUT afresh if it exists")
    parser.add_argument(
        "--fsync",
        action="store_true",
        help="fsync after every line (survives power loss, not just a killed process; slower)",
    )
    add_run_flags(parser)
    add_client_flags(parser)
    add_fleet_flags(parser, with_shard=True)
    add_loop_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_in_loop(_bulk(args), args.loop)


def resume_command(prog: str, argv: Sequence[str]) -> str:
    """The command that resumes this run: *argv* with --resume (and without --overwrite)."""
    args = [a for a in argv if a != "--overwrite"]
    if "--resume" not in args:
        args.append("--resume")
    command = shlex.join([*shlex.split(prog), *args])
    if "-" in args[1:]:
        command = f"<same input> | {command}"
    return command


def _setup(
    args: argparse.Namespace,
) -> tuple[Iterator[Row], Callable[[], None], JobOptions, Callable[[], int] | None]:
    """Check the files and open INPUT (before the loop's work starts: these are quick stats)."""
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pick one")
    output = Path(args.output)
    if args.output == STDOUT:
        if args.resume or args.retry_failed:
            raise UsageError("--resume needs OUTPUT to be a file: stdout (-o -) holds no ledger")
    elif output.is_dir():
        raise UsageError(
            f"OUTPUT {args.output!r} is a directory; name a file, "
            f"e.g. -o {shlex.quote(os.path.join(args.output, 'results.jsonl'))}"
        )
    elif args.input != "-" and output.exists() and Path(args.input).exists():
        with contextlib.suppress(OSError):
            if output.samefile(args.input):
                raise UsageError("OUTPUT is the same file as INPUT; give another -o")
    rows, close, fmt = open_input(args.input, args.format)
    rows = select_shard(rows, args.shard)
    options = JobOptions(
        output=output,
        resume=args.resume or args.retry_failed,
        retry_failed=args.retry_failed,
        overwrite=args.overwrite,
        fsync=args.fsync,
        grace=args.grace,
    )
    count = None
    if args.input != "-" and Path(args.input).is_file():
        count = functools.partial(_count, args.input, fmt, args.shard)
    return rows, close, options, count


def _count(path: str, fmt: str, shard: tuple[int, int] | None) -> int:
    return shard_size(count_rows(path, fmt), shard)


async def _bulk(args: argparse.Namespace) -> int:
    rows, close, options, count = _setup(args)
    limiter = None
    try:
        limiter = make_limiter(args)
        reachable = await check_limiter(limiter)
        progress = make_progress(args.quiet, args.progress_interval, "bulk")
        # Without --redis-fallback, rows wait out Redis's outages (and none fails for one);
        # with it, the client's fallback_limiter events say when it goes on alone.
        hold = None if limiter is None or args.redis_fallback else HeldLimiter(limiter)
        hooks: tuple[EventHook, ...] = ()
        if limiter is not None and args.redis_fallback:
            hooks = (fallback_announcer(progress.say, args.rate, args.redis_fallback),)
            if not reachable:
                progress.say("the rate limiter's Redis does not answer yet")
        code, _ = await run_job(
            lambda **observe: make_client(args, limiter=hold or limiter, **observe),
            rows,
            options,
            progress,
            concurrency=args.concurrency,
            count_rows=count,
            resume_command=(
                None if args.output == STDOUT else resume_command(args.prog, args.argv)
            ),
            metrics=args.metrics_port,
            hold=hold,
            event_hooks=hooks,
        )
    finally:
        close()
        if limiter is not None:
            await limiter.aclose()
    return code
