"""Small helpers shared by the benchmarks: summaries of repeated runs, and formatting."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TypedDict

__all__ = ["Summary", "fmt_summary", "percentile", "summarize"]


class Summary(TypedDict):
    """min / median / max over repeated runs, and how many runs there were."""

    min: float
    median: float
    max: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """The min, median and max of *values* (at least one)."""
    if not values:
        raise ValueError("no values to summarize")
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }


def fmt_summary(summary: Summary, spec: str = ".3g") -> str:
    """``median (min–max)`` with *spec* for each number."""
    return f"{summary['median']:{spec}} ({summary['min']:{spec}}–{summary['max']:{spec}})"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0–100) of already sorted values, nearest-rank."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]
