# The client_order_ids a bulk run has seen, each with the input line it first appeared on,
# so a second row reusing one is reported as "duplicate client_order_id of line N". It
# owns only that map, kept small: a run of ten million rows must not spend a gigabyte on
# it. Measured by benchmarks/bench_order_ids.py (tracemalloc, 1M ids): the dict of strings
# it replaces cost ~123 B a row for 11-character ids and ~148 B for UUIDs (each string is
# kept alive); this table costs 20 B a slot, ~27-53 B a row as it fills and doubles,
# whatever the ids' length.
# How: each id is reduced to a 128-bit BLAKE2b digest, kept in an open-addressing table
# (linear probing, at most 3/4 full) of two 64-bit halves and the first line. It must
# never report a row that is a duplicate as new, nor give any line but the first: both
# hold exactly (equal ids have equal digests; the first insertion wins). The one inexact
# case is the reverse: two different ids with the same 128-bit digest would be reported as
# duplicates; for n ids that happens with probability about n*n/2**129 (1e-21 for a
# billion ids), far below the rate of undetected disk and memory errors.
""":class:`FirstLines`: ``client_order_id`` -> first input line, in ~20 bytes a slot."""

from __future__ import annotations

import hashlib
from array import array
from typing import Final

__all__ = ["FirstLines", "digest"]

_LOW: Final = (1 << 64) - 1
_START: Final = 1024  # slots; a power of two


def digest(order_id: str) -> tuple[int, int]:
    """The 128-bit BLAKE2b digest of *order_id* as two 64-bit halves (the first never 0)."""
    raw = hashlib.blake2b(
        order_id.encode("utf-8", "surrogatepass"), digest_size=16, person=b"aopay-order-id"
    ).digest()
    value = int.from_bytes(raw, "little")
    return (value >> 64) or 1, value & _LOW  # 0 marks an empty slot


class FirstLines:
    """The first input line of each ``client_order_id`` seen: :meth:`setdefault`, :meth:`get`."""

    __slots__ = ("_high", "_lines", "_low", "_mask", "_used")

    def __init__(self, slots: int = _START) -> None:
        size = 1 << max(3, (slots - 1).bit_length())
        self._high = array("Q", bytes(8 * size))
        self._low = array("Q", bytes(8 * size))
        self._lines = array("I", bytes(4 * size))
        self._mask = size - 1
        self._used = 0

    def __len__(self) -> int:
        return self._used

    def _find(self, high: int, low: int) -> int:
        """The slot holding (high, low), or the empty slot where it would go."""
        highs, lows, mask = self._high, self._low, self._mask
        slot = high & mask
        while True:
            seen = highs[slot]
            if seen == 0 or (seen == high and lows[slot] == low):
                return slot
            slot = (slot + 1) & mask

    def get(self, order_id: str) -> int | None:
        """The first line *order_id* was seen on, or None."""
        slot = self._find(*digest(order_id))
        return self._lines[slot] if self._high[slot] else None

    def setdefault(self, order_id: str, line: int) -> int:
        """The first line of *order_id*; *line* if it is new (and now recorded)."""
        high, low = digest(order_id)
        slot = self._find(high, low)
        if self._high[slot]:
            return self._lines[slot]
        self._high[slot], self._low[slot], self._lines[slot] = high, low, line
        self._used += 1
        if 4 * self._used > 3 * (self._mask + 1):
            self._grow()
        return line

    def _grow(self) -> None:
        old = zip(self._high, self._low, self._lines, strict=True)
        size = 2 * (self._mask + 1)
        highs, lows = array("Q", bytes(8 * size)), array("Q", bytes(8 * size))
        lines = array("I", bytes(4 * size))
        self._high, self._low, self._lines, self._mask = highs, lows, lines, size - 1
        for high, low, line in old:
            if high:
                slot = self._find(high, low)
                highs[slot], lows[slot], lines[slot] = high, low, line

    def __repr__(self) -> str:
        return f"FirstLines({self._used} ids)"  # never the ids: they may be customer data
