"""The event stream: one typed event per step of a call, and the subscribers that read it.

This module owns what the library reports about itself: the :class:`Event` shape, the
``aopay_async`` logger tree and its ``key=value`` lines, the user's event hooks, and the
hand-over to OpenTelemetry (:mod:`aopay_async._otel`, imported only when OpenTelemetry is
in use). Logging, hooks, OpenTelemetry and the command line's summary all read the same
events; nothing else in the library counts anything.

It must never: put a customer value or a credential into an event, a log line or a metric
or span attribute (cibil ids are never reported at all; references from the API are kept only
when they cannot be a phone, account or cibil number); let a failing hook break a call;
import OpenTelemetry unless the application uses it; or cost more than one branch per call
when nobody listens (no event is built, no clock is read). Measured with
``benchmarks/bench_throughput.py``: see the CHANGELOG entry for the figures.

Levels: DEBUG one line per attempt; INFO each retry, each 429 and each circuit change;
WARNING a spent retry budget or a fallback limiter taking over. ``AOPAY_LOG=debug|info|warning``
attaches a stderr handler at that level for scripts that configure no logging themselves.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from ._decode import decode_response
from ._errors import APIStatusError, InvalidRequestError, RateLimitError

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._models import BulkResult, CreditHistory
    from ._otel import OTel

__all__ = [
    "LOG",
    "Event",
    "EventHook",
    "EventKind",
    "Observer",
    "Watch",
    "configure_from_env",
    "log_to_stderr",
    "make_observer",
    "safe_reference",
]

_T = TypeVar("_T")

#: The root of the library's logger tree; a NullHandler keeps it silent unless configured.
LOG: Final = logging.getLogger("aopay_async")
LOG.addHandler(logging.NullHandler())
#: Call events (attempts, retries, throttling, circuit, budget, limiter).
CLIENT_LOG: Final = logging.getLogger("aopay_async.client")
#: Failures of the user's event hooks.
HOOK_LOG: Final = logging.getLogger("aopay_async.hooks")
_INFO: Final = logging.INFO

ENV_LOG: Final = "AOPAY_LOG"
_ENV_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class EventKind(enum.StrEnum):
    """What happened. Each kind fills the :class:`Event` fields listed for it."""

    #: An attempt is being sent: ``attempt``, ``wait_seconds`` (waited before it).
    ATTEMPT_STARTED = "attempt_started"
    #: An attempt has its outcome: ``attempt``, ``status_code`` (None when no response came),
    #: ``error_type`` (None on success), ``wire_seconds``, ``wait_seconds``, ``reference``.
    ATTEMPT_FINISHED = "attempt_finished"
    #: An attempt waited for a connection slot and a rate-limit token: ``wait_seconds``.
    LIMITER_WAITED = "limiter_waited"
    #: Another attempt will follow: ``attempt`` (the next one's number), ``reason`` (the HTTP
    #: status, or the error class of an attempt without a response), ``delay_seconds``.
    RETRY_SCHEDULED = "retry_scheduled"
    #: The API answered 429: ``attempt``, ``status_code``, ``delay_seconds`` (its Retry-After).
    THROTTLED = "throttled"
    #: The circuit breaker changed state: ``state`` (new), ``reason`` (the previous state),
    #: ``delay_seconds`` (to the next probe, when it opened).
    CIRCUIT_CHANGED = "circuit_changed"
    #: The retry budget refused a retry: ``attempt``, ``reason`` (the failure not retried).
    BUDGET_SPENT = "budget_spent"
    #: A fallback limiter took over from (``state="fallback"``) or gave back to
    #: (``state="primary"``) a shared one: ``reason`` (why).
    FALLBACK_LIMITER = "fallback_limiter"
    #: A bulk item has its result: ``attempts``, ``error_type`` (None when ok),
    #: ``wire_seconds`` and ``wait_seconds`` (over all its attempts).
    BULK_ITEM = "bulk_item"


@dataclass(frozen=True, slots=True)
class Event:
    """One step of a call, as hooks, logging and OpenTelemetry see it.

    Holds no customer value and no credential: ids are the ``client_order_id`` (the caller's
    or a generated one) and the API's own reference for the response (``soft_ref_id``, or
    the reference an error body carries), never a cibil id. Times are in seconds.
    """

    kind: EventKind
    client_order_id: str | None = None
    attempt: int = 0
    status_code: int | None = None
    error_type: str | None = None
    wire_seconds: float | None = None
    wait_seconds: float | None = None
    delay_seconds: float | None = None
    reason: str | None = None
    reference: str | None = None
    state: str | None = None

    @property
    def outcome(self) -> str | None:
        """``"ok"`` for a success, else the error class name (for finished attempts and items)."""
        if self.kind not in (EventKind.ATTEMPT_FINISHED, EventKind.BULK_ITEM):
            return None
        return "ok" if self.error_type is None else self.error_type


#: A hook: a plain function or a coroutine function taking one :class:`Event`.
EventHook = Callable[[Event], "Awaitable[None] | None"]

# -- logging -----------------------------------------------------------------------------

_LEVELS: Final[Mapping[EventKind, int]] = {
    EventKind.ATTEMPT_FINISHED: logging.DEBUG,
    EventKind.RETRY_SCHEDULED: logging.INFO,
    EventKind.THROTTLED: logging.INFO,
    EventKind.CIRCUIT_CHANGED: logging.INFO,
    EventKind.BUDGET_SPENT: logging.WARNING,
    EventKind.FALLBACK_LIMITER: logging.WARNING,
}
_BARE: Final = re.compile(r"[A-Za-z0-9._:/@+-]+")


def _kv(value: str) -> str:
    # Grep-able: bare when safe, else JSON-quoted (an order id may hold spaces or '=').
    return value if _BARE.fullmatch(value) else msgspec.json.encode(value).decode()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def format_event(event: Event) -> str:
    """The ``key=value`` log line of *event* (its kind first)."""
    parts = [event.kind.value]
    if event.client_order_id is not None:
        parts.append(f"order_id={_kv(event.client_order_id)}")
    if event.attempt:
        parts.append(f"attempt={event.attempt}")
    if event.kind is EventKind.ATTEMPT_FINISHED:
        parts.append(f"outcome={event.outcome}")
    if event.status_code is not None:
        parts.append(f"status={event.status_code}")
    if event.reason is not None:
        parts.append(f"reason={_kv(event.reason)}")
    if event.state is not None:
        parts.append(f"state={_kv(event.state)}")
    if event.wire_seconds is not None:
        parts.append(f"wire_ms={_ms(event.wire_seconds)}")
    if event.wait_seconds is not None:
        parts.append(f"wait_ms={_ms(event.wait_seconds)}")
    if event.delay_seconds is not None:
        parts.append(f"delay_ms={_ms(event.delay_seconds)}")
    if event.reference is not None:
        parts.append(f"ref={_kv(event.reference)}")
    return " ".join(parts)


def _log(event: Event) -> None:
    level = _LEVELS.get(event.kind)
    if level is not None and CLIENT_LOG.isEnabledFor(level):
        CLIENT_LOG.log(level, "%s", format_event(event), extra={"aopay_event": event})


def configure_from_env(environ: Mapping[str, str] = os.environ) -> logging.Handler | None:
    """Attach a stderr handler to the ``aopay_async`` logger when ``AOPAY_LOG`` asks for one.

    Like ``OPENAI_LOG``: for scripts that configure no logging. Unknown values are ignored.
    Returns the handler attached, if any (a second call attaches no second one).
    """
    level = _ENV_LEVELS.get(environ.get(ENV_LOG, "").strip().lower())
    if level is None:
        return None
    return log_to_stderr(level)


def log_to_stderr(level: int) -> logging.Handler | None:
    """Show the library's log lines from *level* up on stderr (``AOPAY_LOG``, ``--log-level``).

    Sets the ``aopay_async`` logger's level; adds one stderr handler, once (None when it is
    already there).
    """
    LOG.setLevel(level)
    for handler in LOG.handlers:
        if getattr(handler, "_aopay_stderr", False):
            return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler._aopay_stderr = True  # type: ignore[attr-defined]  # marks ours, so it is added once
    LOG.addHandler(handler)
    return handler


configure_from_env()

# -- references ----------------------------------------------------------------------------

_REFERENCE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LETTER: Final = re.compile(r"[A-Za-z]")
#: Where an error body may carry the API's reference for the request (the gateway shape's
#: ``merchantTrxnRefId``; the success shape's ``soft_ref_id``, which some errors repeat).
_REFERENCE_FIELDS: Final = ("soft_ref_id", "merchantTrxnRefId")
_MAX_REFERENCE_BODY: Final = 64 * 1024


def safe_reference(value: object, secrets: Iterable[str | None] = ()) -> str | None:
    """*value* if it can be reported as the API's reference for a request, else None.

    Kept: a short token of letters, digits, ``._-`` with at least one letter (all digits
    could be a phone, account or cibil number, which a hostile or buggy server might echo
    there), containing none of *secrets*. The documented ``soft_ref_id`` passes
    (``23081815284725JQJCESXDTP2``).
    """
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value) or not _LETTER.search(value):
        return None
    for secret in secrets:
        if secret and secret in value:
            return None
    return value


def body_reference(data: bytes | None, secrets: Iterable[str | None]) -> str | None:
    """The API's reference in an error *data* body, when it has a safe one."""
    if not data or len(data) > _MAX_REFERENCE_BODY:
        return None
    try:
        loose = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    if not isinstance(loose, dict):
        return None
    for field in _REFERENCE_FIELDS:
        found = safe_reference(loose.get(field), secrets)
        if found is not None:
            return found
    return None


