"""OpenTelemetry: the instruments, the spans, trace propagation, and no customer data anywhere.

Uses the SDK's ``InMemoryMetricReader`` and ``InMemorySpanExporter`` through providers passed
to the client (the global ones are never set in this process: other tests must not be
instrumented behind their backs). The global-provider path runs in a subprocess.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from _data import COMPANY, REGISTRATION
from _local_server import LocalServer, ok, reset, status
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from aopay_async import AOPayClient, AOPayError
from aopay_async._client import PATH
from aopay_async._otel import DURATION_BUCKETS
from aopay_async.events import Event
from aopay_async.testing import FAULTS, SandboxServer

SEMCONV_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]


@dataclass
class Telemetry:
    """Providers wired to in-memory outputs, and readers of what they got."""

    meter_provider: MeterProvider
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter

    def points(self, name: str) -> list[Any]:
        """Every data point of the metric called *name*."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metrics(self) -> list[Any]:
        """Every metric recorded."""
        data = self.reader.get_metrics_data()
        return [
            metric
            for resource in (data.resource_metrics if data else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ]

    def spans(self) -> list[ReadableSpan]:
        """Every finished span, in the order they ended."""
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """Fresh SDK providers with in-memory outputs, shut down after the test."""
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Telemetry(meter_provider, reader, tracer_provider, exporter)
    meter_provider.shutdown()
    tracer_provider.shutdown()


def client_for(url: str, telemetry: Telemetry, **options: Any) -> AOPayClient:
    """A client on *url* reporting to *telemetry*; no rate limit and zero backoff by default."""
    settings: dict[str, Any] = {"rate_limit": None, "backoff_base": 0.0}
    settings.update(options)
    return AOPayClient(
        COMPANY,
        REGISTRATION,
        base_url=url,
        meter_provider=telemetry.meter_provider,
        tracer_provider=telemetry.tracer_provider,
        **settings,
    )


def base_attributes(server: LocalServer) -> dict[str, Any]:
    """The attributes every attempt on the local server shares."""
    return {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": int(server.url.rsplit(":", 1)[1]),
        "url.template": PATH,
    }


async def test_one_duration_point_per_attempt_with_exactly_the_listed_attributes(
    local_server: LocalServer, telemetry: Telemetry
) -> None:
    """``http.client.request.duration``: seconds, the conventions' buckets, one point an attempt,
    attributes exactly method, server, port, template, status and (on errors) error.type."""
    local_server.reply(status(503), reset(), ok())
    async with client_for(local_server.url, telemetry) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77")
    (metric,) = [m for m in telemetry.metrics() if m.name == "http.client.request.duration"]
    assert metric.unit == "s"
    points = telemetry.points("http.client.request.duration")
    base = base_attributes(local_server)
    got = sorted((dict(p.attributes) for p in points), key=str)
    assert got == sorted(
        [
            {**base, "http.response.status_code": 503, "error.type": "503"},
            {**base, "error.type": "APIConnectionError"},
            {**base, "http.response.status_code": 200},
        ],
        key=str,
    )
    assert all(p.count == 1 for p in points)
    assert all(list(p.explicit_bounds) == SEMCONV_BUCKETS for p in points)
    assert list(DURATION_BUCKETS) == SEMCONV_BUCKETS


async def test_retries_are_counted_by_reason(
    local_server: LocalServer, telemetry: Telemetry
) -> None:
    """``aopay.client.retries`` counts each retry under the failure that caused it."""
    local_server.reply(status(503), status(429, headers={"Retry-After": "0"}), reset(), ok())
    async with client_for(local_server.url, telemetry) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77")
    counts = {p.attributes["error.type"]: p.value for p in telemetry.points("aopay.client.retries")}
    assert counts == {"503": 1, "429": 1, "APIConnectionError": 1}


async def test_limiter_waits_are_a_histogram_in_seconds(
    local_server: LocalServer, telemetry: Telemetry
) -> None:
    """``aopay.limiter.wait.duration`` records each limiter pass; the held-back ones wait."""
    local_server.reply(ok())
    async with client_for(local_server.url, telemetry, rate_limit=20.0, burst=1) as client:
        for _ in range(3):
            await client.get_credit_history(cibil_id="SYNCIBIL77")
    (metric,) = [m for m in telemetry.metrics() if m.name == "aopay.limiter.wait.duration"]
    assert metric.unit == "s"
    (point,) = metric.data.data_points
    assert point.count == 3
    assert point.sum >= 0.05  # two of the three waited ~1/20 s for a token
    assert dict(point.attributes) == {}


async def test_bulk_items_are_counted_by_outcome(
    local_server: LocalServer, telemetry: Telemetry
) -> None:
    """``aopay.bulk.items`` counts each item under ok or its error class."""
    local_server.reply(ok())
    async with client_for(local_server.url, telemetry) as client:
        results = [r async for r in client.bulk_credit_history(["A1", "A2", 7])]
    assert len(results) == 3
    counts = {p.attributes["aopay.outcome"]: p.value for p in telemetry.points("aopay.bulk.items")}
    assert counts == {"ok": 2, "InvalidRequestError": 1}


async def test_one_internal_span_per_call_and_one_client_span_per_attempt(
    local_server: LocalServer, telemetry: Telemetry
) -> None:
    """The call is an INTERNAL span; each attempt a CLIENT span ``GET`` under it, with
    ``http.request.resend_count`` on retries only and an error status on failed attempts."""
    local_server.reply(status(503), ok())
    async with client_for(local_server.url, telemetry) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77", client_order_id="ord-s")
    spans = telemetry.spans()
    (call,) = [s for s in spans if s.kind is SpanKind.INTERNAL]
    attempts = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert call.name == "GetCreditHistory"
    assert [s.name for s in attempts] == ["GET", "GET"]
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in attempts)
    base = base_attributes(local_server)
    url = local_server.url + PATH
    assert dict(attempts[0].attributes or {}) == {
        **base,
        "url.full": url,
        "http.response.status_code": 503,
        "error.type": "503",
    }
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert dict(attempts[1].attributes or {}) == {
        **base,
        "url.full": url,
        "http.request.resend_count": 1,
        "http.response.status_code": 200,
        "aopay.reference": "23081815284725JQJCESXDTP2",
    }
    assert attempts[1].status.status_code is StatusCode.UNSET
    assert dict(call.attributes or {}) == {
        "aopay.client_order_id": "ord-s",
        "aopay.attempts": 2,
        "aopay.reference": "23081815284725JQJCESXDTP2",
    }
    assert call.status.status_code is StatusCode.UNSET


