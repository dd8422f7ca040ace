"""The OTLP/gRPC receiver of :mod:`tests.peers`, proven with the OpenTelemetry SDK's own
exporters: logs (``LoggerProvider`` + ``BatchLogRecordProcessor``), metrics (``MeterProvider`` +
``PeriodicExportingMetricReader``) and traces reach it on one port, and its hang mode takes an
export call of the chosen signal and never answers it while the other signals go on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .peers import SIGNALS, OtlpReceiver, wait_for

RESOURCE = Resource.create({"service.name": "otlp-receiver-test"})


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def test_sdk_log_exporter_records_reach_the_receiver(receiver: OtlpReceiver) -> None:
    """A log record emitted inside a span, through LoggerProvider + BatchLogRecordProcessor +
    OTLPLogExporter, arrives as one LogRecord with its body, severity, attributes, the span's
    trace and span IDs (taken from the current context) and the service resource."""
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=receiver.endpoint, insecure=True))
    )
    tracer = TracerProvider(resource=RESOURCE).get_tracer("test")
    logger = provider.get_logger("sample_app.scraper")
    stamp = time.time_ns()
    with tracer.start_as_current_span("scrape") as span:
        logger.emit(
            timestamp=stamp,
            body="account scraped",
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes={"platform": "twitter", "followers": 1042},
        )
    context = span.get_span_context()
    assert provider.force_flush(10_000)
    provider.shutdown()

    (record,) = receiver.log_records()
    assert record["body"] == "account scraped"
    assert record["severity_text"] == "WARN"
    assert record["severity_number"] == 13  # SeverityNumber.WARN
    assert record["trace_id"] == format(context.trace_id, "032x")
    assert record["span_id"] == format(context.span_id, "016x")
    assert record["attributes"]["platform"] == "twitter"
    assert record["attributes"]["followers"] == 1042
    assert record["service"] == "otlp-receiver-test"
    assert record["time_unix_nano"] == stamp
    assert record["observed_time_unix_nano"] >= stamp
    assert receiver.calls_by_signal == {"traces": 0, "logs": 1, "metrics": 0}


@pytest.mark.realtime
def test_sdk_periodic_metric_reader_exports_reach_the_receiver(receiver: OtlpReceiver) -> None:
    """A counter and a histogram recorded inside a span, exported by the
    PeriodicExportingMetricReader on its own schedule (no flush), arrive as a monotonic
    cumulative sum and a histogram with its count, sum, buckets and an exemplar carrying the
    span's trace ID."""
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=receiver.endpoint, insecure=True),
        export_interval_millis=200,
    )
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("flask_observe.test")
    duration = meter.create_histogram("http.server.request.duration", unit="s")
    requests = meter.create_counter("scraper.accounts.scraped", unit="{account}")
    tracer = TracerProvider(resource=RESOURCE).get_tracer("test")
    attributes = {"http.request.method": "GET", "http.route": "/accounts/<id>"}
    with tracer.start_as_current_span("GET /accounts/<id>") as span:
        duration.record(0.05, {**attributes, "http.response.status_code": 200})
        duration.record(0.2, {**attributes, "http.response.status_code": 200})
        requests.add(3, {"platform": "twitter"})
    trace_id = format(span.get_span_context().trace_id, "032x")

    def exported() -> list[dict[str, Any]]:
        names = {p["name"] for p in receiver.metric_points()}
        return receiver.metric_points() if len(names) >= 2 else []

    points = wait_for(exported, timeout=10)
    provider.shutdown()
    assert points, "the periodic reader exported nothing within 10 s"
    histogram = next(p for p in points if p["name"] == "http.server.request.duration")
    assert histogram["kind"] == "histogram"
    assert histogram["unit"] == "s"
    assert histogram["count"] == 2
    assert histogram["sum"] == pytest.approx(0.25)
    assert sum(histogram["bucket_counts"]) == 2
    assert histogram["explicit_bounds"]
    assert histogram["attributes"]["http.route"] == "/accounts/<id>"
    assert trace_id in {e["trace_id"] for e in histogram["exemplars"]}
    counter = next(p for p in points if p["name"] == "scraper.accounts.scraped")
    assert counter["kind"] == "sum"
    assert counter["monotonic"] is True
    assert counter["temporality"] == 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
    assert counter["value"] == 3
    assert counter["service"] == "otlp-receiver-test"


