# OUTPUT and the one schema of its lines. Every line, whether a row succeeded, failed at
# the API or was a bad input row never sent, is built by :func:`output_record` and every
# error, in OUTPUT or on the terminal (``get``), is rendered by :func:`error_record`: one
# place to change the schema, so the three kinds of line cannot drift apart. It must
# never write a line in more than one ``write`` (a kill mid-line must leave at most one
# partial last line, which the ledger cuts off) and never create OUTPUT readable by
# others (0600: it holds customer data).
"""The output file, :func:`output_record` (the line schema) and :func:`error_record`."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from aopay_async._errors import AOPayError, APIStatusError
from aopay_async._models import BulkResult

from ._status import UsageError

__all__ = [
    "ENCODE",
    "STDOUT",
    "Output",
    "bad_row_record",
    "describe_error",
    "error_record",
    "json_safe",
    "make_private",
    "output_record",
    "result_record",
]

ENCODE: Final = msgspec.json.Encoder().encode

#: What a bad input row's error says it is (it was never sent).
BAD_ROW_ERROR: Final = "InvalidRequestError"


def json_safe(value: object) -> object:
    """*value* as it can be written to JSON: lone surrogates (undecodable input) replaced."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return value
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return None


def output_record(
    line: int,
    cibil_id: object,
    client_order_id: object,
    *,
    attempts: int,
    elapsed: float,
    result: object = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One output line: ``ok`` with ``result``, or not ok with ``error`` (:func:`error_record`)."""
    record: dict[str, Any] = {
        "line": line,
        "cibil_id": cibil_id,
        "client_order_id": client_order_id,
        "ok": error is None,
        "attempts": attempts,
        "elapsed_ms": round(elapsed * 1000, 3),
    }
    if error is None:
        record["result"] = result
    else:
        record["error"] = error
    return record


def error_record(
    error: BaseException | None, *, type_name: str | None = None, message: str | None = None
) -> dict[str, Any]:
    """``{"type", "message", "status", "code"}`` for an error (messages are redacted)."""
    return {
        "type": type_name or type(error).__name__,
        "message": message if message is not None else (str(error) if error is not None else None),
        "status": error.status_code if isinstance(error, APIStatusError) else None,
        "code": getattr(error, "code", None),
    }


def result_record(line: int, result: BulkResult) -> dict[str, Any]:
    """The output line for one row the client finished (ok or failed)."""
    request = result.request
    return output_record(
        line,
        request.cibil_id,
        request.client_order_id,
        attempts=result.attempts,
        elapsed=result.elapsed,
        result=result.history if result.ok else None,
        error=None if result.ok else error_record(result.error),
    )


def bad_row_record(
    line: int, cibil_id: object, client_order_id: object, message: str
) -> dict[str, Any]:
    """The output line for an input row that was never sent (*message* says why)."""
    return output_record(
        line,
        json_safe(cibil_id),
        json_safe(client_order_id),
        attempts=0,
        elapsed=0.0,
        error=error_record(None, type_name=BAD_ROW_ERROR, message=message),
    )


def describe_error(exc: AOPayError) -> str:
    """One line for the terminal, from the same fields as an output line's ``error``."""
    fields = error_record(exc, message=exc.message)
    parts = [f"{fields['type']}: {fields['message']}"]
    if fields["status"] is not None:
        parts.append(f"HTTP {fields['status']}")
    if exc.attempts:
        parts.append(f"{exc.attempts} attempt{'s' if exc.attempts != 1 else ''}")
    if exc.client_order_id:
        parts.append(f"client_order_id {exc.client_order_id}")
    return "error: " + parts[0] + (f" ({', '.join(parts[1:])})" if parts[1:] else "")


#: ``-o -``: the JSONL goes to stdout (and the summary to stderr).
STDOUT: Final = "-"


class Output:
    """OUTPUT opened for appending; each line goes out in one ``write``, flushed at once.

    A regular file is made 0600 whenever it is opened for writing, whether it was created
    now or existed (an earlier 0644 file, an empty one): it holds customer data.
    """

    def __init__(self, path: Path, *, truncate: bool, fsync: bool) -> None:
        self._fsync = fsync
        self._owned = str(path) != STDOUT
        if not self._owned:
            sys.stdout.flush()
            self._fd = sys.stdout.fileno()
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        try:
            self._fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot open OUTPUT {str(path)!r}: {exc.strerror or exc}") from None
        try:
            make_private(self._fd)
        except OSError as exc:
            os.close(self._fd)
            raise UsageError(
                f"cannot make OUTPUT {str(path)!r} readable by its owner only (0600): "
                f"{exc.strerror or exc}"
            ) from None

    def write(self, record: dict[str, Any]) -> None:
        """Append *record* as one JSON line, in one ``write`` (looping only on a short one)."""
        data = memoryview(ENCODE(record) + b"\n")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        if self._fsync and self._owned:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0 and self._owned:
            os.close(self._fd)
        self._fd = -1


def make_private(fd: int) -> None:
    """Mode 0600 for the regular file open as *fd* (a FIFO or a device is left alone)."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.fchmod(fd, 0o600)