async def test_a_failed_call_sets_error_status_on_its_span(
    local_server: LocalServer, telemetry: Telemetry
) -> None:
    """A call that fails ends its INTERNAL span with an error status and ``error.type``."""
    local_server.reply(status(401, b'{"responsecode":401,"status":false,"message":"bad"}'))
    async with client_for(local_server.url, telemetry) as client:
        with pytest.raises(AOPayError):
            await client.get_credit_history(cibil_id="SYNCIBIL77")
    (call,) = [s for s in telemetry.spans() if s.kind is SpanKind.INTERNAL]
    assert call.status.status_code is StatusCode.ERROR
    assert (call.attributes or {})["error.type"] == "401"


async def test_each_attempt_carries_its_span_in_traceparent(
    local_server: LocalServer, telemetry: Telemetry
) -> None:
    """With the default propagator, each attempt sends ``traceparent`` naming its CLIENT span."""
    local_server.reply(status(503), ok())
    async with client_for(local_server.url, telemetry) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77")
    attempts = [s for s in telemetry.spans() if s.kind is SpanKind.CLIENT]
    sent = [seen.headers.get("traceparent", "").split("-") for seen in local_server.seen]
    assert [parts[:3] for parts in sent] == [
        ["00", f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}"] for s in attempts
    ]
    assert all(int(parts[3], 16) & 1 for parts in sent)  # sampled


