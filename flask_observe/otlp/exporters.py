"""Which exporter each signal uses, and exporters built in the process that exports.

The SDK's OTLP exporters read their own variables (``OTEL_EXPORTER_OTLP_[LOGS_|METRICS_]*``:
endpoint when none is configured here, headers, timeout, compression, certificates). The
choice between them follows the SDK's switches: ``OTEL_LOGS_EXPORTER`` /
``OTEL_METRICS_EXPORTER`` and ``OTEL_EXPORTER_OTLP_[LOGS_|METRICS_]PROTOCOL``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from .._internal import FailureLog, PerProcess

__all__ = ["ProcessLocal", "choose_exporter", "log_exporter_factory", "metric_exporter_factory"]

T = TypeVar("T")
_PATHS = {"logs": "/v1/logs", "metrics": "/v1/metrics"}


def choose_exporter(
    signal: str, exporter: str | None, endpoint: str | None, environ: Mapping[str, str]
) -> str:
    """The exporter of ``signal`` (``logs``, ``metrics``): the configured one; else what
    ``OTEL_<SIGNAL>_EXPORTER`` names (``otlp`` over the signal's protocol: gRPC unless
    ``http/…``); else OTLP when an endpoint of the signal is configured; else ``none``.

    ``OTEL_EXPORTER_OTLP_ENDPOINT`` alone (the traces' usual switch) does not turn logs or
    metrics on: a service exporting traces does not start shipping every log line by surprise.
    """
    if exporter is not None:
        return exporter
    upper = signal.upper()
    named = environ.get(f"OTEL_{upper}_EXPORTER", "").split(",")[0].strip().lower()
    if named in ("none", "console"):
        return named
    if named == "otlp" or endpoint or environ.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"):
        protocol = (
            environ.get(f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        )
        return "otlp-http" if protocol.strip().lower().startswith("http") else "otlp-grpc"
    return "none"


def _http_endpoint(signal: str, endpoint: str | None) -> str | None:
    if endpoint and urlsplit(endpoint).path in ("", "/"):
        # The HTTP exporters take the full URL; a configured base gets the signal's path.
        return endpoint.rstrip("/") + _PATHS[signal]
    return endpoint


def log_exporter_factory(name: str, endpoint: str | None) -> Callable[[], Any] | None:
    """A function building the named log record exporter (``None`` for ``none``)."""
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        return lambda: ConsoleLogRecordExporter(out=sys.stderr)  # stdout carries the JSON lines
    if name == "otlp-grpc":
        grpc = _grpc_log_exporter()
        return lambda: grpc(endpoint=endpoint) if endpoint else grpc()
    http = _http_log_exporter()
    url = _http_endpoint("logs", endpoint)
    return lambda: http(endpoint=url) if url else http()


def _grpc_log_exporter() -> type:
    """The SDK's OTLP/gRPC log exporter, also sending a batch already encoded
    (:class:`~flask_observe.otlp.encoding.Encoded`) as it is: through the exporter's own
    channel, headers, timeout and retries, with a stub that sends the bytes instead of
    serializing a message (when this SDK builds its stub the way it is known to)."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceResponse,
    )

    from .encoding import Encoded

    class RawLogsStub:
        """``LogsServiceStub`` taking the request serialized already."""

        def __init__(self, channel: Any) -> None:
            self.Export = channel.unary_unary(
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                request_serializer=None,  # bytes, sent as they are
                response_deserializer=ExportLogsServiceResponse.FromString,
            )

    class GrpcLogExporter(OTLPLogExporter):
        # OTLPExporterMixin._export asks _translate_data for the request it sends.
        takes_encoded = hasattr(OTLPLogExporter, "_translate_data")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # The mixin makes its client from _stub (again after a reconnection).
            if getattr(self, "_stub", None) is not None and hasattr(self, "_channel"):
                self._stub = RawLogsStub
                self._client = RawLogsStub(self._channel)  # type: ignore[assignment]

        def _translate_data(self, data: Any) -> Any:
            raw = isinstance(getattr(self, "_client", None), RawLogsStub)
            if isinstance(data, Encoded):
                return data.data if raw else data.request
            request = encode_logs(data)
            return request.SerializeToString() if raw else request

        def _count_data(self, data: Any) -> int:
            return len(data)

    return GrpcLogExporter


MAX_REQUEST_BYTES = 64 * 1024 * 1024


def _http_log_exporter() -> type:
    """The SDK's OTLP/HTTP log exporter, also sending a batch already encoded through its own
    client (compression, headers, timeout, retries), when this SDK has that client."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    from .encoding import Encoded

    class HttpLogExporter(OTLPLogExporter):
        takes_encoded = False
        #: An encoded batch larger than this is not sent (the SDK's limit: 64 MiB).
        max_request_bytes: int = MAX_REQUEST_BYTES

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            client = getattr(self, "_client", None)
            self.takes_encoded = callable(getattr(client, "export", None))

        def export(self, batch: Any) -> LogRecordExportResult:
            if not isinstance(batch, Encoded):
                return super().export(batch)
            if getattr(self, "_shutdown", False):
                return LogRecordExportResult.FAILURE
            if len(batch.data) > self.max_request_bytes:
                # The SDK's own size check (its encoder's path refuses these too): a request
                # this large is never sent, so what goes out stays bounded.
                return LogRecordExportResult.FAILURE
            sent = self._client.export(batch.data)
            ok = bool(getattr(sent, "success", False))
            return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    return HttpLogExporter


def metric_exporter_factory(name: str, endpoint: str | None) -> Callable[[], Any] | None:
    """A function building the named metric exporter (``None`` for ``none``)."""
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return lambda: ConsoleMetricExporter(out=sys.stderr)
    if name == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return lambda: OTLPMetricExporter(endpoint=endpoint) if endpoint else OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetrics,
    )

    url = _http_endpoint("metrics", endpoint)
    return lambda: HttpMetrics(endpoint=url) if url else HttpMetrics()


class ProcessLocal(Generic[T]):
    """The exporter ``factory`` builds, made on first use in each process: after a fork
    (gunicorn ``--preload``) the child builds its own gRPC channel or HTTP session instead of
    using the parent's.

    :ivar exported: items the exporter took.
    :ivar failed: items whose export failed (or raised).
    """

    def __init__(self, factory: Callable[[], T], what: str) -> None:
        self._made = PerProcess(factory)
        self._what = what
        self._counts = threading.Lock()
        self.exported = 0
        self.failed = 0
        self.in_flight = 0
        self.failures = FailureLog()

    def current(self) -> T:
        return self._made.get()

    def built_here(self) -> T | None:
        """The exporter of this process, if it made one."""
        return self._made.built_here()

    def begin(self, count: int) -> None:
        with self._counts:
            self.in_flight = count

    def end(self, count: int, ok: bool) -> None:
        with self._counts:
            self.in_flight = 0
            if ok:
                self.exported += count
            else:
                self.failed += count

    def unsent(self) -> tuple[int, int]:
        """``(failed, in_flight)`` read together."""
        with self._counts:
            return self.failed, self.in_flight
