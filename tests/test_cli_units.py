"""Unit tests of the command-line package's pure parts (no subprocess, no server).

The end-to-end runs are in ``test_cli.py``; these pin the decisions and the one output
schema that those runs rely on.
"""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aopay_async import BulkResult, CreditHistoryRequest, ServerError
from aopay_async.cli import build_parser
from aopay_async.cli._input import Row
from aopay_async.cli._job import Verdict, judge
from aopay_async.cli._ledger import Ledger
from aopay_async.cli._output import bad_row_record, describe_error, result_record


def _ledger(*entries: tuple[int, bool, str]) -> Ledger:
    ledger = Ledger()
    for line, ok, cibil_id in entries:
        ledger.add(line, ok, cibil_id)
    return ledger


@pytest.mark.parametrize(
    ("row", "ledger", "kind"),
    [
        (Row(5, "CUST2", "o-1"), _ledger(), "bad"),  # o-1 was taken by line 2
        (Row(2, "CUST1", "o-1"), _ledger(), "send"),  # line 2 itself
        (Row(5, "CUST2", "o-2"), _ledger(), "send"),
        (Row(2, "CUST1"), _ledger(), "send"),
        (Row(2, problem="not valid JSON"), _ledger(), "bad"),
        (Row(2, ""), _ledger(), "bad"),
        (Row(2, "X" * 80), _ledger(), "bad"),
        (Row(2, "CUST1"), _ledger((2, True, "CUST1")), "skip"),
        (Row(2, "CUST1"), _ledger((2, False, "CUST1")), "skip"),
        (Row(2, "CUST1"), _ledger((2, True, "OTHER")), "mismatch"),
        (Row(3, "CUST1"), _ledger((2, True, "OTHER")), "send"),
    ],
)
def test_judge_sends_skips_refuses_or_stops(row: Row, ledger: Ledger, kind: str) -> None:
    """Each row gets exactly one verdict: send it, write it as bad, skip it, or stop."""
    verdict = judge(row, ledger, {"o-1": 2})
    got = {
        "send": verdict.request is not None,
        "bad": verdict.problem is not None,
        "mismatch": verdict.mismatch,
    }
    expected = {k: k == kind for k in got}
    assert got == expected
    if kind == "skip":
        assert verdict == Verdict()


def test_bad_rows_and_failed_rows_share_one_schema() -> None:
    """A bad input row's line has exactly the keys (and error keys) of an API failure's line."""
    failed = result_record(
        7,
        BulkResult(
            CreditHistoryRequest("CUST1", "o-1"),
            error=ServerError("down", status_code=503, attempts=2),
            attempts=2,
            elapsed=0.25,
        ),
    )
    bad = bad_row_record(8, "", None, "line 8: cibil_id must not be empty")
    assert failed.keys() == bad.keys()
    assert failed["error"].keys() == bad["error"].keys()
    expected = {"type": "ServerError", "message": "down", "status": 503, "code": None}
    assert failed["error"] == expected
    assert bad["ok"] is False
    assert bad["attempts"] == 0
    assert bad["error"]["type"] == "InvalidRequestError"
    assert failed["elapsed_ms"] == 250.0


def test_bad_row_cells_that_are_not_utf8_are_written_replaced() -> None:
    """Lone surrogates from undecodable input become U+FFFD, so the line is valid JSON."""
    bad = bad_row_record(3, "BAD\udcff", ["not", "a", "scalar"], "line 3: bad")
    assert bad["cibil_id"] == "BAD\ufffd"
    assert bad["client_order_id"] is None


def test_the_terminal_error_line_renders_the_record_fields() -> None:
    """`get`'s one-line error carries the same type and status as the output record."""
    error = ServerError("down", status_code=503, attempts=2, client_order_id="o-9")
    assert describe_error(error) == (
        "error: ServerError: down (HTTP 503, 2 attempts, client_order_id o-9)"
    )


@pytest.mark.parametrize("command", ["get", "bulk", "demo", "sandbox"])
def test_every_command_dispatches_through_set_defaults(command: str) -> None:
    """Each subcommand's parser sets `run` to its own module's run(args)."""
    parser = build_parser("aopay-async", with_sandbox=False)
    extra = {"get": ["--cibil-id", "X"], "bulk": ["in.csv", "-o", "out.jsonl"]}
    args = parser.parse_args([command, *extra.get(command, [])])
    assert isinstance(args, argparse.Namespace)
    assert args.run.__module__ == f"aopay_async.cli.commands.{command}"


def test_a_duplicate_client_order_id_names_the_first_line() -> None:
    """The second row with one client_order_id is refused, pointing at the first."""
    verdict = judge(Row(9, "CUST9", "ord-7"), Ledger(), {"ord-7": 4})
    assert verdict.request is None
    assert verdict.problem == "duplicate client_order_id of line 4"


@given(st.lists(st.sampled_from(["o-1", "o-2", "o-3", None]), max_size=30))
def test_no_client_order_id_is_sent_twice(order_ids: list[str | None]) -> None:
    """Fed as the job feeds them, each client_order_id is sent at most once, from its first
    row; every later row with it is a bad row naming that first line."""
    order_lines: dict[str, int] = {}
    sent: list[str] = []
    for line, order_id in enumerate(order_ids, start=2):
        verdict = judge(Row(line, f"CUST{line}", order_id), Ledger(), order_lines)
        if order_id is not None:
            order_lines.setdefault(order_id, line)
        if verdict.request is not None and order_id is not None:
            sent.append(order_id)
        elif order_id is not None:
            assert verdict.problem == f"duplicate client_order_id of line {order_lines[order_id]}"
    assert sorted(sent) == sorted({o for o in order_ids if o is not None})
