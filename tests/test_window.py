"""The sliding window's counting: tables of cases and a reference model, no event loop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aopay_async._window import SLICES, SlidingWindow


def _window_with(events: list[tuple[float, str]], seconds: float = 10.0) -> SlidingWindow:
    """A window of *seconds* after counting *events* (time, "a" | "b" | "ab") in order."""
    window = SlidingWindow(seconds)
    for now, kind in events:
        {"a": window.add_a, "b": window.add_b, "ab": window.add_ab}[kind](now)
    return window


@pytest.mark.parametrize(
    ("events", "now", "totals"),
    [
        # nothing counted
        ([], 0.0, (0, 0)),
        ([], 1e9, (0, 0)),
        # each kind counts where it should
        ([(0.0, "a")], 0.0, (1, 0)),
        ([(0.0, "b")], 0.0, (0, 1)),
        ([(0.0, "ab")], 0.0, (1, 1)),
        ([(0.0, "a"), (0.5, "a"), (0.9, "b"), (0.9, "ab")], 0.9, (3, 2)),
        # 10 s window, 1 s slices: counted at 0.5 (slice 0), expired when slice 10 begins
        ([(0.5, "ab")], 9.99, (1, 1)),
        ([(0.5, "ab")], 10.0, (0, 0)),
        # an add exactly at a slice's end lands in the next slice, and stays when the first goes
        ([(0.5, "a"), (1.0, "a")], 10.0, (1, 0)),
        ([(0.5, "b"), (1.0, "b")], 10.0, (0, 1)),
        ([(0.5, "ab"), (1.0, "ab")], 10.0, (1, 1)),
        # counted at 9.5 (slice 9): still in at 18.9, gone at 19.0
        ([(9.5, "a")], 18.99, (1, 0)),
        ([(9.5, "a")], 19.0, (0, 0)),
        # only the slices stepped over expire: slice 2 goes at 12, slice 5 stays
        ([(2.0, "a"), (5.0, "b")], 12.0, (0, 1)),
        ([(2.0, "a"), (5.0, "b")], 14.99, (0, 1)),
        ([(2.0, "a"), (5.0, "b")], 15.0, (0, 0)),
        # a long idle clears everything at once
        ([(1.0, "a"), (2.0, "b"), (3.0, "ab")], 1000.0, (0, 0)),
        # exactly one window's gap from the newest slice clears everything too
        ([(3.0, "ab")], 13.0, (0, 0)),
        # a time earlier than the newest slice counts in the newest slice
        ([(5.0, "a"), (1.0, "a")], 14.99, (2, 0)),
        ([(5.0, "a"), (1.0, "a")], 15.0, (0, 0)),
        # negative monotonic times are valid (slice numbers below zero)
        ([(-3.5, "a")], -3.5, (1, 0)),
        ([(-3.5, "a")], 5.99, (1, 0)),
        ([(-3.5, "a")], 6.0, (0, 0)),
    ],
)
def test_totals_count_the_last_slices(
    events: list[tuple[float, str]], now: float, totals: tuple[int, int]
) -> None:
    """Events count in their slice and leave the totals when the ring comes round to it."""
    assert _window_with(events).totals(now) == totals


@pytest.mark.parametrize(
    ("seconds", "first", "still", "gone"),
    [
        (10.0, 0.0, 9.99, 10.0),
        (2.5, 0.0, 2.49, 2.5),  # 0.25 s slices
        (1.25, 0.4, 1.624, 1.625),  # slice 3 of 0.125 s: gone when slice 13 begins
        (60.0, 59.0, 113.99, 114.0),  # 6 s slices: slice 9 goes when slice 19 begins
    ],
)
def test_the_slice_width_is_the_window_over_slices(
    seconds: float, first: float, still: float, gone: float
) -> None:
    """The window length sets the slice width: a count expires ``seconds`` after its slice."""
    window = _window_with([(first, "a")], seconds)
    assert window.totals(still) == (1, 0)
    assert window.totals(gone) == (0, 0)


def test_advance_returns_the_ring_index_of_the_slice() -> None:
    """``advance`` names the slice's place in the ring: its number modulo SLICES."""
    window = SlidingWindow(10.0)
    assert [window.advance(t) for t in (0.0, 0.5, 1.0, 9.0, 10.0, 23.5)] == [0, 0, 1, 9, 0, 3]
    assert SLICES == 10


class _Counting(SlidingWindow):
    """A window that counts its calls to ``advance``."""

    __slots__ = ("advances",)

    def __init__(self, seconds: float) -> None:
        self.advances = 0
        super().__init__(seconds)

    def advance(self, now: float) -> int:
        self.advances += 1
        return super().advance(now)


@pytest.mark.parametrize("kind", ["a", "b", "ab"])
def test_adds_within_the_current_slice_take_the_fast_path(kind: str) -> None:
    """Before the current slice ends an add costs one comparison, no ``advance`` call (both
    users add on every call's fast path); at the slice's end exactly it advances again."""
    window = _Counting(10.0)
    add = {"a": window.add_a, "b": window.add_b, "ab": window.add_ab}[kind]
    add(0.0)
    assert window.advances == 1
    for now in (0.0, 0.5, 0.99):
        add(now)
    assert window.advances == 1
    add(1.0)
    assert window.advances == 2
    add(1.5)
    assert window.advances == 2


def test_reset_forgets_everything() -> None:
    """After ``reset`` the window is empty, and counts again from the time it is next given."""
    window = _window_with([(1.0, "ab"), (2.0, "a"), (3.0, "b")])
    window.reset()
    assert (window.a, window.b) == (0, 0)
    assert window.totals(3.0) == (0, 0)
    window.add_a(3.0)
    assert window.totals(12.99) == (1, 0)
    assert window.totals(13.0) == (0, 0)


def test_totals_read_after_each_add() -> None:
    """``a`` and ``b`` are the window's totals right after each add, without another call."""
    window = SlidingWindow(10.0)
    window.add_ab(0.0)
    window.add_a(10.5)  # slice 0 expired on the way in
    assert (window.a, window.b) == (1, 0)
    window.add_b(10.6)
    assert (window.a, window.b) == (1, 1)


def test_repr_shows_the_totals() -> None:
    """The repr names the two totals (nothing else is worth reading)."""
    assert repr(_window_with([(0.0, "ab"), (0.0, "a")])) == "SlidingWindow(a=2, b=1)"


kinds = st.sampled_from(["a", "b", "ab"])
steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=4.0, allow_nan=False), kinds), max_size=200
)


@settings(max_examples=300, deadline=None)
@given(
    # slice widths a float holds exactly, so the reference's slice numbers are exact too
    seconds=st.sampled_from([1.25, 2.5, 10.0, 30.0]),
    start=st.floats(min_value=-100.0, max_value=100.0, allow_nan=False),
    events=steps,
)
def test_matches_a_reference_model(
    seconds: float, start: float, events: list[tuple[float, str]]
) -> None:
    """After every add, the totals equal a brute-force count of the events whose slice is
    one of the last SLICES slices (the slice of *now* included)."""
    window = SlidingWindow(seconds)
    width = seconds / SLICES
    log: list[tuple[int, str]] = []
    now = start
    for step, kind in events:
        now += step
        number = int(now // width)
        {"a": window.add_a, "b": window.add_b, "ab": window.add_ab}[kind](now)
        log.append((number, kind))
        recent = [k for n, k in log if n > number - SLICES]
        expected = (sum("a" in k for k in recent), sum("b" in k for k in recent))
        assert (window.a, window.b) == expected
        assert window.totals(now) == expected