def reason_of(exc: BaseException) -> str:
    """Low-cardinality name of a failure: the HTTP status, else the error class."""
    if isinstance(exc, APIStatusError):
        return str(exc.status_code)
    return type(exc).__name__


# -- the subscribers -------------------------------------------------------------------------


class Observer:
    """One client's subscribers: its hooks and its OpenTelemetry bridge (logging is global).

    ``listening`` is true when a hook or OpenTelemetry is set; then every call is watched.
    Otherwise a call is watched only while the client logger is enabled for INFO.
    """

    __slots__ = ("_tasks", "hooks", "listening", "otel")

    def __init__(self, hooks: Iterable[EventHook] = (), otel: OTel | None = None) -> None:
        self.hooks = tuple(hooks)
        self.otel = otel
        self.listening = bool(self.hooks) or otel is not None
        self._tasks: set[asyncio.Future[Any]] = set()

    def watching(self) -> bool:
        """Whether a call starting now should be watched (the one check on the hot path)."""
        return self.listening or CLIENT_LOG.isEnabledFor(_INFO)

    def watch(self, order_id: str | None, watch: Watch | None = None) -> Watch:
        """A watch reporting to this observer (*watch*, a bulk item's, if given)."""
        if watch is None:
            return Watch(order_id, self)
        watch.observer = self
        return watch

    def emit(self, event: Event) -> None:
        """Hand *event* to logging, OpenTelemetry and every hook; never raises."""
        _log(event)
        otel = self.otel
        if otel is not None:
            try:
                otel.record(event)
            except Exception:
                HOOK_LOG.warning("OpenTelemetry recording failed; the call goes on", exc_info=True)
        for hook in self.hooks:
            self._run_hook(hook, event)

    def _run_hook(self, hook: EventHook, event: Event) -> None:
        try:
            result = hook(event)
            if result is not None and inspect.isawaitable(result):
                # An async hook runs beside the call, never delaying it; aclose() waits.
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._hook_done)
        except Exception:
            HOOK_LOG.warning(
                "event hook %s raised on %s; the call goes on",
                _hook_name(hook),
                event.kind.value,
                exc_info=True,
            )

    def _hook_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            HOOK_LOG.warning(
                "an async event hook raised; the call went on", exc_info=task.exception()
            )

    async def aclose(self) -> None:
        """Wait for async hooks still running (the client is closing)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # Rare events, reported whoever listens (each costs a log-level check when nobody does).

    def circuit_changed(self, previous: str, state: str, retry_after: float | None = None) -> None:
        """The circuit breaker went from *previous* to *state* (e.g. ``closed`` to ``open``);
        *retry_after*: seconds to the next probe when it opened."""
        self.emit(
            Event(
                EventKind.CIRCUIT_CHANGED, state=state, reason=previous, delay_seconds=retry_after
            )
        )

    def circuit_created(self) -> None:
        """The client has a circuit breaker, closed: count it in ``aopay.circuit.state``."""
        if self.otel is not None:
            self.otel.circuit_created()

    def budget_spent(self, order_id: str | None, attempt: int, exc: BaseException) -> None:
        """The retry budget refused the retry that *exc* (attempt *attempt*) would have had."""
        self.emit(Event(EventKind.BUDGET_SPENT, order_id, attempt, reason=reason_of(exc)))

    def fallback_limiter(self, active: bool, reason: str) -> None:
        """A fallback limiter took over (*active*) from a shared one, or gave back to it."""
        state = "fallback" if active else "primary"
        self.emit(Event(EventKind.FALLBACK_LIMITER, state=state, reason=reason))

    def bulk_item(self, result: BulkResult) -> None:
        """Report one bulk item's result."""
        error = result.error
        self.emit(
            Event(
                EventKind.BULK_ITEM,
                result.request.client_order_id,
                result.attempts,
                error_type=None if error is None else type(error).__name__,
                wire_seconds=result.wire_seconds,
                wait_seconds=result.wait_seconds,
            )
        )


