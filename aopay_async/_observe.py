"""Observer: one client's subscribers to the event stream, and the hand-over to each of them.

This module owns who hears an event: :meth:`Observer.emit` hands each one to logging
(:func:`aopay_async._events.log_event`), the client's OpenTelemetry bridge
(:mod:`aopay_async._otel`, imported only when OpenTelemetry is in use) and the user's event
hooks; :func:`make_observer` checks the hooks and decides whether OpenTelemetry is in use.
It also reports the rare events that are not one call's step (circuit changes, a spent
budget, bulk items, a shared limiter's fallback taking over, heard by :meth:`Observer.follow`).
What an event holds lives in :mod:`aopay_async._events`; the per-call timing that makes the
attempt events lives in :mod:`aopay_async._watch`. Logging, hooks, OpenTelemetry and the
command line's summary all read the same events; nothing else in the library counts anything.

It must never: let a failing hook or a failing OpenTelemetry SDK break a call (both are
caught and logged on ``aopay_async.hooks``); let an async hook delay a call (it runs beside
it; ``aclose`` waits); be kept alive by a shared limiter it follows (held weakly, left on
``aclose``); import OpenTelemetry unless the application uses it; or cost more
than one branch per call when nobody listens (:meth:`Observer.watching`; no event is built,
no clock is read: ``bench_instructions --impls aopay --accounts 3 --requests 200``, the fast
path's whole request is ~174k instructions, 172.8k-175.0k over six runs before and after
splitting this module).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from ._errors import InvalidRequestError
from ._events import (
    CLIENT_LOG,
    HOOK_LOG,
    Event,
    EventHook,
    EventKind,
    log_event,
    reason_of,
)
from ._watch import Watch

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._models import BulkResult
    from ._otel import OTel

__all__ = ["Observer", "make_observer"]

_INFO: Final = logging.INFO


class Observer:
    """One client's subscribers: its hooks and its OpenTelemetry bridge (logging is global).

    ``listening`` is true when a hook or OpenTelemetry is set; then every call is watched.
    Otherwise a call is watched only while the client logger is enabled for INFO.
    """

    __slots__ = (
        "__weakref__",  # a shared limiter holds its listeners weakly (Observer.follow)
        "_followed",
        "_on_fallback",
        "_tasks",
        "hooks",
        "listening",
        "otel",
    )

    def __init__(self, hooks: Iterable[EventHook] = (), otel: OTel | None = None) -> None:
        self.hooks = tuple(hooks)
        self.otel = otel
        self.listening = bool(self.hooks) or otel is not None
        self._tasks: set[asyncio.Future[Any]] = set()
        #: The shared limiter whose fallback this observer hears (see :meth:`follow`).
        self._followed: Any = None
        #: Whether that limiter's fallback has taken over, as this observer last heard.
        self._on_fallback = False

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
        log_event(event)
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

    def follow(self, limiter: object) -> None:
        """Hear *limiter*'s fallback taking over and giving back, until :meth:`aclose`.

        For a limiter shared by clients (a ``RedisLimiter`` with ``fallback=``): it cannot
        reach their observers, so each client's observer registers with it. The limiter
        holds it weakly (a client never closed does not live on in the limiter). Any other
        limiter (or None) is ignored.
        """
        listen = getattr(limiter, "_add_fallback_listener", None)
        if listen is not None:
            listen(self)
            self._followed = limiter

    async def aclose(self) -> None:
        """Stop hearing the shared limiter; wait for async hooks still running (the client is
        closing)."""
        followed, self._followed = self._followed, None
        if followed is not None:
            followed._discard_fallback_listener(self)
        if self._on_fallback:
            # This client leaves the count of clients on a fallback (no event: nothing changed
            # for the limiter, the client is just gone).
            self._on_fallback = False
            if self.otel is not None:
                self.otel.fallback_left()
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
        """A fallback limiter took over (*active*) from a shared one, or gave back to it.

        Only changes are reported: a give-back this observer never heard the takeover of
        (it began following during an outage) is dropped, so every ``primary`` event
        follows a ``fallback`` one and ``aopay.limiter.fallback`` never goes below zero.
        """
        if active is self._on_fallback:
            return
        self._on_fallback = active
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
