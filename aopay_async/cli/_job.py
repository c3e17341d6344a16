# One bulk job: rows in, exactly one output line per row out, counted, shown, and stopped
# cleanly on Ctrl-C. It is a thin shell over the client's bulk fan-out: it never retries,
# limits or schedules anything itself (but for the rows below that waited out a Redis
# outage, which it feeds again). It must never lose or repeat a row: a row is
# written when its outcome is known (bad rows at once, sent rows as they finish), rows
# the ledger already holds are skipped, and an interrupted run leaves the rest to
# --resume. Ctrl-C: the first stops taking rows and gives those in flight --grace seconds;
# the second (or the end of the grace) cancels them, and they are not written. With a
# HeldLimiter (a shared limiter whose Redis outages rows wait out), a row whose deadline
# passed while it waited for the limiter, nothing sent, is not written either: it is fed
# again, so a Redis outage longer than --deadline costs time, never a row.
"""The bulk job: :func:`run_job`, :class:`Job`, :class:`JobOptions`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from aopay_async._errors import APITimeoutError, InvalidRequestError, RateLimiterError
from aopay_async._models import BulkResult, CreditHistoryRequest

from ._gate import StopGate
from ._hold import HeldLimiter
from ._input import Row
from ._ledger import Ledger, open_ledger
from ._metrics import serve_metrics
from ._output import BAD_ROW_ERROR, STDOUT, Output, bad_row_record, result_record
from ._pauses import Outage
from ._progress import Progress, tick
from ._seen import FirstLines
from ._status import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from ._summary import Tally, print_summary

if TYPE_CHECKING:
    from aopay_async._client import AOPayClient
    from aopay_async._events import EventHook

__all__ = [
    "MAX_ROW_WARNINGS",
    "RESEND_MARGIN",
    "Job",
    "JobOptions",
    "Outcome",
    "Verdict",
    "judge",
    "run_job",
    "waited_out",
]

#: How many bad-row warnings are printed before the rest are only counted.
MAX_ROW_WARNINGS: Final = 20
#: Seconds of slack when asking whether a failed row's life overlapped a limiter outage
#: (the row's elapsed time and the loop clock are read at slightly different moments).
RESEND_MARGIN: Final = 1.0


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one input row: send it, write it as bad, skip it, or stop."""

    request: CreditHistoryRequest | None = None  # send this
    problem: str | None = None  # a bad row: write it as failed, never send it
    mismatch: bool = False  # OUTPUT holds another row for this line: stop the job
    # none of the three: OUTPUT already holds this row's outcome; skip it


class FirstLineOf(Protocol):
    """What :func:`judge` reads of the ids taken so far (a :class:`FirstLines`, or a dict)."""

    def get(self, order_id: str, /) -> int | None: ...


def judge(row: Row, ledger: Ledger, order_lines: FirstLineOf) -> Verdict:
    """The verdict on *row*, given what OUTPUT already holds (a pure decision).

    *order_lines* maps each ``client_order_id`` taken so far to its first input line: a
    second row with the same one is a bad row, since reusing an idempotency key for a
    second lookup is never what the user meant (the API would answer the first again, or
    refuse).
    """
    if ledger.state(row.line) != Ledger.ABSENT:
        return Verdict(mismatch=not ledger.matches(row.line, row.cibil_id))
    if row.problem is not None:
        return Verdict(problem=row.problem or "the row could not be read")
    try:
        request = CreditHistoryRequest.coerce(
            {"cibil_id": row.cibil_id, "client_order_id": row.client_order_id}
        )
    except InvalidRequestError as exc:
        return Verdict(problem=exc.message or "the row could not be read")
    order_id = request.client_order_id
    first = order_lines.get(order_id) if order_id else None
    if first is not None and first != row.line:
        return Verdict(problem=f"duplicate client_order_id of line {first}")
    return Verdict(request=request)


