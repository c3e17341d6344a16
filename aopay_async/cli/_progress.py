# Progress and mid-run warnings on stderr: a rich live bar on a terminal (rich is the
# optional "cli" extra), a plain line every --progress-interval seconds otherwise (for
# logs), nothing but warnings with --quiet. It must never print customer data (line
# numbers and counts only) and never write to stdout, which belongs to the summary.
"""Progress displays: :func:`make_progress` and the three kinds it picks from."""

from __future__ import annotations

import asyncio
import math
import sys
from typing import Protocol

from ._pauses import paused_line
from ._summary import Tally

__all__ = [
    "NoProgress",
    "PlainProgress",
    "Progress",
    "RichProgress",
    "format_duration",
    "make_progress",
    "paused_line",
    "tick",
]


def format_duration(seconds: float | None) -> str:
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
        paused = tally.paused()
        if paused is not None:
            self.say(f"{self._label}: {paused}; {share}, ok {tally.ok}")
            return
        self.say(
            f"{self._label}: {share}, {tally.rate():.1f} rows/s, ok {tally.ok}, "
            f"failed {tally.failed}, eta {format_duration(tally.eta())}"
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
            TextColumn("[yellow]{task.fields[status]}[/]"),
            console=self._console,
            refresh_per_second=10,
        )
        self._task = self._bar.add_task(
            label, total=None, rate="", eta="?", ok=0, failed=0, status=""
        )

    def start(self, tally: Tally) -> None:
        self._bar.start()
        self.refresh(tally)

    def refresh(self, tally: Tally) -> None:
        self._bar.update(
            self._task,
            completed=tally.previous + tally.done,
            total=tally.total,
            rate=f"{tally.rate():.1f}/s",
            eta=format_duration(tally.eta()),
            ok=tally.ok,
            failed=tally.failed,
            status=tally.paused() or "",
        )

    def say(self, message: str) -> None:
        self._console.print(message, markup=False)

    def stop(self, tally: Tally) -> None:
        self.refresh(tally)
        self._bar.stop()


def make_progress(quiet: bool, interval: float, label: str) -> Progress:
    """None for *quiet*; the rich bar on a terminal (when installed); else plain lines."""
    if quiet:
        return NoProgress()
    if sys.stderr.isatty():
        try:
            return RichProgress(label)
        except ImportError:
            pass  # rich is the optional "cli" extra; plain lines work everywhere
    return PlainProgress(interval, label)


async def tick(progress: Progress, tally: Tally) -> None:
    """Refresh *progress* every ``progress.interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(progress.interval)
        progress.refresh(tally)
