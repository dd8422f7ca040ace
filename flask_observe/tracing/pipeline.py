"""The span pipeline of one app: resource, sampler, exporter, bounded queue, bounded shutdown.

Everything here is the OpenTelemetry SDK, configured: ``TracerProvider``, ``Resource``, a
parent-based sampler, ``BatchSpanProcessor`` (a bounded queue drained by a background thread)
and the OTLP/console exporters. The SDK reads its own ``OTEL_*`` variables (service name,
resource attributes, sampler, endpoint, headers, timeouts, queue sizes); what is added here is
what the SDK does not do for a web process:

- the exporter is built in the process that exports, so a gRPC channel is never shared across
  a fork (gunicorn ``--preload``): the SDK's batch processor already restarts its thread in a
  forked child, and :class:`ProcessLocalExporter` builds a fresh exporter there;
- requests to excluded paths and client spans without a parent are not recorded
  (:class:`ObserveSampler`);
- query strings and the client's address are removed from span attributes before export
  (:func:`redact_span`, on the export thread), as the access log leaves them out;
- spans dropped because the queue is full are counted (and the count logged), so a collector
  that is down or slow shows up without costing the host anything;
- shutdown (and process exit) waits for queued spans at most ``tracing_shutdown_timeout``
  seconds instead of the SDK's 30 s, then shuts the exporter down, which cancels an export
  call a hung collector never answered (a gRPC channel is closed), so the export thread ends.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

from .._internal import FailureLog, PerProcess
from .redact import redact_span

__all__ = [
    "ObserveSampler",
    "ObserveSpanProcessor",
    "ProcessLocalExporter",
    "build_resource",
    "exporter_factory",
    "ratio_sampler",
]

logger = logging.getLogger("flask_observe.tracing")

_DROP = SamplingResult(Decision.DROP)
#: How often, at most, the number of dropped spans is logged.
DROPPED_LOG_INTERVAL = 60.0


def build_resource(
    service_name: str | None,
    default_name: str,
    version: str | None,
    environment: str | None,
    detected: Mapping[str, Any] | None = None,
) -> Resource:
    """``service.name``, ``service.version``, ``deployment.environment[.name]``, over what was
    ``detected`` about the host and process (``conventions.detected_resource``).

    Configured values win; the SDK merges ``OTEL_RESOURCE_ATTRIBUTES`` and
    ``OTEL_SERVICE_NAME`` under them, over the detected ones; the app's name is the last
    resort for the service.
    """
    attributes: dict[str, str] = {}
    if service_name:
        attributes["service.name"] = service_name
    if version:
        attributes["service.version"] = version
    if environment:
        attributes["deployment.environment.name"] = environment
        attributes["deployment.environment"] = environment
    resource = Resource(dict(detected or {})).merge(Resource.create(attributes))
    ours = (detected or {}).get("service.instance.id")
    if ours and "service.instance.id=" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        # The SDK (1.3x on) makes a service.instance.id of its own in Resource.create: ours
        # is the one the process's other signals share and a forked child renews.
        resource = resource.merge(Resource({"service.instance.id": ours}))
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": default_name}))
    return resource


def ratio_sampler(rate: float) -> Sampler:
    """Parent-based: follow the caller's decision, else record ``rate`` of new traces."""
    return ParentBased(TraceIdRatioBased(rate))


def _path_of(attributes: Attributes) -> str | None:
    if not attributes:
        return None
    path = attributes.get("url.path")
    if path is not None:
        return str(path)
    target = attributes.get("http.target")
    if target is not None:
        return str(target).split("?", 1)[0]
    url = attributes.get("http.url")
    if url is None:
        return None
    try:
        return urlsplit(str(url)).path
    except ValueError:  # e.g. a malformed IPv6 host: nothing to match, the span is kept
        return None


class ObserveSampler(Sampler):
    """The configured sampler, after two rules of ours.

    - A server span for a path on the shared exclusion list (health probes, ``/metrics``) is
      not recorded, nor is anything under it.
    - A client span without a parent (SQL at start-up, a broker's polling, a call outside any
      request) is not recorded unless ``root_client_spans``: each would be a trace of its own.

    :param inner: decides everything else (``OTEL_TRACES_SAMPLER`` or the configured ratio).
    :param excluded: the compiled exclusion list, searched in the request path.
    """

    def __init__(
        self,
        inner: Sampler,
        excluded: Callable[[str], bool] | None,
        root_client_spans: bool = False,
    ) -> None:
        self.inner = inner
        self._excluded = excluded
        self._root_client_spans = root_client_spans

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.SERVER:
            if self._excluded is not None:
                path = _path_of(attributes)
                if path is not None and self._excluded(path):
                    return _DROP
        elif (
            kind is SpanKind.CLIENT
            and not self._root_client_spans
            and not get_current_span(parent_context).get_span_context().is_valid
        ):
            return _DROP
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"ObserveSampler{{{self.inner.get_description()}}}"


def exporter_factory(name: str, endpoint: str | None) -> Callable[[], SpanExporter] | None:
    """A function building the named exporter (``None`` for ``none``).

    The OTLP exporters read ``OTEL_EXPORTER_OTLP_*`` (endpoint when not configured here,
    headers, timeout, compression, certificates) themselves.
    """
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # stderr: standard output carries the JSON log lines.
        return lambda: ConsoleSpanExporter(out=sys.stderr)
    if name == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return lambda: GrpcExporter(endpoint=endpoint) if endpoint else GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    if endpoint and urlsplit(endpoint).path in ("", "/"):
        # The HTTP exporter takes the full URL; OTEL_EXPORTER_OTLP_ENDPOINT is the base.
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return lambda: HttpExporter(endpoint=endpoint) if endpoint else HttpExporter()