def waited_out(result: BulkResult, limiter: Outage, now: float) -> bool:
    """Did *result* fail only because the shared limiter's Redis was down (a pure decision)?

    Yes when nothing was sent (no attempt), the failure is the limiter's or the deadline's
    (its wait outlasted --deadline), and the limiter was down at some moment of the row's
    life (from ``now - elapsed``, with :data:`RESEND_MARGIN`). Such a row is sent again.
    """
    return (
        not result.ok
        and result.attempts == 0
        and isinstance(result.error, APITimeoutError | RateLimiterError)
        and limiter.overlaps(now - result.elapsed - RESEND_MARGIN)
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job's feed ended, read once when the job is over."""

    exhausted: bool  # every input row was taken
    mismatch: int | None  # the input line OUTPUT holds another row for, if any
    in_flight: int  # rows taken whose outcome was never written (sent, or to send again)


class Job:
    """One bulk run: rows in, one output line per row out, counted and shown."""

    def __init__(
        self,
        client: AOPayClient,
        rows: Iterable[Row],
        tally: Tally,
        progress: Progress,
        ledger: Ledger,
        output: Output,
        *,
        resend: bool = False,
    ) -> None:
        """*rows* are read lazily as the client's workers ask for them; with *resend*, rows
        that failed while the shared limiter was down (:func:`waited_out`) are fed again."""
        self._client = client
        self._rows = rows
        self._tally = tally
        self._progress = progress
        self._ledger = ledger
        self._output = output
        self._lines: dict[int, int] = {}  # bulk item index -> input line, for rows in flight
        self._fed = 0  # bulk item indexes handed out
        self._resend = resend
        self._again: deque[tuple[int, CreditHistoryRequest]] = deque()  # (line, request)
        self._wake = asyncio.Event()  # set when a row finishes or the job stops
        self._stopping = False
        self._exhausted = False
        self._mismatch: int | None = None
        # client_order_id -> its first input line: ~45 B a row that carries one (a dict of
        # the strings took ~120-150 B; see _seen.py).
        self._order_lines = FirstLines()

    def stop(self) -> None:
        """Take no new rows (Ctrl-C); rows already sent still finish and are written."""
        self._stopping = True
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._lines)

    @property
    def to_resend(self) -> int:
        """Rows waiting to be fed again (after Ctrl-C: never sent; --resume does them)."""
        return len(self._again)

    def outcome(self) -> Outcome:
        return Outcome(self._exhausted, self._mismatch, len(self._lines) + len(self._again))

    def requests(self) -> Iterable[CreditHistoryRequest] | AsyncGenerator[CreditHistoryRequest]:
        """What bulk pulls: :meth:`feed`, or with *resend* the feed that also sends rows again."""
        return self._feed_resending() if self._resend else self.feed()

    def feed(self) -> Iterator[CreditHistoryRequest]:
        """The requests for bulk: skips finished rows, writes bad rows, notes line numbers."""
        for row in self._rows:
            if self._stopping:
                return
            verdict = judge(row, self._ledger, self._order_lines)
            if verdict.mismatch:
                self._mismatch = row.line
                return
            self._note_order_id(row, verdict)
            if verdict.problem is not None:
                self._bad_row(row, verdict.problem)
            elif verdict.request is not None:
                yield self._taken(row.line, verdict.request)
        self._exhausted = True

    def _taken(self, line: int, request: CreditHistoryRequest) -> CreditHistoryRequest:
        self._lines[self._fed] = line
        self._fed += 1
        return request

    async def _feed_resending(self) -> AsyncGenerator[CreditHistoryRequest]:
        """:meth:`feed`, with the rows to send again first; once INPUT is done, it lasts
        until no row is in flight (one may yet come back to be sent again)."""
        for request in self.feed():
            while self._again and not self._stopping:
                yield self._taken(*self._again.popleft())
            yield request
        while not self._stopping and self._mismatch is None and (self._again or self._lines):
            if self._again:
                yield self._taken(*self._again.popleft())
            else:
                self._wake.clear()
                await self._wake.wait()

    def _note_order_id(self, row: Row, verdict: Verdict) -> None:
        # Rows finished in an earlier run count too, so a resumed run judges alike.
        order_id = verdict.request.client_order_id if verdict.request else row.client_order_id
        if isinstance(order_id, str) and order_id:
            self._order_lines.setdefault(order_id, row.line)

    def _bad_row(self, row: Row, problem: str) -> None:
        tally = self._tally
        tally.bad_rows += 1
        tally.failed += 1
        tally.errors[BAD_ROW_ERROR] += 1
        message = f"line {row.line}: {problem}"
        self._output.write(bad_row_record(row.line, row.cibil_id, row.client_order_id, message))
        if tally.bad_rows <= MAX_ROW_WARNINGS:
            self._progress.say(f"skipped bad row: {message}")
        elif tally.bad_rows == MAX_ROW_WARNINGS + 1:
            self._progress.say("more bad rows: counted in the summary, listed in OUTPUT")

    def record(self, result: BulkResult) -> None:
        """Write one finished row's line and count it.

        After Ctrl-C, a row that failed before any attempt was sent (it timed out waiting
        for a token or a slot) is not written: it was not done, and --resume does it.
        """
        line = self._lines.pop(result.item_index)
        self._wake.set()
        tally = self._tally
        if self._stopping and not result.ok and result.attempts == 0:
            tally.unsent += 1
            return
        if self._resend and waited_out(
            result, tally.pauses.limiter, asyncio.get_running_loop().time()
        ):
            self._again.append((line, result.request))
            tally.resent += 1
            return
        self._output.write(result_record(line, result))
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
        requests = self.requests()
        async with contextlib.AsyncExitStack() as stack:
            if isinstance(requests, AsyncGenerator):
                await stack.enter_async_context(contextlib.aclosing(requests))
            # aclosing: stop the workers now, not when the iterator is garbage-collected.
            results = await stack.enter_async_context(
                contextlib.aclosing(self._client.bulk_credit_history(requests))
            )
            async for result in results:
                self.record(result)


