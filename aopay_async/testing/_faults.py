"""The sandbox's fault vocabulary, its exact-fraction schedule and the per-id scripts.

Owns: the names a fault or script step may use (:data:`FAULTS`, :data:`OUTCOMES`),
:class:`FaultSchedule` (which request gets which fault) and :class:`Script` (one
``cibil_id``'s scripted outcomes), with the checks that turn a bad knob into a ValueError.
Must never: touch the network, read a clock, or draw from unseeded randomness (a schedule
with the same seed repeats exactly; 2,000 requests at ``{"503": 0.02}`` hold exactly 40 503s).
Why apart: these are pure values and transitions a test can drive without a server; they
were a third of the 694-line ``_sandbox.py`` (issue 13).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "FAULTS",
    "MAX_BLOCK",
    "OUTCOMES",
    "REPEAT",
    "SCRIPTABLE",
    "FaultSchedule",
    "Script",
    "check_script",
]

#: Outcomes a fault fraction or a script step can name.
#:
#: - ``"ok"``: the success envelope (scripts only; it is what no fault means).
#: - ``"500"``, ``"502"``, ``"503"``: that status with a small JSON body, no ``Retry-After``.
#: - ``"429"``: HTTP 429 with ``Retry-After`` (the ``retry_after`` knob, else ``1``).
#: - ``"401"``: the 401 shape, as for wrong credentials.
#: - ``"reset"``: the connection is reset (TCP RST) before any byte of a response.
#: - ``"truncate"``: a 200 with the full ``Content-Length`` but only half the body, then close.
#: - ``"slow"``: a correct 200 whose body drips in 10 chunks over ``slow_seconds``.
#: - ``"html"``: HTTP 502 with an nginx-style HTML error page.
#: - ``"html200"``: HTTP 200 with an HTML maintenance page.
#: - ``"gateway_error"``: HTTP 200 with the gateway error shape (``code`` ``"207"``).
FAULTS: Final = frozenset(
    {
        "500",
        "502",
        "503",
        "429",
        "401",
        "reset",
        "truncate",
        "slow",
        "html",
        "html200",
        "gateway_error",
    }
)
#: Every outcome the counters can show: the fault names, ``"ok"``, and the two answers to
#: a bad request, ``"bad_request"`` (HTTP 400) and ``"missing_field"`` (the code 207 shape).
OUTCOMES: Final = FAULTS | {"ok", "bad_request", "missing_field"}
#: A script's last element may be this, meaning "repeat the step before it forever".
REPEAT: Final = "*"
#: What a script step may name: a fault or ``"ok"``.
SCRIPTABLE: Final = FAULTS | {"ok"}


#: Fault schedules use blocks of at most this many requests (see :class:`FaultSchedule`).
MAX_BLOCK: Final = 100_000


class FaultSchedule:
    """Which fault each request gets: exact fractions, shuffled order, seeded.

    Requests are taken in blocks of ``block`` (the smallest power of ten that makes every
    fraction a whole number of requests, at most 100,000). In every block each fault fires
    exactly ``round(fraction * block)`` times and ``"ok"`` fills the rest, in an order
    shuffled by ``random.Random(seed)``. So 2,000 requests with ``{"503": 0.02}`` hold
    exactly 40 503s, and the same seed gives the same sequence.
    """

    def __init__(self, faults: Mapping[str, float] | None, seed: int = 0) -> None:
        self.faults: dict[str, float] = _check_faults(faults)
        self.seed = seed
        self.block = _block_size(self.faults.values())
        table: list[str] = []
        cumulative, done = 0.0, 0
        for name in sorted(self.faults):
            cumulative += self.faults[name]
            upto = min(round(cumulative * self.block), self.block)
            table += [name] * (upto - done)
            done = upto
        table += ["ok"] * (self.block - done)
        self._table = table
        self._rng = random.Random(f"aopay-sandbox-faults:{seed}")
        self._pending: list[str] = []

    def per_block(self) -> Counter[str]:
        """How many of each outcome every block of ``block`` requests holds."""
        return Counter(self._table)

    def next(self) -> str:
        """The outcome of the next request that reaches the fault stage."""
        if not self._pending:
            self._pending = self._table.copy()
            self._rng.shuffle(self._pending)
            # pop() takes from the end; reverse so the sequence reads in shuffled order.
            self._pending.reverse()
        return self._pending.pop()

    def take(self, n: int) -> list[str]:
        """The next *n* outcomes (a test can predict a run with a fresh schedule)."""
        return [self.next() for _ in range(n)]


def _check_faults(faults: Mapping[str, float] | None) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, fraction in (faults or {}).items():
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(sorted(FAULTS))}")
        value = float(fraction)
        if not 0.0 <= value <= 1.0:  # NaN fails this too
            raise ValueError(f"the fraction for fault {name!r} must be in [0, 1], not {fraction!r}")
        if value:
            checked[name] = value
    if sum(checked.values()) > 1.0 + 1e-9:
        raise ValueError("fault fractions add up to more than 1")
    return checked


def _block_size(fractions: Any) -> int:
    values = list(fractions)
    block = 1
    while block < MAX_BLOCK:
        if all(abs(v * block - round(v * block)) < 1e-6 for v in values):
            return block
        block *= 10
    return MAX_BLOCK


@dataclass
class Script:
    """One ``cibil_id``'s scripted outcomes; :meth:`next` is None once they are used up."""

    steps: tuple[str, ...]
    repeat_last: bool
    position: int = 0

    def next(self) -> str | None:
        if self.position < len(self.steps):
            self.position += 1
            return self.steps[self.position - 1]
        if self.repeat_last and self.steps:
            return self.steps[-1]
        return None


def check_script(cibil_id: str, outcomes: Sequence[str]) -> Script:
    if isinstance(outcomes, str):
        raise TypeError(f"the script for {cibil_id!r} must be a sequence of outcomes, not a str")
    steps = list(outcomes)
    repeat = bool(steps) and steps[-1] == REPEAT
    if repeat:
        steps.pop()
        if not steps:
            raise ValueError(f"the script for {cibil_id!r} has '*' with no outcome to repeat")
    for step in steps:
        if step not in SCRIPTABLE:
            raise ValueError(
                f"unknown outcome {step!r} in the script for {cibil_id!r}; "
                f"known outcomes: {', '.join(sorted(SCRIPTABLE))} (and a final '*')"
            )
    return Script(tuple(steps), repeat)
