"""The command line: ``aopay-async`` (also ``python -m aopay_async``).

This package owns the subcommands ``get``, ``bulk``, ``sandbox`` and ``demo``
(``commands/``, one module each with ``add_parser`` and ``run``): reading an input file row
by row (``_input``), the JSONL output and its one record schema (``_output``), the resume
ledger (``_ledger``), progress (``_progress``), the summary (``_summary``), the bulk job
and Ctrl-C (``_job``), the shared client flags and the event loop (``_options``; uvloop
when installed: the library never changes the loop policy, the CLI owns its loop), the
fleet flags and the shared limiter (``_fleet``), waiting out its Redis's outages
(``_hold``), what pauses a run (``_pauses``, from the client's events), and the ids seen
(``_seen``). It is a thin shell over the client's bulk fan-out: it never retries, limits or
schedules anything itself, with one exception: a row that waited out a Redis outage past
its deadline, nothing sent, is fed to the fan-out again (``_job``).

It must never print customer data (names, mobile numbers, scores, account numbers, cibil
ids) anywhere but the output file the user asked for: progress, warnings and the summary
speak of line numbers, counts and error classes only.

The invariant: never lose or repeat a row. Each output line is written with one ``write``
as its row completes; a run killed at any moment (SIGKILL included) leaves at most a
partial last line, which ``--resume`` cuts off before it appends; rows the ledger holds
are skipped; so every input row ends up in the output exactly once (``_ledger`` tells how).

Exit status: 0 every row succeeded, 1 some rows failed, 2 bad usage (with a message saying
what), 130 interrupted (with the command that resumes the run).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aopay_async.__version__ import __version__
from aopay_async._errors import AOPayError, InvalidRequestError

from ._status import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from .commands import bulk, demo, get, sandbox

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
]


def build_parser(prog: str, *, with_sandbox: bool) -> argparse.ArgumentParser:
    """The parser of every command; the sandbox's own flags only when *with_sandbox*."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Look up AOPay credit histories: one at a time, or a whole file of them.",
        # Flags are spelled out in full: the printed resume command repeats argv, and an
        # abbreviation (--over for --overwrite) would survive into it and contradict --resume.
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    get.add_parser(commands)
    bulk.add_parser(commands)
    demo.add_parser(commands)
    sandbox.add_parser(commands, with_flags=with_sandbox)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = "aopay-async") -> int:
    """Run the command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    try:
        parser = build_parser(prog, with_sandbox=command == "sandbox")
    except ImportError as exc:  # pragma: no cover - the sandbox needs only core deps
        print(f"{prog}: error: the sandbox cannot be loaded: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # What the bulk command repeats in its resume command; set before parsing, not after.
    parser.set_defaults(prog=prog, argv=tuple(args_list))
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.run(args)
    except (UsageError, InvalidRequestError) as exc:
        message = exc.message if isinstance(exc, AOPayError) else str(exc)
        print(f"{prog} {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout's reader went away (`| head`): not a crash. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again on the way out.
        _silence_stdout()
        return EXIT_FAILED
    return code


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout already gone or replaced
        pass
    finally:
        os.close(devnull)