def make_observer(
    url: str,
    event_hooks: Iterable[EventHook],
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Observer:
    """A client's subscribers: its checked hooks, and OpenTelemetry when the application uses it.

    Uses it means: a provider is given, or OpenTelemetry is imported and a global provider
    has been set (configure OpenTelemetry before creating clients). Otherwise
    ``opentelemetry`` is not imported, here or later.
    """
    if isinstance(event_hooks, (str, bytes)) or not isinstance(event_hooks, Iterable):
        raise InvalidRequestError("event_hooks must be an iterable of callables")
    hooks = tuple(event_hooks)
    for hook in hooks:
        if not callable(hook):
            raise InvalidRequestError(
                f"every event hook must be callable, not {type(hook).__name__}"
            )
    given = meter_provider is not None or tracer_provider is not None
    otel = None
    if given or "opentelemetry.metrics" in sys.modules or "opentelemetry.trace" in sys.modules:
        try:
            from ._otel import OTel, configured_globally
        except ImportError:
            if given:
                raise InvalidRequestError(
                    "meter_provider / tracer_provider need OpenTelemetry: "
                    "pip install 'aopay-async[otel]'"
                ) from None
        else:
            if given or configured_globally():
                otel = OTel(url, meter_provider=meter_provider, tracer_provider=tracer_provider)
    return Observer(hooks, otel)


def _hook_name(hook: object) -> str:
    return str(getattr(hook, "__qualname__", None) or type(hook).__name__)


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