class Interrupts:
    """SIGINT/SIGTERM during a job: the first stops the feed, the second cancels the rest."""

    #: After the first Ctrl-C, how often to check whether anything is still on the wire.
    POLL: Final = 0.02

    def __init__(self, progress: Progress, grace: float, gate: StopGate) -> None:
        self._progress = progress
        self._grace = grace
        self._gate = gate
        self._job: Job | None = None
        self._runner: asyncio.Task[None] | None = None
        self._handled: list[signal.Signals] = []
        self.interrupted = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal)
                self._handled.append(sig)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._handled:
            loop.remove_signal_handler(sig)
        self._handled.clear()

    def watch(self, job: Job, runner: asyncio.Task[None]) -> None:
        self._job, self._runner = job, runner

    def _on_signal(self) -> None:
        job = self._job
        if job is None or self._runner is None:
            return
        if self.interrupted:
            self._stop_now()
            return
        self.interrupted = True
        job.stop()
        self._gate.close()
        on_wire = max(job.in_flight - self._gate.waiting, 0)
        self._progress.say(
            f"interrupted: sending nothing more; waiting up to {self._grace:g}s for the "
            f"{on_wire} requests on the wire (Ctrl-C again to stop now)"
        )
        loop = asyncio.get_running_loop()
        loop.call_later(self._grace, self._stop_now)
        loop.call_soon(self._poll)

    def _poll(self) -> None:
        # Once every row in flight waits at the closed gate, nothing more can come back:
        # stop now rather than sit out the grace.
        job, runner = self._job, self._runner
        if job is None or runner is None or runner.done():
            return
        if self._gate.waiting >= job.in_flight:
            self._stop_now()
        else:
            asyncio.get_running_loop().call_later(self.POLL, self._poll)

    def _stop_now(self) -> None:
        # Once only (the grace timer and a second Ctrl-C both land here): a second cancel
        # would cut short the bulk pool's own wait for its cancelled workers.
        job, runner = self._job, self._runner
        if job is None or runner is None or runner.done() or runner.cancelling():
            return
        waiting = min(self._gate.waiting, job.in_flight)
        if job.in_flight - waiting:
            self._progress.say(
                f"cancelled the {job.in_flight - waiting} rows still on the wire; "
                "--resume will do them again"
            )
        if waiting:
            self._progress.say(f"{waiting} rows were not sent; --resume will do them")
        runner.cancel()


