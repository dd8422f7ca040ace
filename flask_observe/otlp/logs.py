"""Every log line through the OpenTelemetry SDK's batch processor and OTLP exporter, next to
the JSON files.

The bounded queue and its export thread are the SDK's ``BatchLogRecordProcessor``
(``OTEL_BLRP_*``), the transport is the SDK's OTLP exporter (``OTEL_EXPORTER_OTLP_LOGS_*``).
What is ours is the handler on the root logger, and what a line is on its way:

- :class:`OtlpLogHandler` sees the same records as the file handler and takes the fields the
  file's JSON formatter made of them (or makes them the same way:
  :class:`~flask_observe.logging.formatter.ObserveFormatter`), and takes the access line on
  the access log's fast path (``write_fields``). On the logging thread a line is only that
  tuple, appended to the SDK's bounded queue.
- On the SDK's export thread a batch of those tuples becomes the protobuf request directly
  (:mod:`.encoding`): 5.5-7.7 µs a line against 31-38 µs for the SDK's records and encoder
  (measured), which, for a service logging two lines a request, cost more than the file did.
  An exporter that cannot take an encoded batch (``console``, an SDK without the hook) gets
  the SDK's own records, made on the same thread.
- When the queue is full, lines are dropped, counted and the count logged once a minute,
  never waited for.
- Its own failures are never exported back into it: records of the ``opentelemetry`` loggers,
  and records logged on the export threads (the SDK's batch processor, the metric reader),
  still reach the files but not this handler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from os import getpid
from typing import TYPE_CHECKING, Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from .._internal import FailureLog, exit_flushes, run_with_deadline
from ..logging.formatter import FIELDS_ATTR, ObserveFormatter, merge_fields, structlog_context
from .encoding import Encoded, LineEncoder, attribute, severity_of
from .exporters import ProcessLocal

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

__all__ = ["LogsPipeline", "OtlpLogHandler"]

logger = logging.getLogger("flask_observe.otlp")

#: Loggers whose records never go into the pipeline (the SDK's and its exporters').
OWN_LOGGERS = ("opentelemetry",)
#: Threads whose records never go into the pipeline: what they log is about exporting.
EXPORT_THREADS = ("OtelBatch", "OtelPeriodic", "flask_observe-otlp")
#: Scopes (logger names) kept for the SDK's records; records of further loggers share one.
MAX_SCOPES = 512
DROPPED_LOG_INTERVAL = 60.0


class _Exporter(LogRecordExporter):
    """What the SDK's batch processor exports through: each batch of queued lines encoded
    (or made into the SDK's records) for the SDK's exporter, built in the process that
    exports; it counts what went, and reports the drops."""

    def __init__(self, pipeline: LogsPipeline, local: ProcessLocal[LogRecordExporter]) -> None:
        self.pipeline = pipeline
        self.local = local

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        count = len(batch)
        self.local.begin(count)
        try:
            exporter = self.local.current()
            if getattr(exporter, "takes_encoded", False):
                payload: Any = Encoded(self.pipeline.encoder.encode_bytes(batch), count)
            else:
                payload = [self.pipeline.readable(*line) for line in batch]
            result = exporter.export(payload)
        except Exception:
            self.local.failures("exporting log records")
            result = LogRecordExportResult.FAILURE
        self.local.end(count, result is LogRecordExportResult.SUCCESS)
        self.pipeline.report_drops()
        return result

    def shutdown(self) -> None:
        exporter = self.local.built_here()
        if exporter is not None:
            exporter.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        exporter = self.local.built_here()
        return True if exporter is None else bool(exporter.force_flush(timeout_millis))


class LogsPipeline:
    """The logs pipeline of one process: the SDK's batch processor and exporter.

    :param resource: the service's resource (the tracer provider's when tracing is on).
    :param queue_size: lines queued at most (and no more than ``OTEL_BLRP_MAX_QUEUE_SIZE``).
    :param identity: the identity fields of the lines (``service``, ``version``,
        ``environment``): on the resource, so not repeated on each record.
    """

    def __init__(
        self,
        resource: Resource,
        factory: Any,
        *,
        queue_size: int = 2048,
        shutdown_timeout: float = 2.0,
        identity: Sequence[str] = ("service", "version", "environment"),
    ) -> None:
        self.local: ProcessLocal[LogRecordExporter] = ProcessLocal(factory, "logs")
        self.encoder = LineEncoder(resource, identity)
        self.processor = BatchLogRecordProcessor(_Exporter(self, self.local))
        self.shutdown_timeout = shutdown_timeout
        self._identity = frozenset(identity)
        self._resource = resource
        self._scopes: dict[str, InstrumentationScope] = {}
        self._closed = False
        batch: Any = getattr(self.processor, "_batch_processor", None)
        # SDK internals, read-only: the batch processor's bounded deque and its capacity, so
        # lines are not pushed into a full one (the SDK would log a warning for each), and
        # its emit, which takes any item (the processor's on_emit expects the SDK's record).
        self._batch: Any = batch
        self._emit: Any = batch.emit if hasattr(batch, "emit") else self.processor.on_emit
        self._sdk_queue: Any = getattr(batch, "_queue", None)
        sdk_capacity = getattr(batch, "_max_queue_size", None)
        self.capacity = min(queue_size, sdk_capacity) if sdk_capacity else queue_size
        # After the SDK's emit took a line in this process (its fork and shutdown checks), the
        # next ones go straight into its queue. The process it checked is compared on each
        # line (os.getpid(), as the SDK's own emit does): an os.register_at_fork hook alone
        # misses a fork made in C without PyOS_AfterFork_Child (uWSGI's default), whose
        # child would queue every line where no thread exports them.
        self._direct = 0
        self._wake: Any = None
        self._wake_at: int = getattr(batch, "_max_export_batch_size", 0)
        #: Lines dropped: the queue was full (or the pipeline shut down).
        self.dropped = 0
        self._dropped_logged = 0
        self._last_report = -DROPPED_LOG_INTERVAL
        self._reporting = threading.Lock()

    # -- the logging threads ---------------------------------------------------------------

    def put(self, created: float, levelno: int, name: str, fields: Mapping[str, Any]) -> None:
        """Queue one line (any thread; never blocks). ``fields`` are read, never changed."""
        if self._direct == getpid():
            # What the SDK's emit does (in the process it checked): queue, wake its thread
            # when a batch is full.
            queue = self._sdk_queue
            if len(queue) < self.capacity:
                queue.appendleft((created, levelno, name, fields))
                if len(queue) >= self._wake_at and not self._wake.is_set():
                    self._wake.set()
                return
        self._put(created, levelno, name, fields)

    def _put(self, created: float, levelno: int, name: str, fields: Mapping[str, Any]) -> None:
        """:meth:`put` through the SDK's emit (the first line of a process, after a fork or
        with an SDK whose queue is not known), or a line dropped (the queue full, the
        pipeline shut down)."""
        queue = self._sdk_queue
        if self._closed or (queue is not None and len(queue) >= self.capacity):
            self.dropped += 1
            if time.monotonic() - self._last_report >= DROPPED_LOG_INTERVAL:
                # Also when no export ends (a collector that hangs each one to its timeout).
                self.report_drops()
            return
        self._emit((created, levelno, name, fields))
        wake = getattr(self._batch, "_worker_awaken", None)
        if queue is not None and wake is not None and self._wake_at and not self._closed:
            self._wake, self._direct = wake, getpid()
            if self._closed:  # shut down meanwhile: its lines go through here, and are dropped
                self._direct = 0

    # -- the SDK's export thread -----------------------------------------------------------

    def readable(
        self, created: float, levelno: int, name: str, fields: Mapping[str, Any]
    ) -> ReadableLogRecord:
        """The SDK's record of one line (for an exporter that takes only those)."""
        scope = self._scopes.get(name)
        if scope is None:
            if len(self._scopes) >= MAX_SCOPES:
                name = "other"
            scope = self._scopes.setdefault(name, InstrumentationScope(name))
        return ReadableLogRecord(
            log_record=self.record(created, levelno, dict(fields)),
            resource=self._resource,
            instrumentation_scope=scope,
        )

    def record(self, created: float, levelno: int, fields: dict[str, Any]) -> LogRecord:
        """The SDK's log record of one line's ``fields`` (which it takes apart)."""
        body = fields.pop("message", "")
        context = None
        trace_id, span_id = fields.pop("trace_id", None), fields.pop("span_id", None)
        if isinstance(trace_id, str) and isinstance(span_id, str):
            try:
                span = SpanContext(
                    int(trace_id, 16), int(span_id, 16), False, TraceFlags(TraceFlags.SAMPLED)
                )
                context = set_span_in_context(NonRecordingSpan(span))
            except ValueError:
                pass
        stack = fields.pop("exception", None)
        if stack is not None:
            fields["exception.stacktrace"] = stack
        exc_type = fields.pop("exc_type", None)
        if exc_type is not None:
            fields["exception.type"] = exc_type
        level = fields.pop("level", "")
        for name in ("timestamp", "logger", *self._identity):
            fields.pop(name, None)
        attributes = {
            k: v if type(v) is str else attribute(v) for k, v in fields.items() if v is not None
        }
        text, number = severity_of(levelno, str(level))
        return LogRecord(
            timestamp=int(created * 1e9),
            observed_timestamp=time.time_ns(),
            context=context,
            severity_text=text,
            severity_number=SeverityNumber(number),
            body=body,
            attributes=attributes,
        )

    def report_drops(self) -> None:
        """Log how many lines were dropped since the last report (at most once a minute)."""
        # The export thread and a logging thread may both report: one of them does (and the
        # report itself, coming back through the handler, does not report again).
        if not self._reporting.acquire(blocking=False):
            return
        try:
            dropped, now = self.dropped, time.monotonic()
            if dropped == self._dropped_logged or now - self._last_report < DROPPED_LOG_INTERVAL:
                return
            previous, self._dropped_logged, self._last_report = self._dropped_logged, dropped, now
            logger.warning(
                "flask_observe: %d log lines not exported (queue full: the collector is slow"
                " or unreachable)",
                dropped - previous,
                extra={"otlp_log_lines_dropped_total": dropped},
            )
        finally:
            self._reporting.release()

    # -- what it did, and its end ----------------------------------------------------------

    def stats(self) -> dict[str, int | None]:
        """Lines ``queued``, ``dropped``, ``exported``, ``export_failed``."""
        return {
            "queued": len(self._sdk_queue) if self._sdk_queue is not None else None,
            "queue_capacity": self.capacity,
            "dropped": self.dropped,
            "exported": self.local.exported,
            "export_failed": self.local.failed,
        }

    def shutdown(self) -> bool:
        """Export what is queued, waiting at most ``shutdown_timeout`` seconds (at exit: what
        is left of the shared deadline); then shut the exporter down, which cancels an export
        a hung collector never answered. Safe to call twice.

        :returns: whether every line was exported.
        """
        if self._closed:
            return True
        self._direct = 0  # the lines from now on through _put, which drops them once closed
        wait = exit_flushes.remaining(self.shutdown_timeout)
        deadline = time.monotonic() + wait
        failed_before = self.local.unsent()[0]

        def stop() -> None:
            self._closed = True
            self._direct = 0
            batch = self._batch
            left = max(0.0, deadline - time.monotonic() - 0.05)
            if batch is not None:
                try:
                    batch.shutdown(timeout_millis=left * 1000)
                    return
                except TypeError:  # an SDK whose batch processor takes no timeout
                    pass
            self.processor.shutdown()  # type: ignore[no-untyped-call]

        finished = run_with_deadline(stop, wait, "otlp-logs-shutdown")
        self._closed = True
        failed, in_flight = self.local.unsent()
        lost = failed - failed_before + in_flight
        if self._sdk_queue is not None:
            lost += len(self._sdk_queue)
        if lost or not finished:
            logger.warning(
                "flask_observe: %d log lines were not exported at shutdown (collector slow or"
                " unreachable; waited %.1f s)",
                lost,
                wait,
                extra=self.stats(),
            )
        return finished and not lost


