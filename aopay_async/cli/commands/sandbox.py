# `aopay-async sandbox`: the local fake server until Ctrl-C. Its flags and serve loop live
# with the sandbox (aopay_async.testing.add_sandbox_arguments / serve_sandbox); this
# module only wires them in, and imports them only when this command runs, so the other
# commands never pay for importing the server.
"""``aopay-async sandbox``."""

from __future__ import annotations

import argparse
from typing import Any

from aopay_async.cli._options import add_loop_flag, run_in_loop

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, *, with_flags: bool = True) -> None:
    """The ``sandbox`` parser; its own flags only when *with_flags* (they import the server)."""
    parser = subparsers.add_parser(
        "sandbox",
        allow_abbrev=False,
        help="run the local fake AOPay server",
        description="Run the local fake AOPay GetCreditHistory server until Ctrl-C.",
    )
    if with_flags:
        from aopay_async.testing import add_sandbox_arguments

        add_sandbox_arguments(parser)
    add_loop_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from aopay_async.testing import serve_sandbox

    return run_in_loop(serve_sandbox(args), args.loop)
