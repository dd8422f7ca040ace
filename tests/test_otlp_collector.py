"""A real OpenTelemetry collector (Rotel, from PyPI) between the SDK and our receiver: one
span, one log record and one metric sent to the collector over OTLP (gRPC, then HTTP) come
out at the :class:`~tests.peers.OtlpReceiver` it forwards to, unchanged where it matters
(names, trace IDs, the service resource)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from .collector_peer import rotel_collector
from .peers import SIGNALS, OtlpReceiver, wait_for

pytestmark = [pytest.mark.services, pytest.mark.realtime]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def exporters(protocol: str, endpoint: str) -> tuple[Any, Any, Any]:
    """The SDK's OTLP span, log and metric exporters for ``protocol`` (``grpc``/``http``)."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=5),
            OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=5),
            OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=5),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetrics,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpans,
    )

    return (
        HttpSpans(endpoint=f"{endpoint}/v1/traces", timeout=5),
        HttpLogs(endpoint=f"{endpoint}/v1/logs", timeout=5),
        HttpMetrics(endpoint=f"{endpoint}/v1/metrics", timeout=5),
    )


@pytest.mark.realtime
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_one_span_one_log_one_metric_pass_through_a_real_collector(
    protocol: str, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """SDK → Rotel (OTLP/``protocol``) → OtlpReceiver (OTLP/gRPC): the span, the log record
    emitted inside it and the histogram point recorded inside it all arrive, each exactly
    once, with the span's trace ID on the record and on the metric's exemplar and the
    service's resource on all three."""
    resource = Resource.create({"service.name": f"through-rotel-{protocol}"})
    with rotel_collector(receiver.endpoint, tmp_path / "rotel") as collector:
        endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
        span_exporter, log_exporter, metric_exporter = exporters(protocol, endpoint)
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
        meter_provider = MeterProvider(
            resource=resource,
            metric_readers=[
                PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
            ],
        )
        duration = meter_provider.get_meter("test").create_histogram(
            "http.server.request.duration", unit="s"
        )
        with tracer_provider.get_tracer("test").start_as_current_span("GET /accounts") as span:
            logger_provider.get_logger("sample_app").emit(
                timestamp=time.time_ns(),
                body="account scraped",
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                attributes={"platform": "twitter"},
            )
            duration.record(0.125, {"http.route": "/accounts"})
        trace_id = format(span.get_span_context().trace_id, "032x")
        for provider in (tracer_provider, logger_provider, meter_provider):
            provider.shutdown()  # flushes each exporter into the collector

        def all_three() -> bool:
            return bool(receiver.spans() and receiver.log_records() and receiver.metric_points())

        arrived = wait_for(all_three, timeout=20)
        assert arrived, (receiver.calls_by_signal, collector.output())

    (forwarded_span,) = receiver.spans()
    assert forwarded_span["name"] == "GET /accounts"
    assert forwarded_span["trace_id"] == trace_id
    (record,) = receiver.log_records()
    assert record["body"] == "account scraped"
    assert record["severity_text"] == "INFO"
    assert record["trace_id"] == trace_id
    assert record["attributes"] == {"platform": "twitter"}
    (point,) = receiver.metric_points()
    assert point["name"] == "http.server.request.duration"
    assert point["kind"] == "histogram"
    assert point["count"] == 1
    assert point["sum"] == pytest.approx(0.125)
    assert [e["trace_id"] for e in point["exemplars"]] == [trace_id]
    services = {forwarded_span["service"], record["service"], point["service"]}
    assert services == {f"through-rotel-{protocol}"}
    # Each came from the collector, not straight from the SDK.
    agents = {
        m.get("user-agent", "").split("/")[0]
        for s in SIGNALS
        for m in receiver.metadata_by_signal[s]
    }
    assert agents == {"Rotel Rust"}
