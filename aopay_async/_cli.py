"""The command line: ``aopay-async`` (also ``python -m aopay_async``).

This module owns the subcommands ``get``, ``bulk``, ``sandbox`` and ``demo``: reading an
input file row by row, the JSONL output and its resume ledger, progress, the summary, the
exit status, Ctrl-C, and the event loop (uvloop when installed; the library never changes
the loop policy, the CLI owns its loop). It is a thin shell over the client's bulk fan-out:
it never retries, limits or schedules anything itself.

It must never print customer data (names, mobile numbers, scores, account numbers, cibil
ids) anywhere but the output file the user asked for: progress, warnings and the summary
speak of line numbers, counts and error classes only. And it must never lose or repeat a
row: each output line is written with one ``write`` as its row completes, a run killed at
any moment (SIGKILL included) leaves at most a partial last line, which ``--resume`` cuts
off before it appends, so every input row ends up in the output exactly once.

Exit status: 0 every row succeeded, 1 some rows failed, 2 bad usage (with a message saying
what), 130 interrupted (with the command that resumes the run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import functools
import io
import itertools
import math
import os
import shlex
import signal
import sys
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

import msgspec

from ._errors import AOPayError, APIStatusError, InvalidRequestError
from ._models import BulkResult, CreditHistoryRequest

if TYPE_CHECKING:
    import aiohttp

    from ._client import AOPayClient

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

#: How many bad-row warnings are printed before the rest are only counted.
MAX_ROW_WARNINGS: Final = 20


class UsageError(Exception):
    """Bad usage found after argument parsing (a file that cannot be read, say): exit 2."""


# -- the event loop -------------------------------------------------------------------------


def _loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
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


def _run(coro: Coroutine[Any, Any, int], loop: str) -> int:
    # A Runner with a loop factory (not a policy change), so importing or embedding the
    # library never switches anyone's loop; only this process's own loop is uvloop.
    try:
        factory = _loop_factory(loop)
    except UsageError:
        coro.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# -- argument types -------------------------------------------------------------------------


def _number(minimum: float, *, allow_none: bool = False) -> Callable[[str], float | None]:
    def parse(text: str) -> float | None:
        if allow_none and text.strip().lower() in ("none", "off", "0"):
            return None
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum:
            extra = " (or 'none' for no limit)" if allow_none else ""
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum:g}{extra}")
        return value

    return parse


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
        return value

    return parse


def _add_client_flags(parser: argparse.ArgumentParser, *, rate: float | None = 10.0) -> None:
    group = parser.add_argument_group(
        "client",
        "Credentials come from the environment: AOPAY_COMPANY_CODE, AOPAY_REGISTRATION_ID "
        "(and AOPAY_BASE_URL unless --base-url is given).",
    )
    group.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="the API's base URL (default: $AOPAY_BASE_URL, else https://api.aopay.co.in)",
    )
    group.add_argument(
        "--rate",
        type=_number(1e-6, allow_none=True),
        default=rate,
        metavar="R",
        help=f"attempts a second, retries included; 'none' for no limit (default {rate})",
    )
    group.add_argument(
        "--burst", type=_count(1), default=1, metavar="B", help="rate-limit burst (default 1)"
    )
    group.add_argument(
        "--concurrency",
        type=_count(1),
        default=32,
        metavar="N",
        help="rows (and connections) in flight at once (default 32)",
    )
    group.add_argument(
        "--max-retries",
        type=_count(0),
        default=3,
        metavar="N",
        help="retries after a row's first attempt (default 3)",
    )
    group.add_argument(
        "--timeout",
        type=_number(1e-3),
        default=30.0,
        metavar="S",
        help="seconds for one attempt (default 30)",
    )
    group.add_argument(
        "--deadline",
        type=_number(1e-3, allow_none=True),
        default=120.0,
        metavar="S",
        help="seconds for one row, all attempts and waits; 'none' for no deadline (default 120)",
    )


def _add_loop_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop when installed (auto, the default), or force one",
    )


def _make_client(
    args: argparse.Namespace,
    *,
    company_code: str | None = None,
    registration_id: str | None = None,
    session: aiohttp.ClientSession | None = None,
) -> AOPayClient:
    from ._client import AOPayClient

    return AOPayClient(
        company_code,
        registration_id,
        base_url=args.base_url,
        rate_limit=args.rate,
        burst=args.burst,
        max_concurrency=args.concurrency,
        max_retries=args.max_retries,
        timeout=args.timeout,
        deadline=args.deadline,
        session=session,
    )


# -- input ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One input row: its line number, the raw values, or why it could not be read."""

    line: int
    cibil_id: object = None
    client_order_id: object = None
    problem: str | None = None


