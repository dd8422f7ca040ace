"""Every log line through the OpenTelemetry SDK's logs pipeline, next to the JSON files.

``LoggerProvider`` (the app's resource), ``BatchLogRecordProcessor`` (bounded queue, export
thread, ``OTEL_BLRP_*``) and the OTLP exporter are the SDK's. What is ours is the handler on
the root logger and one hand-off in front of the SDK:

- :class:`OtlpLogHandler` sees the same records as the file handler and makes the same fields
  (the logging feature's :class:`~flask_observe.logging.formatter.ObserveFormatter`: message,
  extras, ``correlation_id``, ``trace_id``/``span_id`` of the current span, structlog's context
  variables, the exception), and takes the access line on the access log's fast path
  (``write_fields``); it appends them to a bounded queue and returns. Building the SDK's record
  (``Logger.emit``: 12 µs a line here, four times what the file handler costs, measured) is
  done by :class:`LogsPipeline`'s thread, never by the request's.
- The queue is bounded (``OBSERVE_OTLP_LOGS_QUEUE_SIZE``) and so is the SDK's; when either is
  full, lines are dropped, counted and the count logged once a minute, never waited for.
- Its own failures are never exported back into it: records of the ``opentelemetry`` loggers,
  and records logged on the export threads (the SDK's batch processor, this hand-off, the
  metric reader), still reach the files but not this handler.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from .._internal import FailureLog, exit_flushes, run_with_deadline
from ..logging.formatter import FIELDS_ATTR, ObserveFormatter, merge_fields, structlog_context
from .exporters import ProcessLocal

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

__all__ = ["LogsPipeline", "OtlpLogHandler"]

logger = logging.getLogger("flask_observe.otlp")

#: Loggers whose records never go into the pipeline (the SDK's and its exporters').
OWN_LOGGERS = ("opentelemetry",)
#: Threads whose records never go into the pipeline: what they log is about exporting.
EXPORT_THREADS = ("OtelBatch", "OtelPeriodic", "flask_observe-otlp")
#: Scopes (logger names) kept; records of further loggers share one scope.
MAX_SCOPES = 512
DROPPED_LOG_INTERVAL = 60.0
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_INT64 = 1 << 63


def severity(levelno: int) -> SeverityNumber:
    """The OpenTelemetry severity of a stdlib level: DEBUG 5, INFO 9, WARNING 13, ERROR 17,
    CRITICAL 21, and the levels between on the same scale."""
    return SeverityNumber(min(24, max(1, (levelno - 10) * 4 // 10 + 5)))


#: levelno -> (severity text, severity number) of the usual levels.
_SEVERITIES = {
    n: (_SEVERITY_TEXT.get(logging.getLevelName(n), logging.getLevelName(n)), severity(n))
    for n in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
}


def attribute(value: Any) -> Any:
    """``value`` as an OTLP attribute value: text, booleans, 64-bit integers, floats and lists
    of one of those as they are; anything else as its JSON (or its ``str``)."""
    if isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, (list, tuple)) and value:
        kind = type(value[0])
        if kind in (str, bool, float, int) and all(type(v) is kind for v in value):
            return list(value) if kind is not int else [attribute(v) for v in value]
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


class _Exporter(LogRecordExporter):
    """The SDK's exporter, built in the process that exports, counting what it exported."""

    def __init__(self, local: ProcessLocal[LogRecordExporter]) -> None:
        self.local = local

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        count = len(batch)
        self.local.begin(count)
        try:
            result = self.local.current().export(batch)
        except Exception:
            self.local.failures("exporting log records")
            result = LogRecordExportResult.FAILURE
        self.local.end(count, result is LogRecordExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        exporter = self.local.built_here()
        if exporter is not None:
            exporter.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        exporter = self.local.built_here()
        return True if exporter is None else bool(exporter.force_flush(timeout_millis))


class LogsPipeline:
    """The logs pipeline of one process: hand-off queue, SDK provider, processor, exporter.

    :param resource: the service's resource (the tracer provider's when tracing is on).
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
        batch: int = 256,
        delay: float = 0.2,
    ) -> None:
        self.local: ProcessLocal[LogRecordExporter] = ProcessLocal(factory, "logs")
        self.provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.processor = BatchLogRecordProcessor(_Exporter(self.local))
        self.provider.add_log_record_processor(self.processor)
        self.shutdown_timeout = shutdown_timeout
        self.capacity = queue_size
        self._identity = frozenset(identity)
        self._batch = batch
        self._delay = delay
        self._queue: collections.deque[tuple[float, int, str, dict[str, Any]]] = collections.deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self._closed = False
        self._loggers: dict[str, Any] = {}
        self._resource = resource
        batch_processor = getattr(self.processor, "_batch_processor", None)
        # The SDK's Logger.emit copies each record twice on the way to the batch processor's
        # queue (18 µs a line here against 1.6 µs for the readable record it queues,
        # measured): the record is queued as that readable record directly, when this SDK's
        # batch processor has the queue it is known to have.
        self._sdk_batch: Any = batch_processor if hasattr(batch_processor, "emit") else None
        # SDK internals, read-only: its queue (a bounded deque) and its capacity, so lines are
        # not pushed into a full one (the SDK would log a warning for each).
        self._sdk_queue: Any = getattr(batch_processor, "_queue", None)
        self._sdk_capacity: int | None = getattr(batch_processor, "_max_queue_size", None)
        #: Lines dropped: this queue or the SDK's was full.
        self.dropped = 0
        self._dropped_logged = 0
        self._last_report = -DROPPED_LOG_INTERVAL
        self._failures = FailureLog()

    # -- the logging threads ---------------------------------------------------------------

    def put(self, created: float, levelno: int, name: str, fields: dict[str, Any]) -> None:
        """Queue one line (any thread; never blocks)."""
        if self._pid != os.getpid():
            self._start()
        queue = self._queue
        if len(queue) >= self.capacity or self._closed:
            self.dropped += 1
            return
        queue.append((created, levelno, name, fields))
        if len(queue) >= self._batch and not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            pid = os.getpid()
            if self._pid == pid or self._closed:
                return
            if self._pid:  # forked: the parent's lines are the parent's
                self._queue.clear()
                self._wake = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name="flask_observe-otlp-logs", daemon=True
            )
            self._pid = pid
            try:
                self._thread.start()
            except RuntimeError:  # interpreter shutting down: the exit flush drains
                self._thread = None

    # -- the hand-off thread -----------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._delay)
            self._wake.clear()
            self.drain()

    def drain(self, deadline: float | None = None) -> int:
        """Hand every queued line to the SDK (its thread, or the exit flush); returns how
        many went."""
        handed = 0
        queue = self._queue
        while queue:
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                item = queue.popleft()
            except IndexError:
                break
            sdk_queue = self._sdk_queue
            if sdk_queue is not None and len(sdk_queue) >= self._sdk_capacity:  # type: ignore[operator]
                self.dropped += 1
                continue
            try:
                self._emit(*item)
                handed += 1
            except Exception:
                self._failures("handing a log line to the OpenTelemetry SDK")
        self._report_drops()
        return handed

    def _scope(self, name: str) -> Any:
        """The SDK's logger of ``name`` (its instrumentation scope)."""
        found = self._loggers.get(name)
        if found is None:
            if len(self._loggers) >= MAX_SCOPES:
                name = "other"
                found = self._loggers.get(name)
            if found is None:
                found = self._loggers[name] = self.provider.get_logger(name)
        return found

    def record(self, created: float, levelno: int, fields: dict[str, Any]) -> LogRecord:
        """The SDK's log record of one line's ``fields`` (the JSON line's, as the file gets)."""
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
        known = _SEVERITIES.get(levelno)
        if known is None:
            text = logging.getLevelName(levelno)
            known = (text if isinstance(text, str) else level, severity(levelno))
        return LogRecord(
            timestamp=int(created * 1e9),
            observed_timestamp=time.time_ns(),
            context=context,
            severity_text=known[0],
            severity_number=known[1],
            body=body,
            attributes=attributes,
        )

    def _emit(self, created: float, levelno: int, name: str, fields: dict[str, Any]) -> None:
        sdk_logger = self._scope(name)
        record = self.record(created, levelno, fields)
        batch = self._sdk_batch
        if batch is None:
            sdk_logger.emit(record)
            return
        batch.emit(
            ReadableLogRecord(
                log_record=record,
                resource=self._resource,
                instrumentation_scope=sdk_logger.instrumentation_scope,
            )
        )

    def _report_drops(self) -> None:
        dropped = self.dropped
        now = time.monotonic()
        if dropped == self._dropped_logged or now - self._last_report < DROPPED_LOG_INTERVAL:
            return
        self._last_report = now
        logger.warning(
            "flask_observe: %d log lines not exported (queue full: the collector is slow or"
            " unreachable)",
            dropped - self._dropped_logged,
            extra={"otlp_log_lines_dropped_total": dropped},
        )
        self._dropped_logged = dropped

    # -- what it did, and its end ----------------------------------------------------------

    def stats(self) -> dict[str, int | None]:
        """Lines ``queued`` (here and in the SDK), ``dropped``, ``exported``, ``export_failed``."""
        sdk = len(self._sdk_queue) if self._sdk_queue is not None else 0
        return {
            "queued": len(self._queue) + sdk,
            "queue_capacity": self.capacity,
            "dropped": self.dropped,
            "exported": self.local.exported,
            "export_failed": self.local.failed,
        }

    def shutdown(self) -> bool:
        """Hand over what is queued and export it, waiting at most ``shutdown_timeout``
        seconds (at exit: what is left of the shared deadline); then shut the exporter down,
        which cancels an export a hung collector never answered. Safe to call twice.

        :returns: whether every line was exported.
        """
        if self._closed:
            return True
        wait = exit_flushes.remaining(self.shutdown_timeout)
        deadline = time.monotonic() + wait
        failed_before = self.local.unsent()[0]

        def stop() -> None:
            self.drain(deadline - 0.1)
            self._closed = True
            self._wake.set()
            batch: Any = getattr(self.processor, "_batch_processor", None)
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
        lost = len(self._queue) + failed - failed_before + in_flight
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
            self.pipeline.put(record.created, record.levelno, record.name, dict(made))
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
    ) -> None:
        """The access log's fast path: its line from parts, without a ``LogRecord``."""
        out = self.fields_of.base_fields(created, "", name, message, identity)
        context = structlog_context()
        if context:
            merge_fields(out, context)
        out.update(fields)
        self.pipeline.put(created, level, name, out)