class OtlpLogHandler(logging.Handler):
    """On the root logger beside the logging feature's handlers: each record's fields, as the
    JSON file gets them, into the logs pipeline.

    :param formatter: makes the fields (the app's identity, correlation and trace IDs).
    """

    def __init__(self, pipeline: LogsPipeline, formatter: ObserveFormatter, level: int) -> None:
        super().__init__(level)
        self.pipeline = pipeline
        self.fields_of = formatter
        self._failures = FailureLog()

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: the queue takes appends from any thread.
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(OWN_LOGGERS):
            return
        thread = record.threadName
        if thread is not None and thread.startswith(EXPORT_THREADS):
            return
        made = record.__dict__.pop(FIELDS_ATTR, None)
        if made is not None:  # the file's formatter made them already: the same fields
            self.pipeline.put(record.created, record.levelno, record.name, made)
            return
        try:
            fields = self.fields_of.event_dict(record)
        except Exception:
            self._failures("making a log line's fields for OTLP")
            return
        self.pipeline.put(record.created, record.levelno, record.name, fields)

    def write_fields(
        self,
        created: float,
        level: int,
        name: str,
        message: str,
        fields: Mapping[str, Any],
        identity: Mapping[str, Any] | None = None,
        made: Mapping[str, Any] | None = None,
    ) -> None:
        """The access log's fast path: its line from parts, without a ``LogRecord``.

        :param made: the fields the file's JSON formatter made of the same line, if it did.
        """
        if made is not None:
            self.pipeline.put(created, level, name, made)
            return
        out = self.fields_of.base_fields(created, "", name, message, identity)
        context = structlog_context()
        if context:
            merge_fields(out, context)
        out.update(fields)
        self.pipeline.put(created, level, name, out)