async def test_without_a_tracer_no_trace_header_is_sent(local_server: LocalServer) -> None:
    """A client nobody traces sends exactly the headers it always sent."""
    local_server.reply(ok())
    async with AOPayClient(COMPANY, REGISTRATION, base_url=local_server.url) as client:
        await client.get_credit_history(cibil_id="SYNCIBIL77")
    assert "traceparent" not in local_server.seen[0].headers


def test_the_global_providers_are_used_when_none_are_given() -> None:
    """An application that set global providers gets metrics and spans with no client option."""
    script = """
        import asyncio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from aopay_async import AOPayClient
        from aopay_async.testing import SandboxServer

        reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)

        async def main():
            async with SandboxServer() as server:
                async with AOPayClient("CMP1045", "AOP-554", base_url=server.url) as client:
                    await client.get_credit_history(cibil_id="SYNTH001")

        asyncio.run(main())
        names = sorted(
            m.name
            for r in reader.get_metrics_data().resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
        )
        print(names)
        print(sorted(s.name for s in exporter.get_finished_spans()))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    metric_line, span_line = done.stdout.splitlines()
    assert "'http.client.request.duration'" in metric_line
    assert "'aopay.limiter.wait.duration'" in metric_line
    assert span_line == "['GET', 'GetCreditHistory']"


# -- no customer value or credential, anywhere -----------------------------------------------

#: One synthetic customer per outcome: a success, every fault the sandbox can inject, and
#: wrong credentials.
OUTCOMES = ["ok", *sorted(FAULTS)]


def customer_values(server: SandboxServer, cibil_id: str) -> set[str]:
    """The synthetic customer's values that must never be reported."""
    profile = server.customer(cibil_id)
    values = {
        cibil_id,
        profile.masked_cibil_id,
        profile.first_name,
        profile.last_name,
        profile.mobile_number,
        profile.mobile_number.rstrip("*"),
    }
    if profile.middle_name:
        values.add(profile.middle_name)
    for account in profile.accounts:
        values.update({account.account_number, account.account_detail_id.rstrip("*")})
    return {v for v in values if len(v) >= 4}


def vars_of(event: Event) -> list[object]:
    """Every field value of *event*."""
    return [getattr(event, f.name) for f in dataclasses.fields(event)]


