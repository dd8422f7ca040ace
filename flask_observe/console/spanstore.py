"""The console's span store: the spans of this host's traces in the console's SQLite file,
bounded by count and age, fed off the request path.

:class:`StoreSpanProcessor` sits beside the exporter on the tracing feature's provider: its
``on_end`` (on the request thread) only appends the finished span to a bounded buffer; the
console's flusher thread turns the buffer into rows every second, one transaction, and trims
the store. A full buffer drops the span (counted). Spans go through the same redaction as
the exporter's (``OBSERVE_TRACING_REDACT``) and are capped in size.
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span

    from .store import ConsoleDB

__all__ = ["SCHEMA", "SpanStore", "StoreSpanProcessor", "TraceRow"]

#: Longest attribute value kept (characters), most attributes and events per span.
MAX_VALUE = 2048
MAX_ATTRIBUTES = 64
MAX_EVENTS = 32
#: The attribute carrying the request's correlation ID (tracing/instrument.py).
CORRELATION_ATTRIBUTE = "correlation_id"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spans (
        id INTEGER PRIMARY KEY, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
        parent_id TEXT, name TEXT NOT NULL, kind TEXT NOT NULL, start_ns INTEGER NOT NULL,
        duration_ns INTEGER NOT NULL, status TEXT NOT NULL, status_message TEXT,
        service TEXT, pid INTEGER, attributes TEXT NOT NULL, events TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS spans_trace ON spans(trace_id)",
    """CREATE TABLE IF NOT EXISTS traces (
        trace_id TEXT PRIMARY KEY, name TEXT NOT NULL, start_ns INTEGER NOT NULL,
        duration_ns INTEGER NOT NULL, spans INTEGER NOT NULL, errors INTEGER NOT NULL,
        has_root INTEGER NOT NULL, correlation_id TEXT, method TEXT, status_code INTEGER,
        service TEXT, last_id INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS traces_start ON traces(start_ns)",
    "CREATE INDEX IF NOT EXISTS traces_duration ON traces(duration_ns)",
    "CREATE INDEX IF NOT EXISTS traces_failed ON traces(errors, start_ns)",
    "CREATE INDEX IF NOT EXISTS traces_last ON traces(last_id)",
)

_UPSERT = """INSERT INTO traces (trace_id, name, start_ns, duration_ns, spans, errors, has_root,
        correlation_id, method, status_code, service, last_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT(trace_id) DO UPDATE SET
        spans = spans + excluded.spans,
        errors = errors + excluded.errors,
        last_id = max(last_id, excluded.last_id),
        start_ns = min(start_ns, excluded.start_ns),
        name = CASE WHEN excluded.has_root OR NOT has_root THEN excluded.name ELSE name END,
        duration_ns = CASE WHEN excluded.has_root THEN excluded.duration_ns
            WHEN has_root THEN duration_ns ELSE max(duration_ns, excluded.duration_ns) END,
        correlation_id = coalesce(excluded.correlation_id, correlation_id),
        method = coalesce(excluded.method, method),
        status_code = coalesce(excluded.status_code, status_code),
        service = coalesce(service, excluded.service),
        has_root = max(has_root, excluded.has_root)"""


def _value(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "…"
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_value(v) for v in value[:MAX_ATTRIBUTES]]
    return _value(str(value))


def _attributes(attributes: Any) -> dict[str, Any]:
    if not attributes:
        return {}
    out = {}
    for index, (name, value) in enumerate(attributes.items()):
        if index >= MAX_ATTRIBUTES:
            out["…"] = f"{len(attributes) - MAX_ATTRIBUTES} more attributes not kept"
            break
        out[str(name)[:256]] = _value(value)
    return out


@dataclass(frozen=True)
class TraceRow:
    """One trace in a list: its local root (the request), its size and whether it failed."""

    trace_id: str
    name: str
    start_ns: int
    duration_ns: int
    spans: int
    errors: int
    correlation_id: str | None
    method: str | None
    status_code: int | None
    service: str | None

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


def _status_code(attributes: Any) -> int | None:
    for name in ("http.response.status_code", "http.status_code"):
        value = attributes.get(name) if attributes else None
        if isinstance(value, int):
            return value
    return None