async def run_job(
    client_factory: Callable[..., AOPayClient],
    rows: Iterable[Row],
    options: JobOptions,
    progress: Progress,
    *,
    concurrency: int,
    count_rows: Callable[[], int] | None = None,
    resume_command: str | None = None,
    metrics: tuple[str, int] | None = None,
    hold: HeldLimiter | None = None,
    event_hooks: Sequence[EventHook] = (),
) -> tuple[int, Tally]:
    """Run a bulk job to its end (or to Ctrl-C); print the summary; return the exit status.

    *client_factory* is called with ``gate=``, ``event_hooks=`` and ``meter_provider=``
    (the latter None unless *metrics*, ``(host, port)``, asks for a Prometheus endpoint).
    *hold*, the client's limiter when it waits out Redis outages, reports them to the
    progress and the summary, and rows it held past their deadline are sent again.
    *event_hooks* go to the client after the tally's own.
    """
    tally = Tally()
    if hold is not None:
        hold.on_change = _limiter_changed(tally, progress)
    gate = StopGate()
    meter_provider, stop_metrics = serve_metrics(metrics, progress.say)
    try:
        # The client first: missing credentials must stop us before OUTPUT is touched.
        client = client_factory(
            gate=gate, event_hooks=[tally.on_event, *event_hooks], meter_provider=meter_provider
        )
        ledger = _starting_ledger(options, progress)
        output = Output(options.output, truncate=not options.resume, fsync=options.fsync)
    except BaseException:
        stop_metrics()
        raise
    tally.previous_ok, tally.previous_failed = ledger.ok, ledger.failed
    interrupts = Interrupts(progress, options.grace, gate)
    try:
        async with client:
            job = Job(client, rows, tally, progress, ledger, output, resend=hold is not None)
            interrupts.install()
            broken = await _drive(job, interrupts, tally, progress, count_rows)
            tally.unsent += job.to_resend
    finally:
        interrupts.remove()
        output.close()
        stop_metrics()
    code = _finish(job.outcome(), interrupts.interrupted, broken, tally, options, progress)
    if resume_command and (code == EXIT_INTERRUPTED or broken is not None):
        print(f"To resume: {resume_command}", file=sys.stderr, flush=True)
    return code, tally


def _limiter_changed(tally: Tally, progress: Progress) -> Callable[[bool, str], None]:
    """HeldLimiter's hook: count the outage, and say when it begins and ends."""

    def changed(down: bool, reason: str) -> None:
        tally.limiter_changed(down, reason)
        if down:
            progress.say(
                f"paused: rate limiter unavailable (Redis: {reason}); rows wait for it, "
                "none is sent"
            )
        else:
            progress.say(f"rate limiter back after {tally.pauses.limiter.last:.0f}s: rows go on")

    return changed


def _starting_ledger(options: JobOptions, progress: Progress) -> Ledger:
    ledger, cut = open_ledger(
        options.output,
        resume=options.resume,
        retry_failed=options.retry_failed,
        overwrite=options.overwrite,
    )
    if cut:
        progress.say(f"resume: cut off a partial last line ({cut} bytes) from OUTPUT")
    return ledger


async def _drive(
    job: Job,
    interrupts: Interrupts,
    tally: Tally,
    progress: Progress,
    count_rows: Callable[[], int] | None,
) -> OSError | None:
    """Run *job* with progress until it ends or is interrupted; an OSError that broke it."""
    counter = None
    if count_rows is not None:
        counter = asyncio.ensure_future(asyncio.to_thread(count_rows))
        counter.add_done_callback(lambda f: _set_total(tally, f))
    progress.start(tally)
    ticker = asyncio.create_task(tick(progress, tally))
    runner = asyncio.create_task(job.run())
    interrupts.watch(job, runner)
    try:
        await runner
    except asyncio.CancelledError:
        if not interrupts.interrupted:
            raise
    except OSError as exc:
        # INPUT became unreadable or OUTPUT unwritable half-way: what was written stands,
        # and a resume picks up the rest.
        return exc
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        if counter is not None and not counter.done():
            counter.cancel()
        progress.stop(tally)
    return None


def _set_total(tally: Tally, future: asyncio.Future[int]) -> None:
    if not future.cancelled() and future.exception() is None:
        tally.total = future.result()


def _finish(
    outcome: Outcome,
    interrupted: bool,
    broken: OSError | None,
    tally: Tally,
    options: JobOptions,
    progress: Progress,
) -> int:
    """Print the summary; the exit status of a job that ended with *outcome*."""
    if outcome.mismatch is not None:
        raise UsageError(
            f"OUTPUT holds a different row for input line {outcome.mismatch}: it was written "
            "from another INPUT; use a new OUTPUT (or --overwrite) for this one"
        )
    stopped_early = interrupted and (
        not outcome.exhausted or outcome.in_flight > 0 or tally.unsent > 0
    )
    print_summary(
        tally,
        options.label,
        options.output,
        interrupted=stopped_early or broken is not None,
        stream=sys.stderr if str(options.output) == STDOUT else sys.stdout,
    )
    if broken is not None:
        progress.say(f"stopped: {type(broken).__name__}: {broken.strerror or broken}")
        return EXIT_FAILED
    if stopped_early:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if tally.failed + tally.previous_failed else EXIT_OK