def texts_of(value: object) -> Iterator[str]:
    """Every string inside *value* (attribute values, nested sequences and mappings)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from texts_of(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from texts_of(item)
    elif value is not None:
        yield repr(value)


async def test_no_customer_value_or_credential_in_any_log_metric_or_span(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    """Over a success, every sandbox fault and wrong credentials, with everything listening:
    no log record, event, metric attribute or span attribute holds a customer value, the
    company code, the registration id or an access token."""
    caplog.set_level(logging.DEBUG, logger="aopay_async")
    events: list[Event] = []
    secrets = {COMPANY, REGISTRATION}
    ids = {outcome: f"SYN{n:03d}LEAK{outcome.upper()}" for n, outcome in enumerate(OUTCOMES)}
    async with SandboxServer(
        scripts={ids[o]: [o, "*"] for o in OUTCOMES if o != "ok"},
        retry_after=0,
        slow_seconds=0.05,
    ) as server:
        for cibil_id in ids.values():
            secrets |= customer_values(server, cibil_id)
        # No breaker: every fault id fails for itself, which an open circuit would hold
        # for minutes (the breaker has its own tests in tests/test_resilience.py).
        async with client_for(
            server.url,
            telemetry,
            max_retries=1,
            event_hooks=[events.append],
            circuit_breaker=None,
        ) as client:
            for cibil_id in ids.values():
                try:
                    history = await client.get_credit_history(cibil_id=cibil_id)
                except AOPayError:
                    continue
                assert history.access_token
                secrets.add(history.access_token)
            results = [r async for r in client.bulk_credit_history(list(ids.values()))]
            assert any(not r.ok for r in results)
        async with client_for(server.url, telemetry, max_retries=0) as wrong:
            wrong._company_code = "CMPWRONG9"  # a credential the server refuses
            secrets.add("CMPWRONG9")
            with pytest.raises(AOPayError):
                await wrong.get_credit_history(cibil_id=ids["ok"])

    reported: list[str] = []
    for record in caplog.records:
        reported.append(record.getMessage())
        # Strings only: the record's float timestamps can hold any run of digits by chance.
        reported.extend(v for v in vars(record).values() if isinstance(v, str))
        reported.extend(texts_of(record.args))
    for event in events:
        reported.extend(v for v in vars_of(event) if isinstance(v, str))
    for metric in telemetry.metrics():
        for point in metric.data.data_points:
            reported.extend(texts_of(dict(point.attributes)))
    spans = telemetry.spans()
    for span in spans:
        reported.append(span.name)
        reported.extend(texts_of(dict(span.attributes or {})))
        reported.append(span.status.description or "")
        for span_event in span.events:
            reported.extend(texts_of(dict(span_event.attributes or {})))
    assert len(spans) > len(OUTCOMES)
    assert len([r for r in caplog.records if r.name == "aopay_async.client"]) > len(OUTCOMES)
    leaks = {secret for secret in secrets for text in reported if secret in text}
    assert leaks == set()


def test_the_readme_example_prints_a_metric_and_a_span() -> None:
    """The README's OpenTelemetry example runs as it stands and prints metrics and spans."""
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    after = readme.split("This runs as it stands", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("http.client.request.duration {") for line in lines)
    assert any(line.startswith("aopay.client.retries {'error.type': '503'} 1") for line in lines)
    assert any(line.startswith("CLIENT GET {") for line in lines)
    assert any(line.startswith("INTERNAL GetCreditHistory {") for line in lines)


def test_unset_global_providers_do_not_count_as_configured() -> None:
    """The API's own proxies (what an unconfigured process has) never switch OpenTelemetry on."""
    from aopay_async._otel import configured_globally

    assert configured_globally() is False
    client = AOPayClient(COMPANY, REGISTRATION)
    assert client._observer.otel is None


def test_circuit_state_counts_clients_per_state(telemetry: Telemetry) -> None:
    """``aopay.circuit.state``: a client counts 1 in the state its circuit is in, 0 elsewhere."""
    client = client_for("http://127.0.0.1:9", telemetry)
    observer = client._observer  # the client counted itself "closed" when it was made
    observer.circuit_changed("closed", "open", retry_after=5.0)
    observer.circuit_changed("open", "half_open")
    values = {
        p.attributes["aopay.circuit.state"]: p.value
        for p in telemetry.points("aopay.circuit.state")
    }
    assert values == {"closed": 0, "open": 0, "half_open": 1}


@pytest.mark.parametrize(
    ("reports", "value"),
    [
        pytest.param([True], 1, id="taken over"),
        pytest.param([True, False], 0, id="given back"),
        pytest.param([False], 0, id="give-back without a takeover"),
        pytest.param([True, True, False, True], 1, id="taken over twice"),
    ],
)
async def test_fallback_counts_clients_on_a_fallback_until_they_close(
    telemetry: Telemetry, reports: list[bool], value: int
) -> None:
    """``aopay.limiter.fallback``: 1 while a client's shared limiter is on its fallback, 0
    once it is back, and 0 again when a client closes while on it."""
    client = client_for("http://127.0.0.1:9", telemetry)
    for active in reports:
        client._observer.fallback_limiter(active, "ConnectionError")
    assert sum(p.value for p in telemetry.points("aopay.limiter.fallback")) == value
    await client.aclose()
    assert sum(p.value for p in telemetry.points("aopay.limiter.fallback")) == 0
