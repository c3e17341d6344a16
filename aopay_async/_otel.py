"""OpenTelemetry instruments and spans, fed by the event stream (:mod:`aopay_async._observe`).

This module owns the library's metrics and traces: the ``http.client.request.duration``
histogram of the HTTP semantic conventions (seconds, their bucket boundaries, one point per
attempt), the library's own ``aopay.*`` instruments, one INTERNAL span per call and one
CLIENT span ``GET`` per attempt, and the ``traceparent`` header the configured propagator
writes for an attempt. It imports ``opentelemetry`` (the API only; the SDK and exporters are
the application's choice) and is itself imported only when the application gives a provider
or has already imported OpenTelemetry, so an application without it pays nothing.

It must never put a cibil id, a body, the company code, the registration id or a token into
an attribute: attributes are the method, the server, the path template, the status, the
error class, the attempt's resend count, the ``client_order_id`` and the API's reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .__version__ import __version__
from ._events import Event, EventKind, reason_of

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from ._watch import Watch

__all__ = ["DURATION_BUCKETS", "OTel", "configured_globally"]

#: The HTTP semantic conventions' advice for ``http.client.request.duration`` (seconds).
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
)  # fmt: skip
#: Limiter waits: most are zero or a fraction of one token's interval; outages wait seconds.
WAIT_BUCKETS: Final = (
    0.0, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0
)  # fmt: skip
#: The INTERNAL span of one call: the API's operation name.
CALL_SPAN_NAME: Final = "GetCreditHistory"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


def configured_globally() -> bool:
    """True when the application has set a global meter or tracer provider.

    Until then the API hands out proxies and no-ops: instrumenting through them would cost
    every attempt something and record nothing. Every provider the API package itself defines
    is one of those (their class names vary across releases: ``_ProxyMeterProvider`` in 1.45);
    a real one comes from an SDK.
    """
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        if not type(provider).__module__.startswith(
            ("opentelemetry.trace", "opentelemetry.metrics")
        ):
            return True
    return False


class OTel:
    """The instruments and the tracer of one client."""

    __slots__ = (
        "_base",
        "_url",
        "bulk_items",
        "circuit",
        "duration",
        "fallback",
        "retries",
        "tracer",
        "wait",
    )

    def __init__(
        self,
        url: str,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
        self._url = url
        #: The attributes every attempt shares (the path is the template: it has no ids).
        self._base: dict[str, Any] = {
            "http.request.method": "GET",
            "server.address": parts.hostname or "",
            "server.port": port,
            "url.template": parts.path,
        }
        version = __version__
        meter = metrics.get_meter("aopay_async", version, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.retries = meter.create_counter(
            "aopay.client.retries",
            unit="{retry}",
            description="Retries scheduled, by the failure that caused them (error.type).",
        )
        self.wait = meter.create_histogram(
            "aopay.limiter.wait.duration",
            unit="s",
            description="Time an attempt waited for a connection slot and a rate-limit token.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        # An up-down counter per state, not a gauge: +1 for the state a client's circuit
        # enters, -1 for the one it leaves, so each state's value is how many clients are in
        # it (1 or 0 for one client), and it sums across clients. (The synchronous Gauge is
        # a no-op with a warning in some API releases.)
        self.circuit = meter.create_up_down_counter(
            "aopay.circuit.state",
            unit="{client}",
            description="Clients whose circuit breaker is in each state (aopay.circuit.state).",
        )
        # Like the circuit: +1 when a client's shared limiter hands over to its fallback, -1
        # when Redis is back (or the client closes meanwhile); sums across clients.
        self.fallback = meter.create_up_down_counter(
            "aopay.limiter.fallback",
            unit="{client}",
            description="Clients whose shared rate limiter is down and served by its fallback.",
        )
        self.bulk_items = meter.create_counter(
            "aopay.bulk.items",
            unit="{item}",
            description="Bulk items finished, by outcome (aopay.outcome: ok or the error class).",
        )
        self.tracer = trace.get_tracer("aopay_async", version, tracer_provider=tracer_provider)

    # -- metrics, from events -------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Record what *event* means for the instruments."""
        kind = event.kind
        if kind is EventKind.ATTEMPT_FINISHED:
            self.duration.record(event.wire_seconds or 0.0, self.attempt_attributes(event))
        elif kind is EventKind.LIMITER_WAITED:
            self.wait.record(event.wait_seconds or 0.0)
        elif kind is EventKind.RETRY_SCHEDULED:
            self.retries.add(1, {"error.type": event.reason or "_OTHER"})
        elif kind is EventKind.BULK_ITEM:
            self.bulk_items.add(1, {"aopay.outcome": event.outcome or "ok"})
        elif kind is EventKind.CIRCUIT_CHANGED:
            if event.reason is not None:
                self.circuit.add(-1, {"aopay.circuit.state": event.reason})
            if event.state is not None:
                self.circuit.add(1, {"aopay.circuit.state": event.state})
        elif kind is EventKind.FALLBACK_LIMITER:
            self.fallback.add(1 if event.state == "fallback" else -1)

    def circuit_created(self) -> None:
        """A client with a breaker starts closed."""
        self.circuit.add(1, {"aopay.circuit.state": "closed"})

    def fallback_left(self) -> None:
        """A client on its limiter's fallback closed: it leaves ``aopay.limiter.fallback``."""
        self.fallback.add(-1)

    def attempt_attributes(self, event: Event) -> dict[str, Any]:
        """The semantic-convention attributes of one finished attempt."""
        attributes = dict(self._base)
        status = event.status_code
        if status is not None:
            attributes["http.response.status_code"] = status
        if event.error_type is not None:
            # The conventions: the status code when it says error, else the error's class.
            attributes["error.type"] = (
                str(status) if status is not None and status >= 400 else event.error_type
            )
        return attributes

    # -- spans, driven by the watch -------------------------------------------------------------

    @contextmanager
    def call_span(self, order_id: str | None) -> Iterator[Span]:
        """The INTERNAL span of one call, current while the call runs."""
        attributes = {} if order_id is None else {"aopay.client_order_id": order_id}
        with self.tracer.start_as_current_span(
            CALL_SPAN_NAME,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    def end_call(self, span: Span, watch: Watch, exc: BaseException | None) -> None:
        """Set the call span's outcome (it is ended by :meth:`call_span`)."""
        if not span.is_recording():
            return
        span.set_attribute("aopay.attempts", watch.attempt)
        if watch.reference is not None:
            span.set_attribute("aopay.reference", watch.reference)
        if exc is not None:
            reason = reason_of(exc)
            span.set_attribute("error.type", reason)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))

    def start_attempt(self, attempt: int) -> tuple[Span, dict[str, str] | None]:
        """Start the CLIENT span of attempt number *attempt*; the headers to propagate it."""
        attributes = dict(self._base)
        attributes["url.full"] = self._url
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        span = self.tracer.start_span("GET", kind=SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        return span, carrier or None

    def end_attempt(self, span: Span, event: Event) -> None:
        """End an attempt's CLIENT span with its outcome."""
        if span.is_recording():
            if event.status_code is not None:
                span.set_attribute("http.response.status_code", event.status_code)
            if event.reference is not None:
                span.set_attribute("aopay.reference", event.reference)
            if event.error_type is not None:
                attributes = self.attempt_attributes(event)
                span.set_attribute("error.type", attributes["error.type"])
                span.set_status(Status(StatusCode.ERROR, event.error_type))
        span.end()
