"""Keys of the OTLP logs and metrics feature (docs/otlp.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md. The
OpenTelemetry SDK's own variables work as they do for any SDK exporter: ``OTEL_LOGS_EXPORTER``
and ``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``, ``none``), and
``OTEL_EXPORTER_OTLP_[LOGS_|METRICS_]ENDPOINT``/``PROTOCOL``/``HEADERS``/``TIMEOUT``,
``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_BLRP_*``, ``OTEL_RESOURCE_ATTRIBUTES``; a key set here
wins over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import choice, integer, key, number, opt_boolean, opt_text
from ..logging.settings import level

EXPORTERS = ("otlp-grpc", "otlp-http", "console", "none")


def opt_level(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return level(value)


def opt_seconds(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return number(0.001)(value)


@dataclass(frozen=True)
class OtlpSettings:
    """Keys of the OTLP logs and metrics feature."""

    #: Every log line also through the OpenTelemetry logs pipeline; ``None``: on when
    #: ``OTEL_LOGS_EXPORTER`` names an exporter, or a logs endpoint is configured
    #: (``OBSERVE_OTLP_LOGS_ENDPOINT``, ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``).
    otlp_logs_enabled: bool | None = key(None, opt_boolean)
    #: ``otlp-grpc``, ``otlp-http``, ``console`` or ``none``; ``None``: from
    #: ``OTEL_LOGS_EXPORTER`` and ``OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL`` (gRPC by default).
    otlp_logs_exporter: str | None = key(None, choice(*EXPORTERS, optional=True))
    #: Collector address; ``None``: ``OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT``.
    otlp_logs_endpoint: str | None = key(None, opt_text)
    #: Lowest level exported; ``None``: ``OBSERVE_LOG_LEVEL``.
    otlp_logs_level: str | None = key(None, opt_level)
    #: Log lines queued for export (the SDK batch processor's queue, so at most
    #: ``OTEL_BLRP_MAX_QUEUE_SIZE`` too); beyond, lines are dropped
    #: (counted, and the count logged once a minute), never waited for.
    otlp_logs_queue_size: int = key(2048, integer(1))
    #: Request, outbound, SQL and process metrics through the OpenTelemetry metrics pipeline
    #: (periodic OTLP export), beside or instead of ``/metrics``; ``None``: on when
    #: ``OTEL_METRICS_EXPORTER`` names an exporter or a metrics endpoint is configured.
    otlp_metrics_enabled: bool | None = key(None, opt_boolean)
    otlp_metrics_exporter: str | None = key(None, choice(*EXPORTERS, optional=True))
    otlp_metrics_endpoint: str | None = key(None, opt_text)
    #: Seconds between two exports; ``None``: ``OTEL_METRIC_EXPORT_INTERVAL`` (ms), else 60.
    otlp_metrics_interval_seconds: float | None = key(None, opt_seconds)
    #: Longest wait for queued log lines and the last metrics at shutdown and process exit.
    otlp_shutdown_timeout: float = key(2.0, number(0.0))