class ProcessLocalExporter(SpanExporter):
    """Builds the real exporter on first use in each process, and counts what it exported.

    It runs on the batch processor's thread, never on a request thread. After a fork the child
    builds its own exporter (its own gRPC channel or HTTP session) instead of using the
    parent's. With ``redact``, spans pass through :func:`redact_span` first.
    """

    def __init__(self, factory: Callable[[], SpanExporter], redact: bool = True) -> None:
        self._redact = redact
        self._made = PerProcess(factory)
        self._counts = threading.Lock()
        self.exported = 0
        self.failed = 0
        #: Spans of the batch being exported right now.
        self.in_flight = 0
        #: Called on the export thread after each batch (drop reports).
        self.after_export: Callable[[], None] | None = None
        self._failures = FailureLog()

    def _current(self) -> SpanExporter:
        return self._made.get()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        count = len(spans)
        with self._counts:
            self.in_flight = count
        try:
            if self._redact:
                spans = [redact_span(span) for span in spans]
            result = self._current().export(spans)
        except Exception:
            self._failures("exporting spans")
            result = SpanExportResult.FAILURE
        with self._counts:
            self.in_flight = 0
            if result is SpanExportResult.SUCCESS:
                self.exported += count
            else:
                self.failed += count
        if self.after_export is not None:
            try:
                self.after_export()
            except Exception:
                self._failures("reporting dropped spans")
        return result

    def shutdown(self, timeout_millis: float = 30_000, **_: Any) -> None:
        exporter = self._made.built_here()
        if exporter is None:
            return
        try:
            exporter.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
        except TypeError:
            exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        exporter = self._made.built_here()
        if exporter is None:
            return True
        return exporter.force_flush(timeout_millis)

    def unsent(self) -> tuple[int, int]:
        """``(failed, in_flight)`` read together."""
        with self._counts:
            return self.failed, self.in_flight


class ObserveSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor (bounded queue, background export), counting what it drops.

    When the queue is full the SDK (1.3x on) drops the oldest span and logs a WARNING for each
    one: with the collector down, a line per request in the app's own log. Here a full queue
    drops the oldest span the same way, without that line; the drops are counted, for
    :meth:`TracingSetup.stats` and a log line at most once a minute.
    """

    def __init__(self, exporter: SpanExporter, shutdown_timeout: float | None = None) -> None:
        super().__init__(exporter)
        self.shutdown_timeout = shutdown_timeout
        self.dropped = 0
        self._dropped_logged = 0
        self._last_report = -DROPPED_LOG_INTERVAL
        self._reporting = threading.Lock()
        batch = getattr(self, "_batch_processor", None)
        # SDK internals, read-only: the queue (a bounded deque) and its capacity. Without them
        # (another SDK version) the drops are only logged by the SDK itself.
        self._queue: Any = getattr(batch, "_queue", None)
        self.capacity: int | None = getattr(batch, "_max_queue_size", None)
        self._batch: Any = batch

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._queue
        if (
            queue is not None
            and len(queue) >= self.capacity  # type: ignore[operator]
            and span.context is not None
            and span.context.trace_flags.sampled
        ):
            self.dropped += 1
            batch = self._batch
            if (
                getattr(batch, "_pid", None) == os.getpid()
                and not getattr(batch, "_shutdown", True)
                and getattr(batch, "_queue", None) is queue
            ):
                # What the SDK's emit does with a full queue, minus its WARNING per span:
                # the bounded deque drops its oldest span to take this one. (A forked child
                # or a shut-down processor goes through the SDK, which resets or refuses.)
                self._queue.appendleft(span)
                if time.monotonic() - self._last_report >= DROPPED_LOG_INTERVAL:
                    # Also when no export ends (a collector that hangs each one to its timeout).
                    self.report_drops()
                return
        super().on_end(span)

    def queued(self) -> int | None:
        return len(self._queue) if self._queue is not None else None

    def shutdown(self) -> None:
        """Export what is queued for at most ``shutdown_timeout`` seconds, then shut the
        exporter down, which cancels an export still waiting for the collector.

        The SDK's own ``shutdown()`` waits up to 30 s for the export thread before it shuts
        the exporter down; its batch processor takes the wait as an argument.
        """
        batch: Any = getattr(self, "_batch_processor", None)
        timeout = self.shutdown_timeout
        if timeout is not None and batch is not None:
            try:
                batch.shutdown(timeout_millis=timeout * 1000)
                return
            except TypeError:  # an SDK whose batch processor takes no timeout
                pass
        super().shutdown()  # type: ignore[no-untyped-call]

    def report_drops(self) -> None:
        """Log how many spans were dropped since the last report (at most once a minute)."""
        # The export thread and a request thread may both report: one of them does.
        if not self._reporting.acquire(blocking=False):
            return
        try:
            now = time.monotonic()
            dropped = self.dropped
            if dropped == self._dropped_logged or now - self._last_report < DROPPED_LOG_INTERVAL:
                return
            previous, self._dropped_logged, self._last_report = self._dropped_logged, dropped, now
            logger.warning(
                "flask_observe: %d spans dropped (queue full: the collector is slow or"
                " unreachable)",
                dropped - previous,
                extra={"spans_dropped_total": dropped},
            )
        finally:
            self._reporting.release()
