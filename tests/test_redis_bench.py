"""Smoke of benchmarks/bench_fleet.py's pure parts: the log analysis and the relay's schedule.

The benchmark itself needs root and network namespaces; it is run by hand (see the README's
"Fleet" section for its figures), never by CI.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.bench_fleet import analyse_log, max_in_window, release_at


def test_analyse_log_counts_what_the_api_saw() -> None:
    """Rejections, the accepted rate as a share of the rate, and the busiest second."""
    lines = [f"{1000 + i * 0.02:.3f} 200" for i in range(101)]  # 50/s for 2 s
    lines += ["1000.005 429", "1000.006 429", "garbage", ""]
    figures = analyse_log(lines, rate=50.0, burst=1)
    assert figures["requests"] == 103
    assert figures["accepted"] == 101
    assert figures["rejected"] == 2
    assert figures["achieved_share"] == pytest.approx(1.0)
    assert figures["max_1s_window_accepted"] == 51
    assert figures["max_1s_window"] == 53
    assert figures["bound_1s"] == 51


@pytest.mark.parametrize(
    ("times", "width", "expected"),
    [([], 1.0, 0), ([0.0], 1.0, 1), ([0.0, 1.0], 1.0, 2), ([0.0, 1.001], 1.0, 1)],
)
def test_max_in_window_is_closed(times: list[float], width: float, expected: int) -> None:
    """A window includes both ends."""
    assert max_in_window(times, width) == expected


@given(
    arrivals=st.lists(st.floats(0, 0.1), min_size=1, max_size=50),
    draws=st.lists(st.floats(0, 0.999), min_size=50, max_size=50),
)
def test_relay_keeps_order_and_the_delay(arrivals: list[float], draws: list[float]) -> None:
    """Each chunk leaves no sooner than delay - jitter after it came, and never before the
    chunk ahead of it."""
    arrivals.sort()
    last = 0.0
    for now, u in zip(arrivals, draws, strict=False):
        sent = release_at(now, last, 0.002, 0.001, u)
        assert sent >= last
        assert sent >= now + 0.001 - 1e-12
        last = sent
