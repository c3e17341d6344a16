# Reading INPUT row by row: CSV (with a header naming cibil_id) or JSONL, from a file or
# stdin, sniffed by suffix or first bytes. It owns what a "row" and its line number are,
# and which rows a --shard K/N takes (0-based row number modulo N is K).
# It must never echo a cell into an error (a file without a header row has a customer's
# data in its first line) and never load the file whole: rows stream, so a 10-million-row
# file costs the memory of one row.
"""The rows of INPUT: :func:`open_input`, :class:`Row`, :func:`count_rows`."""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from ._status import UsageError

__all__ = ["Row", "count_rows", "open_input", "select_shard", "shard_size"]


@dataclass(slots=True)
class Row:
    """One input row: its line number, the raw values, or why it could not be read."""

    line: int
    cibil_id: object = None
    client_order_id: object = None
    problem: str | None = None


JSONL_SUFFIXES: Final = (".jsonl", ".ndjson", ".json")


def open_input(path: str, fmt: str) -> tuple[Iterator[Row], Callable[[], None], str]:
    """The rows of *path* (``-`` for stdin), a function that closes it, and its format.

    Raises :class:`UsageError` when the file cannot be opened or a CSV has no ``cibil_id``
    column: a wrong file, not a bad row.
    """
    binary: Any
    if path == "-":
        binary = sys.stdin.buffer
        close: Callable[[], None] = lambda: None  # noqa: E731 - stdin is not ours to close
    else:
        try:
            binary = open(path, "rb")  # noqa: SIM115 - closed by the caller via `close`
        except OSError as exc:
            raise UsageError(f"cannot open INPUT {path!r}: {exc.strerror or exc}") from None
        close = binary.close
    buffered: io.BufferedReader = (
        binary if isinstance(binary, io.BufferedReader) else io.BufferedReader(binary)
    )
    if fmt == "auto":
        fmt = sniff(path, buffered)
    release: Callable[[], None] = lambda: None  # noqa: E731
    try:
        if fmt == "csv":
            rows, release = _csv_rows(buffered)
        else:
            rows = _jsonl_rows(buffered)
    except UsageError:
        close()
        raise

    def close_rows() -> None:
        # The rows first: the CSV text wrapper must be detached while the file is still
        # open. Left to the garbage collector after an interrupted run, it printed
        # "Exception ignored ... ValueError: I/O operation on closed file".
        if isinstance(rows, Generator):
            rows.close()
        release()
        close()

    return rows, close_rows, fmt


def sniff(path: str, binary: io.BufferedReader) -> str:
    """``csv`` or ``jsonl``: by *path*'s suffix, else by the first non-blank byte."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    head = binary.peek(4096)[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head[:1] in (b"{", b'"') else "csv"


def _csv_rows(binary: io.BufferedReader) -> tuple[Iterator[Row], Callable[[], None]]:
    """The rows, and a function that lets go of *binary* (which stays the caller's)."""
    # Undecodable bytes become lone surrogates, which the id check refuses: a bad row, not a
    # crash. utf-8-sig drops the byte-order mark Excel writes.
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")

    def release() -> None:
        # Left attached, the wrapper would close the file when collected (stdin included),
        # with an "unclosed file" ResourceWarning. Idempotent.
        with contextlib.suppress(ValueError):
            text.detach()

    reader = csv.reader(text)
    header: list[str] | None = None
    for header in reader:
        if any(cell.strip() for cell in header):
            break
    if header is None:
        release()
        return iter(()), release
    names = [cell.strip() for cell in header]
    if "cibil_id" not in names:
        # The cells are not echoed: in a file without a header row they are a customer's.
        near = [n for n in names if "".join(filter(str.isalnum, n)).lower() == "cibilid"]
        found = f"found {near[0]!r}" if near else f"its first row has {len(names)} columns"
        release()
        raise UsageError(
            f"INPUT is read as CSV but its header has no 'cibil_id' column ({found}); "
            "give it a header row with cibil_id (and optionally client_order_id), "
            "or use --format jsonl"
        )
    order_col = names.index("client_order_id") if "client_order_id" in names else None
    return _csv_body(reader, release, names.index("cibil_id"), order_col), release


def _csv_body(
    reader: Any, release: Callable[[], None], id_col: int, order_col: int | None
) -> Iterator[Row]:
    try:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Row(reader.line_num, problem=f"not valid CSV ({exc})")
                continue
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # a blank line is not a row
            if id_col >= len(cells):
                yield Row(line, problem="the row has no cibil_id cell")
                continue
            order: object = None
            if order_col is not None and order_col < len(cells) and cells[order_col] != "":
                order = cells[order_col]
            yield Row(line, cells[id_col], order)
    finally:
        release()  # the file is the caller's to close


_JSON_ROW = msgspec.json.Decoder()


def _jsonl_rows(binary: io.BufferedReader) -> Iterator[Row]:
    for line_no, raw in enumerate(binary, start=1):
        if not raw.strip():
            continue
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            value = _JSON_ROW.decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            # msgspec raises UnicodeDecodeError (not DecodeError) for bytes that are not UTF-8.
            yield Row(line_no, problem="not valid JSON (or not UTF-8)")
            continue
        except RecursionError:
            yield Row(line_no, problem="not a row: JSON nested too deeply")
            continue
        if isinstance(value, str):
            yield Row(line_no, value)
        elif isinstance(value, dict):
            if "cibil_id" not in value:
                yield Row(line_no, problem="the object has no 'cibil_id' key")
                continue
            yield Row(line_no, value["cibil_id"], value.get("client_order_id"))
        else:
            yield Row(line_no, problem=f"a row must be a JSON object, not {type(value).__name__}")


def count_rows(path: str, fmt: str) -> int:
    """Rows in *path*: its non-blank lines, less a CSV's header (exact unless cells span lines).

    *fmt* is the format as read (``csv`` or ``jsonl``, never ``auto``).
    """
    count = 0
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                count += 1
    if fmt == "csv":
        count = max(count - 1, 0)
    return count


def select_shard(rows: Iterator[Row], shard: tuple[int, int] | None) -> Iterator[Row]:
    """The rows of shard ``(K, N)``: those whose 0-based row number modulo N is K.

    The row number counts every row as read (bad rows too; not the CSV header or blank
    lines), so the N shards of one INPUT split it exactly, each row in one shard.
    """
    if shard is None:
        return rows
    k, n = shard
    return (row for number, row in enumerate(rows) if number % n == k)


def shard_size(total: int, shard: tuple[int, int] | None) -> int:
    """How many of *total* rows shard ``(K, N)`` takes."""
    if shard is None:
        return total
    k, n = shard
    return total // n + (1 if k < total % n else 0)