_JSONL_SUFFIXES: Final = (".jsonl", ".ndjson", ".json")


def _open_input(path: str, fmt: str) -> tuple[Iterator[Row], Callable[[], None], str]:
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
        fmt = _sniff(path, buffered)
    try:
        rows = _csv_rows(buffered) if fmt == "csv" else _jsonl_rows(buffered)
        return rows, close, fmt
    except UsageError:
        close()
        raise


def _sniff(path: str, binary: io.BufferedReader) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    head = binary.peek(4096)[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head[:1] in (b"{", b'"') else "csv"


def _csv_rows(binary: io.BufferedReader) -> Iterator[Row]:
    # Undecodable bytes become lone surrogates, which the id check refuses: a bad row, not a
    # crash. utf-8-sig drops the byte-order mark Excel writes.
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    header: list[str] | None = None
    for header in reader:
        if any(cell.strip() for cell in header):
            break
    if header is None:
        text.detach()
        return iter(())
    names = [cell.strip() for cell in header]
    if "cibil_id" not in names:
        # The cells are not echoed: in a file without a header row they are a customer's.
        near = [n for n in names if "".join(filter(str.isalnum, n)).lower() == "cibilid"]
        found = f"found {near[0]!r}" if near else f"its first row has {len(names)} columns"
        raise UsageError(
            f"INPUT is read as CSV but its header has no 'cibil_id' column ({found}); "
            "give it a header row with cibil_id (and optionally client_order_id), "
            "or use --format jsonl"
        )
    return _csv_body(reader, text, names.index("cibil_id"), _index_of(names, "client_order_id"))


def _index_of(names: list[str], name: str) -> int | None:
    return names.index(name) if name in names else None


def _csv_body(
    reader: Any, text: io.TextIOWrapper, id_col: int, order_col: int | None
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
        # The file is the caller's to close. Left attached, the wrapper would close it when
        # collected (stdin included) with an "unclosed file" ResourceWarning.
        text.detach()


_JSON_ROW = msgspec.json.Decoder()


def _jsonl_rows(binary: io.BufferedReader) -> Iterator[Row]:
    for line_no, raw in enumerate(binary, start=1):
        if not raw.strip():
            continue
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            value = _JSON_ROW.decode(raw)
        except msgspec.DecodeError:
            yield Row(line_no, problem="not valid JSON")
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


def _count_rows(path: str, fmt: str) -> int:
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


# -- output and the resume ledger -----------------------------------------------------------


class _Record(msgspec.Struct):
    """The part of an output line the ledger reads back."""

    line: int
    ok: bool
    cibil_id: Any = None


_READ_RECORD = msgspec.json.Decoder(_Record)
_ENCODE = msgspec.json.Encoder().encode


def _clean(value: object) -> object:
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


def _key(value: object) -> int:
    """A short fingerprint of a row's cibil id, to tell that OUTPUT belongs to INPUT."""
    return zlib.crc32(f"{type(value).__name__}:{value}".encode("utf-8", "backslashreplace"))


class Ledger:
    """Which input lines OUTPUT already holds an outcome for (and a fingerprint of each).

    One byte and one 32-bit word per input line, so resuming a 10-million-row run costs
    about 50 MB, not a set of ten million ints.
    """

    ABSENT: Final = 0
    OK: Final = 1
    FAILED: Final = 2

    def __init__(self) -> None:
        self._state = bytearray()
        self._keys = array("I")
        self.ok = 0
        self.failed = 0

    def add(self, line: int, ok: bool, cibil_id: object) -> None:
        if line >= len(self._state):
            grow = max(line + 1 - len(self._state), len(self._state) // 2, 1024)
            self._state.extend(bytes(grow))
            self._keys.extend(itertools.repeat(0, grow))
        if self._state[line] == self.ABSENT:
            if ok:
                self.ok += 1
            else:
                self.failed += 1
        self._state[line] = self.OK if ok else self.FAILED
        self._keys[line] = _key(cibil_id)

    def state(self, line: int) -> int:
        return self._state[line] if line < len(self._state) else self.ABSENT

    def matches(self, line: int, cibil_id: object) -> bool:
        return self._keys[line] == _key(_clean(cibil_id))

    def __len__(self) -> int:
        return self.ok + self.failed


def _cut_partial_line(path: Path) -> int:
    """Truncate *path* after its last newline (a run killed mid-write); return bytes cut."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            step = min(end, 64 * 1024)
            f.seek(end - step)
            chunk = f.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = end - step + newline + 1
                break
            end -= step
        if end != size:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
        return size - end


def load_ledger(path: Path, *, retry_failed: bool) -> tuple[Ledger, int]:
    """Read OUTPUT back: the ledger of finished lines and the bytes of partial line cut off.

    With *retry_failed*, failed outcomes are removed from OUTPUT first (written to a
    temporary file that then replaces it, so a kill half-way leaves OUTPUT as it was).
    """
    ledger = Ledger()
    if not path.exists():
        return ledger, 0
    cut = _cut_partial_line(path)
    keep: IO[bytes] | None = None
    tmp = path.with_name(path.name + ".resume-tmp")
    if retry_failed:
        # The copy replaces OUTPUT, so it gets OUTPUT's mode (0o600 as we create it), not the
        # umask's default: customer data must not turn world-readable on a retry.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, path.stat().st_mode & 0o777)
        keep = open(fd, "wb")  # noqa: SIM115 - closed below, on every path
    dropped = 0
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    record = _READ_RECORD.decode(raw)
                except msgspec.DecodeError:
                    raise UsageError(
                        f"OUTPUT line {number} is not a bulk result line: is {str(path)!r} "
                        "the output of an earlier `aopay-async bulk` run?"
                    ) from None
                if keep is not None:
                    if not record.ok:
                        dropped += 1
                        continue
                    keep.write(raw)
                ledger.add(record.line, record.ok, record.cibil_id)
        if keep is not None:
            keep.flush()
            os.fsync(keep.fileno())
            keep.close()
            if dropped:
                os.replace(tmp, path)
            else:
                tmp.unlink()
    finally:
        if keep is not None and not keep.closed:
            keep.close()
            tmp.unlink(missing_ok=True)
    return ledger, cut


class Output:
    """OUTPUT opened for appending; each line goes out in one ``write``, flushed at once."""

    def __init__(self, path: Path, *, truncate: bool, fsync: bool) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        try:
            # 0o600: the file holds customer data.
            self._fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot open OUTPUT {str(path)!r}: {exc.strerror or exc}") from None
        self._fsync = fsync

    def write(self, record: dict[str, Any]) -> None:
        data = memoryview(_ENCODE(record) + b"\n")
        # One write() for the whole line; the loop only runs if the kernel took part of it.
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def result_record(line: int, result: BulkResult) -> dict[str, Any]:
    """The output line for one finished row."""
    request = result.request
    record: dict[str, Any] = {
        "line": line,
        "cibil_id": request.cibil_id,
        "client_order_id": request.client_order_id,
        "ok": result.ok,
        "attempts": result.attempts,
        "elapsed_ms": round(result.elapsed * 1000, 3),
    }
    if result.ok:
        record["result"] = result.history
    else:
        record["error"] = error_record(result.error)
    return record


def error_record(error: BaseException | None) -> dict[str, Any]:
    """``{"type", "message", "status", "code"}`` for an error (messages are redacted)."""
    return {
        "type": type(error).__name__,
        "message": str(error) if error is not None else None,
        "status": error.status_code if isinstance(error, APIStatusError) else None,
        "code": getattr(error, "code", None),
    }


# -- statistics -----------------------------------------------------------------------------


class LatencyHistogram:
    """Percentiles in constant memory: log-spaced buckets 1% wide, from 1 µs to ~3 hours."""

    _BASE: Final = 1e-6
    _LOG_STEP: Final = math.log(1.01)

    def __init__(self) -> None:
        self._counts = [0] * 2400
        self.count = 0

    def add(self, seconds: float) -> None:
        index = int(math.log(max(seconds, self._BASE) / self._BASE) / self._LOG_STEP)
        self._counts[min(index, len(self._counts) - 1)] += 1
        self.count += 1

    def percentile(self, p: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * p / 100))
        seen = 0
        for index, n in enumerate(self._counts):
            seen += n
            if seen >= rank:
                return self._BASE * math.exp((index + 0.5) * self._LOG_STEP)
        return None  # pragma: no cover - unreachable: the counts add up to self.count


@dataclass
class Tally:
    """Counters for one run, read by the progress display and the summary."""

    total: int | None = None  # input rows, when knowable
    previous_ok: int = 0  # finished in an earlier run, skipped now
    previous_failed: int = 0
    ok: int = 0
    failed: int = 0
    bad_rows: int = 0
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    attempts: int = 0  # HTTP attempts started, retries included
    connection_errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        """Rows finished in this run (bad rows included)."""
        return self.ok + self.failed

    @property
    def previous(self) -> int:
        return self.previous_ok + self.previous_failed

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(self.total - self.previous - self.done, 0) / rate


def _trace_config(tally: Tally) -> aiohttp.TraceConfig:
    """Count every attempt's HTTP status (429s included) and connection failure."""
    import aiohttp

    async def on_end(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        tally.statuses[params.response.status] += 1

    async def on_exception(
        session: aiohttp.ClientSession,
        context: Any,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        tally.connection_errors += 1

    async def on_start(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        tally.attempts += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_exception)
    return trace


def _counting_session(tally: Tally, concurrency: int) -> aiohttp.ClientSession:
    """The client's own kind of session, plus tracing so the summary can count 429s."""
    from ._transport import create_session

    return create_session(concurrency, trace_configs=[_trace_config(tally)])


# -- progress -------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


class Progress(Protocol):
    """Where progress and mid-run warnings go."""

    interval: float

    def start(self, tally: Tally) -> None: ...

    def refresh(self, tally: Tally) -> None: ...

    def say(self, message: str) -> None: ...

    def stop(self, tally: Tally) -> None: ...


class NoProgress:
    """``--quiet``: warnings only."""

    interval = 3600.0

    def start(self, tally: Tally) -> None:
        pass

    def refresh(self, tally: Tally) -> None:
        pass

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def stop(self, tally: Tally) -> None:
        pass


class PlainProgress(NoProgress):
    """Not a terminal: one line every *interval* seconds, for logs."""

    def __init__(self, interval: float, label: str) -> None:
        self.interval = interval
        self._label = label

    def refresh(self, tally: Tally) -> None:
        done = tally.previous + tally.done
        if tally.total:
            share = f"{done}/{tally.total} rows ({100 * done / tally.total:.0f}%)"
        else:
            share = f"{done} rows"
        self.say(
            f"{self._label}: {share}, {tally.rate():.1f} rows/s, ok {tally.ok}, "
            f"failed {tally.failed}, eta {_duration(tally.eta())}"
        )


class RichProgress:
    """A terminal: a live bar with done/total, rate, ETA and ok/failed counts."""

    interval = 0.1

    def __init__(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as Bar

        self._console = Console(stderr=True, highlight=False)
        self._bar = Bar(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9}"),
            TextColumn("eta {task.fields[eta]:>6}"),
            TextColumn("[green]ok {task.fields[ok]}[/] [red]failed {task.fields[failed]}[/]"),
            console=self._console,
            refresh_per_second=10,
        )
        self._task = self._bar.add_task(label, total=None, rate="", eta="?", ok=0, failed=0)

    def start(self, tally: Tally) -> None:
        self._bar.start()
        self.refresh(tally)

    def refresh(self, tally: Tally) -> None:
        self._bar.update(
            self._task,
            completed=tally.previous + tally.done,
            total=tally.total,
            rate=f"{tally.rate():.1f}/s",
            eta=_duration(tally.eta()),
            ok=tally.ok,
            failed=tally.failed,
        )

    def say(self, message: str) -> None:
        self._console.print(message, markup=False)

    def stop(self, tally: Tally) -> None:
        self.refresh(tally)
        self._bar.stop()


def make_progress(quiet: bool, interval: float, label: str) -> Progress:
    if quiet:
        return NoProgress()
    if sys.stderr.isatty():
        try:
            return RichProgress(label)
        except ImportError:
            pass  # rich is the optional "cli" extra; plain lines work everywhere
    return PlainProgress(interval, label)


# -- the bulk job ---------------------------------------------------------------------------


@dataclass
class JobOptions:
    """What a bulk job needs besides its rows."""

    output: Path
    resume: bool = False
    retry_failed: bool = False
    overwrite: bool = False
    fsync: bool = False
    grace: float = 5.0
    label: str = "bulk"


class Job:
    """One bulk run: rows in, one output line per row out, counted and shown."""

    def __init__(
        self,
        client: AOPayClient,
        rows: Iterable[Row],
        tally: Tally,
        progress: Progress,
        options: JobOptions,
        ledger: Ledger,
        output: Output,
    ) -> None:
        self._client = client
        self._rows = rows
        self._tally = tally
        self._progress = progress
        self._options = options
        self._ledger = ledger
        self._output = output
        self._lines: dict[int, int] = {}  # bulk item index -> input line, for rows in flight
        self._fed = 0
        self.stopping = False  # Ctrl-C: take no new rows
        self.exhausted = False  # every input row was taken
        self.mismatch: int | None = None  # an input line OUTPUT holds another row for

    def feed(self) -> Iterator[CreditHistoryRequest]:
        """The requests for bulk: skips finished rows, writes bad rows, notes line numbers."""
        ledger = self._ledger
        for row in self._rows:
            if self.stopping:
                return
            state = ledger.state(row.line)
            if state != Ledger.ABSENT:
                if not ledger.matches(row.line, row.cibil_id):
                    self.mismatch = row.line
                    self.stopping = True
                    return
                continue
            problem = row.problem
            request = None
            if problem is None:
                try:
                    request = CreditHistoryRequest.coerce(
                        {"cibil_id": row.cibil_id, "client_order_id": row.client_order_id}
                    )
                except InvalidRequestError as exc:
                    problem = exc.message
            if request is None:
                self._bad_row(row, problem or "the row could not be read")
                continue
            self._lines[self._fed] = row.line
            self._fed += 1
            yield request
        self.exhausted = True

    def _bad_row(self, row: Row, problem: str) -> None:
        tally = self._tally
        tally.bad_rows += 1
        tally.failed += 1
        tally.errors["InvalidRequestError"] += 1
        message = f"line {row.line}: {problem}"
        self._output.write(
            {
                "line": row.line,
                "cibil_id": _clean(row.cibil_id),
                "client_order_id": _clean(row.client_order_id),
                "ok": False,
                "attempts": 0,
                "elapsed_ms": 0.0,
                "error": {
                    "type": "InvalidRequestError",
                    "message": message,
                    "status": None,
                    "code": None,
                },
            }
        )
        if tally.bad_rows <= MAX_ROW_WARNINGS:
            self._progress.say(f"skipped bad row: {message}")
        elif tally.bad_rows == MAX_ROW_WARNINGS + 1:
            self._progress.say("more bad rows: counted in the summary, listed in OUTPUT")

    def record(self, result: BulkResult) -> None:
        line = self._lines.pop(result.item_index)
        self._output.write(result_record(line, result))
        tally = self._tally
        if result.ok:
            tally.ok += 1
        else:
            tally.failed += 1
            tally.errors[type(result.error).__name__] += 1
        if result.attempts:
            tally.retries += result.attempts - 1
            tally.latency.add(result.elapsed)

    async def run(self) -> None:
        """Feed every row through the client's bulk fan-out, writing each outcome."""
        # aclosing: stop the workers now, not when the iterator is garbage-collected.
        async with contextlib.aclosing(self._client.bulk_credit_history(self.feed())) as results:
            async for result in results:
                self.record(result)

    @property
    def in_flight(self) -> int:
        return len(self._lines)


async def _ticker(progress: Progress, tally: Tally) -> None:
    while True:
        await asyncio.sleep(progress.interval)
        progress.refresh(tally)


async def run_job(
    client_factory: Callable[[aiohttp.ClientSession], AOPayClient],
    rows: Iterable[Row],
    options: JobOptions,
    progress: Progress,
    *,
    concurrency: int,
    count_rows: Callable[[], int] | None = None,
    resume_command: str | None = None,
) -> tuple[int, Tally]:
    """Run a bulk job to its end (or to Ctrl-C); print the summary; return the exit status."""
    tally = Tally()
    session = _counting_session(tally, concurrency)
    try:
        # The client first: missing credentials must stop us before OUTPUT is touched.
        client = client_factory(session)
        if options.resume:
            try:
                ledger, cut = load_ledger(options.output, retry_failed=options.retry_failed)
            except OSError as exc:  # a directory, no permission: a wrong -o, not a crash
                raise UsageError(
                    f"cannot resume from OUTPUT {str(options.output)!r}: {exc.strerror or exc}"
                ) from None
            if cut:
                progress.say(f"resume: cut off a partial last line ({cut} bytes) from OUTPUT")
        else:
            ledger = Ledger()
            out = options.output
            if not options.overwrite and out.exists() and out.stat().st_size > 0:
                raise UsageError(
                    f"OUTPUT {str(out)!r} already exists and is not empty; pass --resume to "
                    "continue that run, or --overwrite to start over"
                )
        output = Output(options.output, truncate=not options.resume, fsync=options.fsync)
    except BaseException:
        await session.close()
        raise
    tally.previous_ok, tally.previous_failed = ledger.ok, ledger.failed
    loop = asyncio.get_running_loop()
    job: Job | None = None
    runner: asyncio.Task[None] | None = None
    interrupted = False
    broken: OSError | None = None

    def interrupt() -> None:
        nonlocal interrupted
        if job is None or runner is None:
            return
        if not interrupted:
            interrupted = True
            job.stopping = True
            progress.say(
                f"interrupted: taking no new rows; waiting up to {options.grace:g}s for the "
                f"{job.in_flight} in flight (Ctrl-C again to stop now)"
            )
            loop.call_later(options.grace, stop_now)
        else:
            stop_now()

    def stop_now() -> None:
        # Once only (the grace timer and a second Ctrl-C both land here): a second cancel
        # would cut short the bulk pool's own wait for its cancelled workers.
        if job is not None and runner is not None and not runner.done() and not runner.cancelling():
            if job.in_flight:
                progress.say(
                    f"cancelled the {job.in_flight} rows still in flight; "
                    "--resume will do them again"
                )
            runner.cancel()

    handled: list[signal.Signals] = []
    try:
        async with client:
            job = Job(client, rows, tally, progress, options, ledger, output)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, interrupt)
                    handled.append(sig)
            counter = None
            if count_rows is not None:
                counter = asyncio.ensure_future(asyncio.to_thread(count_rows))
                counter.add_done_callback(lambda f: _set_total(tally, f))
            progress.start(tally)
            ticker = asyncio.create_task(_ticker(progress, tally))
            runner = asyncio.create_task(job.run())
            try:
                await runner
            except asyncio.CancelledError:
                if not interrupted:
                    raise
            except OSError as exc:
                # INPUT became unreadable or OUTPUT unwritable half-way: what was written
                # stands, and a resume picks up the rest.
                broken = exc
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
                if counter is not None and not counter.done():
                    counter.cancel()
                progress.stop(tally)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        output.close()
        await session.close()
    if job is not None and job.mismatch is not None:
        raise UsageError(
            f"OUTPUT holds a different row for input line {job.mismatch}: it was written "
            "from another INPUT; use a new OUTPUT (or --overwrite) for this one"
        )
    stopped_early = interrupted and job is not None and (not job.exhausted or job.in_flight > 0)
    print_summary(tally, options, interrupted=stopped_early or broken is not None)
    if broken is not None:
        progress.say(f"stopped: {type(broken).__name__}: {broken.strerror or broken}")
    if (stopped_early or broken is not None) and resume_command:
        print(f"To resume: {resume_command}", file=sys.stderr, flush=True)
    if broken is not None:
        return EXIT_FAILED, tally
    if stopped_early:
        return EXIT_INTERRUPTED, tally
    failed = tally.failed + tally.previous_failed
    return (EXIT_FAILED if failed else EXIT_OK), tally


def _set_total(tally: Tally, future: asyncio.Future[int]) -> None:
    if not future.cancelled() and future.exception() is None:
        tally.total = future.result()


def print_summary(tally: Tally, options: JobOptions, *, interrupted: bool) -> None:
    """Counts by outcome and error class, latency percentiles, retries, 429s; no customer data."""
    elapsed = time.monotonic() - tally.started
    out: list[str] = []
    state = "interrupted" if interrupted else "done"
    out.append(
        f"{options.label} {state}: {tally.done} rows in {elapsed:.1f}s ({tally.rate():.1f} rows/s)"
    )
    out.append(f"  ok        {tally.ok}")
    out.append(f"  failed    {tally.failed}")
    for name, n in tally.errors.most_common():
        out.append(f"    {name:<22}{n}")
    if tally.bad_rows:
        out.append(f"    (of which bad input rows, not sent: {tally.bad_rows})")
    if tally.previous:
        out.append(
            f"  skipped   {tally.previous} finished in an earlier run "
            f"({tally.previous_ok} ok, {tally.previous_failed} failed)"
        )
    lat = tally.latency
    out.append(
        f"  latency   p50 {_ms(lat.percentile(50))}, p95 {_ms(lat.percentile(95))}, "
        f"p99 {_ms(lat.percentile(99))}"
    )
    out.append(f"  attempts  {tally.attempts} ({tally.retries} retries)")
    out.append(f"  429s seen {tally.statuses.get(429, 0)}")
    other = {s: n for s, n in sorted(tally.statuses.items()) if s not in (200, 429)}
    if other or tally.connection_errors:
        parts = [f"{status}: {n}" for status, n in other.items()]
        if tally.connection_errors:
            parts.append(f"no response: {tally.connection_errors}")
        out.append(f"  other     {', '.join(parts)}")
    out.append(f"  output    {options.output}")
    print("\n".join(out), flush=True)


# -- subcommands ----------------------------------------------------------------------------


def _resume_command(prog: str, argv: Sequence[str]) -> str:
    args = [a for a in argv if a != "--overwrite"]
    if "--resume" not in args:
        args.append("--resume")
    command = shlex.join([*shlex.split(prog), *args])
    if "-" in args[1:]:
        command = f"<same input> | {command}"
    return command


def _bulk_setup(
    args: argparse.Namespace,
) -> tuple[Iterator[Row], Callable[[], None], JobOptions, Callable[[], int] | None]:
    """Check the files and open INPUT (before the loop's work starts: these are quick stats)."""
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pick one")
    output = Path(args.output)
    if args.input != "-" and output.exists() and Path(args.input).exists():
        with contextlib.suppress(OSError):
            if output.samefile(args.input):
                raise UsageError("OUTPUT is the same file as INPUT; give another -o")
    rows, close, fmt = _open_input(args.input, args.format)
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
        count = functools.partial(_count_rows, args.input, fmt)
    return rows, close, options, count


async def _bulk(args: argparse.Namespace, prog: str, argv: Sequence[str]) -> int:
    rows, close, options, count = _bulk_setup(args)
    progress = make_progress(args.quiet, args.progress_interval, "bulk")
    try:
        code, _ = await run_job(
            lambda session: _make_client(args, session=session),
            rows,
            options,
            progress,
            concurrency=args.concurrency,
            count_rows=count,
            resume_command=_resume_command(prog, argv),
        )
    finally:
        close()
    return code


async def _get(args: argparse.Namespace) -> int:
    async with _make_client(args) as client:
        try:
            history = await client.get_credit_history(
                cibil_id=args.cibil_id, client_order_id=args.client_order_id
            )
        except InvalidRequestError:
            raise
        except AOPayError as exc:
            print(_describe_error(exc), file=sys.stderr)
            return EXIT_FAILED
    sys.stdout.buffer.write(msgspec.json.format(_ENCODE(history), indent=2) + b"\n")
    sys.stdout.flush()
    return EXIT_OK


def _describe_error(exc: AOPayError) -> str:
    parts = [f"{type(exc).__name__}: {exc.message}"]
    if isinstance(exc, APIStatusError):
        parts.append(f"HTTP {exc.status_code}")
    if exc.attempts:
        parts.append(f"{exc.attempts} attempt{'s' if exc.attempts != 1 else ''}")
    if exc.client_order_id:
        parts.append(f"client_order_id {exc.client_order_id}")
    return "error: " + parts[0] + (f" ({', '.join(parts[1:])})" if parts[1:] else "")


#: The demo's server-side faults: a few percent, so retries show in the summary.
DEMO_FAULTS: Final = {"503": 0.015, "500": 0.005, "502": 0.005, "reset": 0.005, "truncate": 0.002}


def _demo_rows(n: int, seed: int) -> Iterator[Row]:
    """A synthetic customer list as if read from a CSV (header on line 1), with 2 bad rows."""
    bad = {n // 3: "", (2 * n) // 3: "X" * 80} if n >= 10 else {}
    for i in range(n):
        line = i + 2
        if i in bad:
            yield Row(line, bad[i])
        else:
            yield Row(line, f"DEMO{seed:02d}{i:07d}")


def _absolute(path: Path) -> str:
    return os.path.abspath(path)


async def _demo(args: argparse.Namespace) -> int:
    from .testing import DEFAULT_COMPANY_CODE, DEFAULT_REGISTRATION_ID, SandboxServer

    output = Path(args.output)
    server = SandboxServer(
        rate_limit=args.server_rate,
        burst=max(1, int(args.server_rate / 10)) if args.server_rate else 1,
        latency=(0.002, 0.03),
        faults=DEMO_FAULTS if args.faults else None,
        seed=args.seed,
        track_ids=False,
        slow_seconds=0.5,
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
        args.base_url = server.url
        options = JobOptions(output=output, overwrite=True, grace=args.grace, label="demo")
        code, _ = await run_job(
            lambda session: _make_client(
                args,
                company_code=DEFAULT_COMPANY_CODE,
                registration_id=DEFAULT_REGISTRATION_ID,
                session=session,
            ),
            _demo_rows(args.n, args.seed),
            options,
            progress,
            concurrency=args.concurrency,
            count_rows=lambda: args.n,
        )
    print(f"Results: {_absolute(output)} (one JSON line per customer)")
    print(
        "Next: run your own list with `aopay-async bulk customers.csv -o results.jsonl` "
        "(AOPAY_COMPANY_CODE and AOPAY_REGISTRATION_ID set)"
    )
    # The demo's bad rows are deliberate: it succeeded if it ran to the end.
    return code if code == EXIT_INTERRUPTED else EXIT_OK


# -- parser and main ------------------------------------------------------------------------


def _build_parser(prog: str, with_sandbox: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Look up AOPay credit histories: one at a time, or a whole file of them.",
        # Flags are spelled out in full: the printed resume command repeats argv, and an
        # abbreviation (--over for --overwrite) would survive into it and contradict --resume.
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    get = commands.add_parser(
        "get",
        allow_abbrev=False,
        help="look up one customer, JSON to stdout",
        description="Look up one customer's credit history and print it as JSON.",
    )
    get.add_argument("--cibil-id", required=True, metavar="ID")
    get.add_argument("--client-order-id", default=None, metavar="ID")
    _add_client_flags(get)
    _add_loop_flag(get)

    bulk = commands.add_parser(
        "bulk",
        allow_abbrev=False,
        help="look up every row of a CSV or JSONL file",
        description=(
            "Look up every row of INPUT, writing one JSON line per row to OUTPUT as it "
            "finishes. Exit status: 0 all rows ok, 1 some failed, 2 bad usage, "
            "130 interrupted."
        ),
    )
    bulk.add_argument(
        "input",
        metavar="INPUT",
        help="CSV with a cibil_id column (optional client_order_id), or JSONL; - for stdin",
    )
    bulk.add_argument("-o", "--output", required=True, metavar="OUTPUT.jsonl")
    bulk.add_argument(
        "--format",
        choices=("auto", "csv", "jsonl"),
        default="auto",
        help="INPUT's format (default: by suffix, else by its first line)",
    )
    bulk.add_argument(
        "--resume", action="store_true", help="skip rows OUTPUT already holds an outcome for"
    )
    bulk.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume (implied), re-do the rows that failed instead of skipping them",
    )
    bulk.add_argument("--overwrite", action="store_true", help="start OUTPUT afresh if it exists")
    bulk.add_argument(
        "--fsync",
        action="store_true",
        help="fsync after every line (survives power loss, not just a killed process; slower)",
    )
    _add_run_flags(bulk)
    _add_client_flags(bulk)
    _add_loop_flag(bulk)

    demo = commands.add_parser(
        "demo",
        allow_abbrev=False,
        help="run a bulk job against a local sandbox, to see it work",
        description=(
            "Start the sandbox in-process (with a server-side rate limit and a few percent of "
            "injected faults), generate a synthetic customer list, run the bulk job with "
            "progress, print the summary. Overwrites OUTPUT."
        ),
    )
    demo.add_argument("--n", type=_count(1), default=2000, help="customers (default 2000)")
    demo.add_argument("-o", "--output", default="demo-output.jsonl", metavar="OUTPUT.jsonl")
    demo.add_argument(
        "--server-rate",
        type=_number(1e-3, allow_none=True),
        # The same rate as the client's: the exact limiter then meets a server that enforces
        # it and sees no 429 (try --rate 250 to watch the client cope with being over it).
        default=200.0,
        metavar="R",
        help="the sandbox's own rate limit, requests a second; 'none' for no limit (default 200)",
    )
    demo.add_argument("--no-faults", dest="faults", action="store_false", help="inject no faults")
    demo.add_argument("--seed", type=int, default=0, help="seed for faults and ids (default 0)")
    _add_run_flags(demo)
    _add_client_flags(demo, rate=200.0)
    demo.set_defaults(timeout=5.0, deadline=30.0)
    _add_loop_flag(demo)

    sandbox = commands.add_parser(
        "sandbox",
        allow_abbrev=False,
        help="run the local fake AOPay server",
        description="Run the local fake AOPay GetCreditHistory server until Ctrl-C.",
    )
    if with_sandbox:
        from .testing._serve import add_arguments

        add_arguments(sandbox)
    _add_loop_flag(sandbox)
    return parser


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.add_argument(
        "--progress-interval",
        type=_number(0.1),
        default=5.0,
        metavar="S",
        help="seconds between progress lines when stderr is not a terminal (default 5)",
    )
    parser.add_argument(
        "--grace",
        type=_number(0.0),
        default=5.0,
        metavar="S",
        help="after Ctrl-C, seconds to let rows in flight finish before cancelling (default 5)",
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "aopay-async") -> int:
    """Run the command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    try:
        parser = _build_parser(prog, with_sandbox=command == "sandbox")
    except ImportError as exc:  # pragma: no cover - the sandbox needs only core deps
        print(f"{prog}: error: the sandbox cannot be loaded: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    sub = f"{prog} {args.command}"
    try:
        if args.command == "get":
            return _run(_get(args), args.loop)
        if args.command == "bulk":
            return _run(_bulk(args, prog, args_list), args.loop)
        if args.command == "demo":
            return _run(_demo(args), args.loop)
        from .testing._serve import serve

        return _run(serve(args), args.loop)
    except (UsageError, InvalidRequestError) as exc:
        message = exc.message if isinstance(exc, AOPayError) else str(exc)
        print(f"{sub}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{sub}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
