"""Watch: one call's clock readings, and the events they make as its steps happen.

This module owns the timing of a watched call: when an attempt began waiting for a slot and
a token, when it was sent, when its answer came; the wire and wait seconds a bulk result
reports; and the events of each step (``limiter_waited``, ``attempt_started``,
``attempt_finished``, ``throttled``, ``retry_scheduled``) with their OpenTelemetry spans.
The client creates a watch only when somebody listens (:meth:`Observer.watching`), and a bulk
item creates one (without an observer) to learn its times; a single call nobody listens to
never reaches this module.

It must never: change what a call does (:meth:`Watch.decode` classifies a response exactly
as the unwatched path's ``decode_response`` does, and the span wrapper re-raises what it
caught); look for the API's reference in a body when nobody listens; read a clock more than
once per step. Cost when nobody listens: nothing here; the client's one ``watching()``
branch (a whole fast-path request is ~174k instructions, ``bench_instructions``, 3 accounts).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ._decode import decode_response
from ._errors import RateLimitError
from ._events import Event, EventKind, body_reference, reason_of, safe_reference

if TYPE_CHECKING:
    from ._models import CreditHistory
    from ._observe import Observer

__all__ = ["Watch"]

_T = TypeVar("_T")


class Watch:
    """One call as its steps happen: the clock readings, and the events they make.

    A bulk item creates one without an observer to learn its wire and wait times; the
    client attaches its observer when anybody listens. Without an observer it only adds up
    the times.
    """

    __slots__ = (
        "_attempt_wait",
        "_begun",
        "_sent_at",
        "_span",
        "attempt",
        "observer",
        "order_id",
        "reference",
        "wait_seconds",
        "wire_seconds",
    )

    def __init__(self, order_id: str | None, observer: Observer | None = None) -> None:
        self.order_id = order_id
        self.observer = observer
        #: The number of the attempt sent last (1 for the first).
        self.attempt = 0
        #: Seconds on the wire (send to response), over all attempts so far.
        self.wire_seconds = 0.0
        #: Seconds waited for a connection slot and the rate limiter, over all attempts.
        self.wait_seconds = 0.0
        #: The API's reference for the last response that had one.
        self.reference: str | None = None
        self._begun = 0.0
        self._attempt_wait = 0.0
        self._sent_at: float | None = None
        self._span: Any = None

    def begin(self) -> None:
        """An attempt starts: it may now wait for a slot and a token."""
        self._begun = time.perf_counter()

    def waited(self) -> None:
        """The attempt waited for a slot and/or a token, and has them now."""
        observer = self.observer
        if observer is not None:
            wait = time.perf_counter() - self._begun
            observer.emit(Event(EventKind.LIMITER_WAITED, self.order_id, wait_seconds=wait))

    def sending(self, attempt: int) -> dict[str, str] | None:
        """Attempt number *attempt* is about to be sent; returns trace headers to send, if any."""
        now = time.perf_counter()
        wait = now - self._begun
        self.wait_seconds += wait
        self._attempt_wait = wait
        self._sent_at = now
        self.attempt = attempt
        observer = self.observer
        if observer is None:
            return None
        observer.emit(Event(EventKind.ATTEMPT_STARTED, self.order_id, attempt, wait_seconds=wait))
        otel = observer.otel
        if otel is None:
            return None
        self._span, headers = otel.start_attempt(attempt)
        return headers

    def decode(
        self,
        status: int,
        headers: Mapping[str, str],
        data: bytes,
        secrets: tuple[str, ...],
    ) -> CreditHistory:
        """Classify the attempt's response (as the unwatched path does) and report it."""
        ended = time.perf_counter()
        try:
            history = decode_response(status, headers, data, secrets=secrets)
        except Exception as exc:
            reference = None if self.observer is None else body_reference(data, secrets)
            self._finished(ended, status, exc, reference)
            raise
        reference = None
        if self.observer is not None:
            reference = safe_reference(history.soft_ref_id, secrets)
        self._finished(ended, status, None, reference)
        return history

    def failed(self, exc: BaseException) -> None:
        """The attempt ended without a response (or before it was sent: then nothing)."""
        if self._sent_at is not None:
            self._finished(time.perf_counter(), None, exc, None)

    def _finished(
        self, ended: float, status: int | None, exc: BaseException | None, reference: str | None
    ) -> None:
        sent_at = self._sent_at
        assert sent_at is not None
        self._sent_at = None
        wire = ended - sent_at
        self.wire_seconds += wire
        observer = self.observer
        if observer is None:
            return
        if reference is not None:
            self.reference = reference
        event = Event(
            EventKind.ATTEMPT_FINISHED,
            self.order_id,
            self.attempt,
            status_code=status,
            error_type=None if exc is None else type(exc).__name__,
            wire_seconds=wire,
            wait_seconds=self._attempt_wait,
            reference=reference,
        )
        observer.emit(event)
        if isinstance(exc, RateLimitError):
            observer.emit(
                Event(
                    EventKind.THROTTLED,
                    self.order_id,
                    self.attempt,
                    status_code=exc.status_code,
                    delay_seconds=exc.retry_after,
                )
            )
        span, self._span = self._span, None
        if span is not None and observer.otel is not None:
            observer.otel.end_attempt(span, event)

    def retrying(self, exc: BaseException, delay: float) -> None:
        """Another attempt follows *exc* after *delay* seconds."""
        observer = self.observer
        if observer is not None:
            observer.emit(
                Event(
                    EventKind.RETRY_SCHEDULED,
                    self.order_id,
                    self.attempt + 1,
                    reason=reason_of(exc),
                    delay_seconds=delay,
                )
            )

    async def traced(self, call: Awaitable[_T]) -> _T:
        """Await *call* inside the call's INTERNAL span (OpenTelemetry tracing only)."""
        observer = self.observer
        assert observer is not None
        assert observer.otel is not None
        otel = observer.otel
        with otel.call_span(self.order_id) as span:
            try:
                result = await call
            except BaseException as exc:
                otel.end_call(span, self, exc)
                raise
            otel.end_call(span, self, None)
            return result
