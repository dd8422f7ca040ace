"""A local OTLP/gRPC collector for the benchmarks: answers every export at once and counts
what it got (traces, log records, metric points), so a configuration that exports pays for
the real encoding and the real gRPC call, not for a stand-in.

It runs in the benchmark's parent process, on loopback; its endpoint reaches the children
through ``BENCH_OTLP_ENDPOINT`` (:data:`ENDPOINT_VAR`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["ENDPOINT_VAR", "Collector"]

ENDPOINT_VAR = "BENCH_OTLP_ENDPOINT"


class Collector:
    """``with Collector() as collector:`` serves on ``collector.endpoint``."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import (
            metrics_service_pb2,
            metrics_service_pb2_grpc,
        )
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.counts = {"spans": 0, "log_records": 0, "metric_points": 0}
        lock = threading.Lock()
        counts = self.counts

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                n = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
                with lock:
                    counts["log_records"] += n
                return logs_service_pb2.ExportLogsServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                n = sum(len(s.metrics) for r in request.resource_metrics for s in r.scope_metrics)
                with lock:
                    counts["metric_points"] += n
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with lock:
                    counts["spans"] += n
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Collector:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)
