"""The sandbox's counters: what a test reads back after driving a client at the server.

Owns: :class:`SandboxStats` (requests, outcomes, 429s, per-id attempts, arrivals, requests in
flight) and the two questions tests ask of them (ids sent more than once, the most arrivals in
a window). Must never: decide an answer, sleep, or hold customer data (ids are the synthetic
ones a test sent). Why apart: the server only increments these; they were the last piece that
kept ``_sandbox.py`` at its 450-line wall (issue 13).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["SandboxStats"]


@dataclass
class SandboxStats:
    """Counters a test can read (and :meth:`reset`) while the server runs.

    ``by_outcome`` counts decisions (an answer cut short by a client that went away still
    counts). ``rate_limited`` counts every 429 sent, from the bucket, a fault or a script.
    The per-id counters and ``arrivals`` are kept unless the server was made with
    ``track_ids=False``.
    """

    #: Requests received on the API path, whatever became of them.
    requests: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    #: Requests received per ``client_order_id`` (retries of one call share an id),
    #: whatever became of them (a 429 from the rate limit included).
    attempts_by_order_id: Counter[str] = field(default_factory=Counter)
    #: Requests received per ``cibil_id``, counted the same way.
    attempts_by_cibil_id: Counter[str] = field(default_factory=Counter)
    #: ``loop.time()`` of each request's arrival, in order.
    arrivals: list[float] = field(default_factory=list)
    in_flight: int = 0
    #: The most requests being handled at once.
    max_in_flight: int = 0
    #: Requests answered by an outage window (also counted in ``by_outcome``).
    outage: int = 0

    def repeated_order_ids(self) -> dict[str, int]:
        """The ``client_order_id`` values received more than once, with their counts."""
        return {key: n for key, n in self.attempts_by_order_id.items() if n > 1}

    def max_in_window(self, seconds: float) -> int:
        """The most arrivals inside any window of *seconds* (to check a client's rate)."""
        best, start = 0, 0
        times = self.arrivals
        for end, t in enumerate(times):
            while t - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def reset(self) -> None:
        """Zero every counter (``in_flight`` excepted: those requests are still running)."""
        self.requests = 0
        self.by_outcome.clear()
        self.rate_limited = 0
        self.attempts_by_order_id.clear()
        self.attempts_by_cibil_id.clear()
        self.arrivals.clear()
        self.max_in_flight = self.in_flight
        self.outage = 0