def test_one_port_serves_traces_logs_and_metrics_of_one_trace(receiver: OtlpReceiver) -> None:
    """The three SDK exporters pointed at the same endpoint: the span, the log line and the
    metric's exemplar of one operation all arrive, with one trace ID, each counted under its
    own signal."""
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True))
    )
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=receiver.endpoint, insecure=True))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=receiver.endpoint, insecure=True),
        export_interval_millis=60_000,  # flushed by shutdown below
    )
    meter_provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    duration = meter_provider.get_meter("test").create_histogram("http.server.request.duration")
    logger = logger_provider.get_logger("test")
    with tracer_provider.get_tracer("test").start_as_current_span("GET /") as span:
        logger.emit(body="handled", severity_number=SeverityNumber.INFO)
        duration.record(0.01)
    trace_id = format(span.get_span_context().trace_id, "032x")
    for provider in (tracer_provider, logger_provider, meter_provider):
        provider.shutdown()

    assert [s["trace_id"] for s in receiver.spans()] == [trace_id]
    assert [r["trace_id"] for r in receiver.log_records()] == [trace_id]
    (point,) = receiver.metric_points()
    assert [e["trace_id"] for e in point["exemplars"]] == [trace_id]
    assert {signal: len(receiver.received[signal]) for signal in SIGNALS} == {
        "traces": 1,
        "logs": 1,
        "metrics": 1,
    }


def _export_one(signal: str, endpoint: str, timeout: float) -> Callable[[], bool]:
    """A function that exports one item of ``signal`` to ``endpoint`` with the SDK's OTLP
    exporter (``timeout`` seconds) and says whether the export succeeded."""
    if signal == "traces":
        memory = InMemorySpanExporter()
        tracer_provider = TracerProvider(resource=RESOURCE)
        tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
        with tracer_provider.get_tracer("test").start_as_current_span("op"):
            pass
        spans = memory.get_finished_spans()
        span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=timeout)
        return lambda: span_exporter.export(spans) is SpanExportResult.SUCCESS
    if signal == "logs":
        captured = InMemoryLogRecordExporter()
        logger_provider = LoggerProvider(resource=RESOURCE)
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(captured))
        logger_provider.get_logger("test").emit(body="one line")
        records = captured.get_finished_logs()
        log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=timeout)
        return lambda: log_exporter.export(records).name == "SUCCESS"
    memory_reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=RESOURCE, metric_readers=[memory_reader])
    meter_provider.get_meter("test").create_counter("ops").add(1)
    data = memory_reader.get_metrics_data()
    metric_exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=timeout)
    return lambda: metric_exporter.export(data) is MetricExportResult.SUCCESS


@pytest.mark.realtime
@pytest.mark.parametrize("signal", SIGNALS)
def test_hang_mode_takes_the_call_never_answers_and_the_other_signals_go_on(
    signal: str,
) -> None:
    """``OtlpReceiver(hang={signal})``: the SDK exporter's call arrives (counted) and gets no
    answer, so the export fails at the exporter's own 1 s timeout with nothing recorded; the
    other two signals are answered meanwhile; ``stop()`` releases the hung call."""
    with OtlpReceiver(hang={signal}) as stuck:
        hung_export = _export_one(signal, stuck.endpoint, timeout=1.0)
        outcome: dict[str, Any] = {}

        def run() -> None:
            started = time.monotonic()
            outcome["ok"] = hung_export()
            outcome["elapsed"] = time.monotonic() - started

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert wait_for(lambda: stuck.calls_by_signal[signal] >= 1, timeout=5)
        others = [s for s in SIGNALS if s != signal]
        for other in others:  # answered while the hung call is held
            assert _export_one(other, stuck.endpoint, timeout=5.0)(), other
        thread.join(10)
        assert not thread.is_alive()
        assert outcome["ok"] is False
        assert 0.9 <= outcome["elapsed"] <= 3.0, outcome
        assert stuck.received[signal] == []
        assert all(len(stuck.received[other]) == 1 for other in others)
    started = time.monotonic()
    stuck.stop()  # a second stop is harmless and quick
    assert time.monotonic() - started < 2


def test_hang_rejects_a_signal_it_does_not_serve() -> None:
    """A typo in the hang set is an error, not a receiver that silently answers."""
    with pytest.raises(ValueError, match="profiles"):
        OtlpReceiver(hang={"logs", "profiles"})
