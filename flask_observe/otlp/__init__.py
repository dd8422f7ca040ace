"""Logs and metrics over OTLP, next to the traces, all three to one collector.

The logging feature's records (the same fields the JSON files get) go through the
OpenTelemetry SDK's logs pipeline, and the request, outbound, SQL and process metrics through
its metrics pipeline with a periodic OTLP export, named per the current semantic conventions,
beside or instead of Prometheus' ``/metrics``. Both are off unless asked for: by the SDK's own
switches (``OTEL_LOGS_EXPORTER=otlp``, ``OTEL_METRICS_EXPORTER=otlp``, a per-signal endpoint)
or by ``OBSERVE_OTLP_*`` keys. See docs/otlp.md.

This module is imported without OpenTelemetry installed; the SDK is imported when a pipeline
is turned on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .logs import LogsPipeline
    from .metrics import OtlpMetrics

__all__ = ["LogsPipeline", "OtlpLogs", "OtlpMetrics"]


class OtlpLogs:
    """The OTLP logs of one app (``Observe.find(OtlpLogs, app)``).

    :ivar pipeline: the process's logs pipeline (shared by the apps of one process, as the
        root logger's handlers are).
    :ivar exporter_name: ``otlp-grpc``, ``otlp-http`` or ``console``.
    """

    def __init__(self, pipeline: LogsPipeline, exporter_name: str) -> None:
        self.pipeline = pipeline
        self.exporter_name = exporter_name

    def stats(self) -> dict[str, int | None]:
        """Lines queued, dropped, exported and failed since start."""
        return self.pipeline.stats()


def __getattr__(name: str) -> object:
    if name == "OtlpMetrics":
        from .metrics import OtlpMetrics

        return OtlpMetrics
    if name == "LogsPipeline":
        from .logs import LogsPipeline

        return LogsPipeline
    raise AttributeError(name)
