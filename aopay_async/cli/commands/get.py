# `aopay-async get`: one lookup, the credit history as indented JSON on stdout. An API
# failure is one line on stderr (exit 1), rendered from the same fields as an output
# file's error record. It must never print the history anywhere but stdout.
"""``aopay-async get --cibil-id ID``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from aopay_async._errors import AOPayError, InvalidRequestError
from aopay_async.cli._fleet import add_fleet_flags, check_limiter, make_limiter
from aopay_async.cli._options import add_client_flags, add_loop_flag, make_client, run_in_loop
from aopay_async.cli._output import ENCODE, describe_error
from aopay_async.cli._status import EXIT_FAILED, EXIT_OK

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "get",
        allow_abbrev=False,
        help="look up one customer, JSON to stdout",
        description="Look up one customer's credit history and print it as JSON.",
    )
    parser.add_argument(
        "--cibil-id",
        required=True,
        metavar="ID",
        help="the customer's CIBIL id (up to 64 characters), as the bureau knows them",
    )
    parser.add_argument(
        "--client-order-id",
        default=None,
        metavar="ID",
        help="your idempotency key for this lookup (default: a new random one)",
    )
    add_client_flags(parser)
    add_fleet_flags(parser, with_shard=False)
    add_loop_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_in_loop(_get(args), args.loop)


async def _get(args: argparse.Namespace) -> int:
    limiter = make_limiter(args)
    try:
        await check_limiter(limiter)
        async with make_client(args, limiter=limiter) as client:
            try:
                history = await client.get_credit_history(
                    cibil_id=args.cibil_id, client_order_id=args.client_order_id
                )
            except InvalidRequestError:
                raise
            except AOPayError as exc:
                print(describe_error(exc), file=sys.stderr)
                return EXIT_FAILED
    finally:
        if limiter is not None:
            await limiter.aclose()
    sys.stdout.buffer.write(msgspec.json.format(ENCODE(history), indent=2) + b"\n")
    sys.stdout.flush()
    return EXIT_OK