def _method(attributes: Any) -> str | None:
    for name in ("http.request.method", "http.method"):
        value = attributes.get(name) if attributes else None
        if isinstance(value, str):
            return value[:16]
    return None


class SpanStore:
    """The span tables of the console's store.

    :param db: the console's SQLite file.
    :param max_spans: most spans kept (the oldest go first).
    :param max_age: seconds a span is kept.
    """

    def __init__(self, db: ConsoleDB, max_spans: int, max_age: float) -> None:
        self.db = db
        self.max_spans = max_spans
        self.max_age = max_age
        db.add_schema(*SCHEMA)
        self.pid = os.getpid()

    # -- writing ---------------------------------------------------------------------------

    def write(self, spans: list[ReadableSpan], now_ns: int) -> int:
        """Store ``spans`` (one transaction) and trim; returns how many were stored."""
        if not spans:
            return 0
        pid = os.getpid()
        rows = []
        traces: dict[str, list[Any]] = {}
        with self.db.write() as cur:
            first = cur.execute("SELECT coalesce(max(id), 0) FROM spans").fetchone()[0] + 1
            for offset, span in enumerate(spans):
                ctx = span.context
                if ctx is None or span.start_time is None:
                    continue
                row_id = first + offset
                trace_id = format(ctx.trace_id, "032x")
                parent = span.parent
                is_root = parent is None or parent.is_remote
                end = span.end_time or span.start_time
                duration = max(0, end - span.start_time)
                failed = span.status.status_code is StatusCode.ERROR
                attributes = span.attributes
                service = span.resource.attributes.get("service.name") if span.resource else None
                events = [
                    {
                        "name": event.name[:256],
                        "time_ns": event.timestamp,
                        "attributes": _attributes(event.attributes),
                    }
                    for event in span.events[:MAX_EVENTS]
                ]
                rows.append(
                    (
                        row_id,
                        trace_id,
                        format(ctx.span_id, "016x"),
                        format(parent.span_id, "016x") if parent is not None else None,
                        span.name[:512],
                        span.kind.name.lower(),
                        span.start_time,
                        duration,
                        "error" if failed else span.status.status_code.name.lower(),
                        (span.status.description or "")[:MAX_VALUE] or None,
                        str(service)[:128] if service else None,
                        pid,
                        orjson.dumps(_attributes(attributes)).decode(),
                        orjson.dumps(events).decode(),
                    )
                )
                correlation = attributes.get(CORRELATION_ATTRIBUTE) if attributes else None
                summary = traces.get(trace_id)
                if summary is None:
                    summary = traces[trace_id] = [
                        trace_id,
                        span.name[:512],
                        span.start_time,
                        duration,
                        0,
                        0,
                        0,
                        None,
                        None,
                        None,
                        rows[-1][10],
                        row_id,
                    ]
                summary[4] += 1
                summary[5] += int(failed)
                summary[11] = row_id
                summary[2] = min(summary[2], span.start_time)
                if is_root:
                    summary[1], summary[3], summary[6] = span.name[:512], duration, 1
                    summary[7] = str(correlation)[:128] if correlation else None
                    summary[8] = _method(attributes)
                    summary[9] = _status_code(attributes)
                elif not summary[6]:
                    summary[3] = max(summary[3], duration)
            cur.executemany("INSERT INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            cur.executemany(_UPSERT, list(traces.values()))
            self._trim(cur, now_ns)
        return len(rows)

    def _trim(self, cur: Any, now_ns: int) -> None:
        """Drop the spans past the count cap and those older than the age cap (by the traces
        that started before it), and the traces left without spans."""
        last = cur.execute("SELECT coalesce(max(id), 0) FROM spans").fetchone()[0]
        cut = last - self.max_spans
        oldest = now_ns - int(self.max_age * 1e9)
        aged = cur.execute(
            "SELECT max(last_id) FROM traces WHERE start_ns < ?", (oldest,)
        ).fetchone()[0]
        if aged is not None:
            cut = max(cut, aged)
        if cut > 0:
            cur.execute("DELETE FROM spans WHERE id <= ?", (cut,))
            cur.execute("DELETE FROM traces WHERE last_id <= ?", (cut,))

    # -- reading ---------------------------------------------------------------------------

    _COLUMNS = (
        "trace_id, name, start_ns, duration_ns, spans, errors, correlation_id, method,"
        " status_code, service"
    )

    def _traces(
        self, where: str, order: str, args: tuple[object, ...], limit: int
    ) -> list[TraceRow]:
        rows = self.db.read(
            f"SELECT {self._COLUMNS} FROM traces {where} ORDER BY {order} LIMIT ?", (*args, limit)
        )
        return [TraceRow(*row) for row in rows]

    def recent(self, limit: int = 50, before_ns: int | None = None) -> list[TraceRow]:
        """The latest traces, newest first (``before_ns``: started before, for the next page)."""
        if before_ns is None:
            return self._traces("", "start_ns DESC", (), limit)
        return self._traces("WHERE start_ns < ?", "start_ns DESC", (before_ns,), limit)

    def slow(self, threshold_ns: int, limit: int = 50) -> list[TraceRow]:
        """The slowest traces over ``threshold_ns``, slowest first."""
        return self._traces("WHERE duration_ns >= ?", "duration_ns DESC", (threshold_ns,), limit)

    def failed(self, limit: int = 50) -> list[TraceRow]:
        """The latest traces with a failed span, newest first."""
        return self._traces("WHERE errors > 0", "start_ns DESC", (), limit)

    def summary(self, trace_id: str) -> TraceRow | None:
        found = self._traces("WHERE trace_id = ?", "start_ns", (trace_id,), 1)
        return found[0] if found else None

    def spans(self, trace_id: str, limit: int = 2000) -> list[dict[str, Any]]:
        """The stored spans of one trace, by start time, attributes and events decoded."""
        rows = self.db.read(
            "SELECT span_id, parent_id, name, kind, start_ns, duration_ns, status,"
            " status_message, service, pid, attributes, events FROM spans"
            " WHERE trace_id = ? ORDER BY start_ns, id LIMIT ?",
            (trace_id, limit),
        )
        out = []
        for row in rows:
            span = dict(row)
            span["attributes"] = orjson.loads(span["attributes"])
            span["events"] = orjson.loads(span["events"])
            out.append(span)
        return out

    def counts(self) -> dict[str, int]:
        """Spans and traces stored (the whole host)."""
        spans = self.db.read("SELECT coalesce(max(id), 0) - coalesce(min(id), 1) + 1 FROM spans")
        traces = self.db.read("SELECT count(*) FROM traces")
        return {"spans": max(0, spans[0][0]), "traces": traces[0][0]}


class StoreSpanProcessor(SpanProcessor):
    """Buffers each finished span for the store; the flusher writes them (:meth:`flush`).

    :param store: where spans go.
    :param capacity: most spans buffered; a full buffer drops new ones (counted).
    :param redact: applied to each span before it is kept (the exporter's redaction).
    :param wake: called when the buffer first holds a span in a process (start the flusher).
    """

    def __init__(
        self,
        store: SpanStore,
        capacity: int,
        *,
        redact: Any = None,
        wake: Any = None,
        clock_ns: Any = None,
    ) -> None:
        import time

        self.store = store
        self.capacity = capacity
        self.redact = redact
        self.wake = wake
        self.clock_ns = clock_ns or time.time_ns
        self._buffer: collections.deque[ReadableSpan] = collections.deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self.stored = 0
        self.closed = False
        self._pid: int | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.closed:
            return
        buffer = self._buffer
        if len(buffer) >= self.capacity:
            self.dropped += 1
            return
        buffer.append(span)
        if self._pid != os.getpid():  # the first span of this process: start the flusher
            self._pid = os.getpid()
            if self.wake is not None:
                self.wake()

    def flush(self) -> int:
        """Write what is buffered (the flusher's task); returns how many spans were stored."""
        buffer = self._buffer
        taken: list[ReadableSpan] = []
        with self._lock:
            while buffer:
                span = buffer.popleft()
                taken.append(self.redact(span) if self.redact is not None else span)
        if not taken:
            return 0
        stored = self.store.write(taken, self.clock_ns())
        self.stored += stored
        return stored

    def buffered(self) -> int:
        return len(self._buffer)

    def shutdown(self) -> None:
        self.closed = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
