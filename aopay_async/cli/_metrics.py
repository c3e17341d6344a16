# `--metrics-port [HOST:]PORT`: Prometheus text for a long bulk run, from the same
# OpenTelemetry instruments the library gives any application (http.client.request.duration,
# aopay.client.retries, aopay.limiter.wait.duration, aopay.bulk.items), through the
# OpenTelemetry Prometheus exporter and prometheus-client's HTTP server (a daemon thread),
# for as long as the run lasts. It owns only that endpoint's life. It must never serve
# anything but metrics (no customer data: the instruments' attributes are statuses, error
# classes and the server's address), never bind beyond 127.0.0.1 unless HOST says so, and
# never be imported unless the flag is given (the extra `[prometheus]` is optional).
"""The ``--metrics-port`` endpoint: :func:`serve_metrics`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._status import UsageError

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["serve_metrics"]


def _nothing() -> None:
    return None


def serve_metrics(
    address: tuple[str, int] | None, say: Callable[[str], None]
) -> tuple[MeterProvider | None, Callable[[], None]]:
    """Serve ``/metrics`` at *address*; the meter provider to give the client, and a stop.

    Without *address*: no provider and a stop that does nothing. Raises
    :class:`UsageError` when the extra is missing or the address cannot be bound.
    """
    if address is None:
        return None, _nothing
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
        from prometheus_client import start_http_server
    except ImportError:
        raise UsageError(
            "--metrics-port needs the OpenTelemetry Prometheus exporter: "
            "pip install 'aopay-async[prometheus]'"
        ) from None
    host, port = address
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise UsageError(
            f"--metrics-port: cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None
    reader = PrometheusMetricReader()
    provider = SDKMeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    shown = f"[{host}]" if ":" in host else host
    say(f"metrics: http://{shown}:{server.server_port}/metrics (Prometheus text)")

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        # Unregisters the exporter's collector, so a later run in this process starts clean.
        provider.shutdown()

    return provider, stop
