"""The console's span store: the spans of this host's traces in the console's SQLite file,
bounded by count and age, fed off the request path.

:class:`StoreSpanProcessor` sits beside the exporter on the tracing feature's provider: its
``on_end`` (on the request thread) turns the finished span into plain values and its JSON
(:meth:`SpanStore.entry`: the span itself is not kept, so no garbage collection walks it)
and appends them to a bounded buffer; the console's flusher thread groups the buffer by
trace and writes it every second, one transaction, and trims the store. A full buffer drops
the span (counted). Spans go through the same redaction as the exporter's
(``OBSERVE_TRACING_REDACT``) and are capped in size.
"""

from __future__ import annotations

import collections
import operator
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanContext, SpanKind

from .._internal import FailureLog
from ..tracing.redact import PRIVATE_ATTRIBUTES as _PRIVATE
from ..tracing.redact import redact_attributes

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span

    from .store import ConsoleDB

__all__ = ["SCHEMA", "SpanStore", "StoreSpanProcessor", "TraceRow"]

#: Longest attribute value kept (characters), most attributes and events per span.
MAX_VALUE = 2048
MAX_ATTRIBUTES = 64
MAX_EVENTS = 32
#: A trace stops taking spans once it holds this many (the SQL below says it too).
MAX_TRACE_SPANS = 2000
#: The attribute carrying the request's correlation ID (tracing/instrument.py).
CORRELATION_ATTRIBUTE = "correlation_id"

#: The shortest duration the slow traces' index holds (100 ms); the slow page's threshold
#: (``OBSERVE_CONSOLE_SLOW_MS``) is read through the index at this or above, by a scan below.
SLOW_INDEX_NS = 100_000_000

SCHEMA = (
    # One row per trace: its summary, and its spans as lines of JSON (each line the spans one
    # worker wrote in one flush: ``[service, pid, span, span, …]``). A row per span cost
    # SQLite more than tracing costs the request.
    """CREATE TABLE IF NOT EXISTS traces (
        trace_id TEXT PRIMARY KEY, name TEXT NOT NULL, start_ns INTEGER NOT NULL,
        duration_ns INTEGER NOT NULL, spans INTEGER NOT NULL, errors INTEGER NOT NULL,
        has_root INTEGER NOT NULL, correlation_id TEXT, method TEXT, status_code INTEGER,
        service TEXT, data BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS traces_start ON traces(start_ns)",
    # The slow page's index holds only the traces that took a tenth of a second or more: an
    # index of every duration took a B-tree insert at a random place for each trace written.
    "DROP INDEX IF EXISTS traces_duration",
    f"""CREATE INDEX IF NOT EXISTS traces_slow ON traces(duration_ns)
        WHERE duration_ns >= {SLOW_INDEX_NS}""",
    "CREATE INDEX IF NOT EXISTS traces_failed ON traces(start_ns) WHERE errors > 0",
    # The spans stored, kept with every write and trim (a sum over the table per flush cost
    # more than the flush).
    """CREATE TABLE IF NOT EXISTS span_total (
        id INTEGER PRIMARY KEY CHECK (id = 0), spans INTEGER NOT NULL)""",
    "INSERT OR IGNORE INTO span_total SELECT 0, total(spans) FROM traces",
)

_INSERT = """INSERT INTO traces (trace_id, name, start_ns, duration_ns, spans, errors, has_root,
        correlation_id, method, status_code, service, data)
    VALUES {values}
    ON CONFLICT(trace_id) DO UPDATE SET
        spans = spans + excluded.spans,
        errors = errors + excluded.errors,
        data = CASE WHEN spans >= 2000 THEN data
            ELSE CAST(data || x'0a' || excluded.data AS BLOB) END,
        start_ns = min(start_ns, excluded.start_ns),
        name = CASE WHEN excluded.has_root OR NOT has_root THEN excluded.name ELSE name END,
        duration_ns = CASE WHEN excluded.has_root THEN excluded.duration_ns
            WHEN has_root THEN duration_ns ELSE max(duration_ns, excluded.duration_ns) END,
        correlation_id = coalesce(excluded.correlation_id, correlation_id),
        method = coalesce(excluded.method, method),
        status_code = coalesce(excluded.status_code, status_code),
        service = coalesce(service, excluded.service),
        has_root = max(has_root, excluded.has_root)"""
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: Traces per statement: one statement for a whole flush. Each statement the writer runs
#: hands the GIL to the request threads (SQLite works without it) and then waits for it
#: again, up to the interpreter's switch interval (5 ms) while a request thread runs: a busy
#: process's writer spends its time in those waits, so it runs as few statements as it can
#: (``executemany`` would step once per row; a statement for each of a few fixed sizes,
#: cached, ran 7 where one does, and lost more to the waits than it saved in parsing).
_WIDTH = _ROW.count("?")
#: (Fewer where SQLite may take no more than 999 parameters a statement: before 3.32.)
_PER_STATEMENT = 1000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999 // _WIDTH

#: The running span count after a write of ``?`` spans and the drop of those started
#: before ``?``, and how many those are: one statement, where three were (see above).
_TOTALS = """UPDATE span_total
    SET spans = spans + ? - (SELECT total(spans) FROM traces WHERE start_ns < ?)
    RETURNING spans, (SELECT total(spans) FROM traces WHERE start_ns < ?)"""
#: The first trace (in the order written) by which at least ``?`` spans are stored, and how
#: many spans that is: one statement, where a loop over the rows stepped (and waited for the
#: GIL) once per row.
_CUT = """SELECT rowid, running FROM (SELECT rowid,
        sum(spans) OVER (ORDER BY rowid ROWS UNBOUNDED PRECEDING) AS running FROM traces)
    WHERE running >= ? LIMIT 1"""
#: SQLite before 3.35 (Debian 11, RHEL 9, Ubuntu 20.04 and the Python images built on them)
#: has no ``RETURNING``: the same figures in two statements there.
_AGED = "SELECT total(spans) FROM traces WHERE start_ns < ?"
_ADD = "UPDATE span_total SET spans = spans + ? - ?"
_TOTAL = "SELECT spans FROM span_total"


def _upsert(cur: Any, values: list[Any]) -> None:
    """Insert or extend the traces whose columns are ``values``, row after row."""
    step = _PER_STATEMENT * _WIDTH
    for first in range(0, len(values), step):
        part = values[first : first + step]
        rows = ", ".join([_ROW] * (len(part) // _WIDTH))
        cur.execute(_INSERT.format(values=rows), part)


#: One ended span as it waits for the writer (:meth:`SpanStore.entry`): ``(trace_id, start,
#: end, failed, local root, name, correlation_id, method, status_code, service, JSON)``.
Entry = tuple[
    int, int, int, bool, bool, str, "str | None", "str | None", "int | None", "str | None", bytes
]

#: An entry's fields the writer takes (C-level reads: ``map`` over a trace's entries).
_START, _END, _FAILED, _ROOT, _DATA = (operator.itemgetter(i) for i in (1, 2, 3, 4, 10))
#: Span kinds by their SDK value (``SpanKind``), as the pages name them.
_KINDS = {kind.value: kind.name.lower() for kind in SpanKind}
#: Status codes as stored: the SDK's values (``UNSET`` 0, ``OK`` 1, ``ERROR`` 2).
_STATUS_NAMES = ("unset", "ok", "error")


def _first_spans(members: list[Entry]) -> list[Entry]:
    """What a trace's first write keeps of its spans, as later writes do (the SQL's cap):
    the first ``MAX_TRACE_SPANS``, its local root among them wherever it came."""
    if len(members) <= MAX_TRACE_SPANS:
        return members
    rest = members[MAX_TRACE_SPANS - 1 :]
    return [*members[: MAX_TRACE_SPANS - 1], next(filter(_ROOT, rest), rest[0])]


def _value(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "…"
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)  # orjson takes no wider int
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_value(v) for v in value[:MAX_ATTRIBUTES]]
    return _value(str(value))


def _capped(attributes: Any) -> dict[str, Any]:
    out = {}
    for index, (name, value) in enumerate(attributes.items()):
        if index >= MAX_ATTRIBUTES:
            out["…"] = f"{len(attributes) - MAX_ATTRIBUTES} more attributes not kept"
            break
        out[str(name)[:256]] = _value(value)
    return out


def _plain(attributes: Any) -> Any:
    """A span's attributes as a dict orjson takes as it is (the SDK's bounded mapping holds
    one; read without its lock: the span has ended)."""
    if not attributes:
        return {}
    inner = getattr(attributes, "_dict", None)
    return inner if type(inner) is dict else dict(attributes)


#: Attributes whose JSON is longer than this are capped value by value (a fast path for
#: the usual span, whose every value is short).
_QUICK_BYTES = 4096


def _encode(row: tuple[Any, ...]) -> bytes:
    """One span's JSON, as its trace's data line holds it; a span whose attributes are too
    many or too long is capped."""
    try:
        data = orjson.dumps(row, default=str)
    except TypeError:  # a value orjson cannot take (an int beyond 64 bits, say)
        data = b""
    if data and len(data) <= _QUICK_BYTES:
        return data
    attributes, events = row[8], row[9]
    fixed = (
        *row[:8],
        _capped(attributes),
        [(str(e[0])[:256], e[1], _capped(e[2])) for e in events],
    )
    return orjson.dumps(fixed, default=str)


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


def _context_is_tuple() -> bool:
    """Whether the API's ``SpanContext`` is the tuple it has been (trace ID, span ID, remote
    first), checked once: else its properties are read."""
    probe = SpanContext(3, 5, is_remote=True)
    return isinstance(probe, tuple) and tuple(probe[:3]) == (3, 5, True)


_CONTEXT_IS_TUPLE = _context_is_tuple()


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
    :param redact: remove query strings and client addresses (``OBSERVE_TRACING_REDACT``).
    """

    def __init__(self, db: ConsoleDB, max_spans: int, max_age: float, redact: bool = True) -> None:
        self.db = db
        self.max_spans = max_spans
        self.max_age = max_age
        self.redact = redact
        self._service: tuple[Any, str | None] = (None, None)  # the last resource, its name
        self._returning = sqlite3.sqlite_version_info >= (3, 35, 0)
        db.add_schema(*SCHEMA)
        db.retire("traces_duration")

    # -- writing ---------------------------------------------------------------------------

    def entry(self, span: ReadableSpan) -> Entry | None:
        """What the store keeps of an ended span until the writer takes it, made on the
        request thread (:meth:`StoreSpanProcessor.on_end`): plain values and the span's JSON,
        none of the span's objects, so a garbage collection has nothing of it to walk and the
        span is freed with its request. ``None`` for a span without a context or start time.

        The span is read from its own state where it is the SDK's (a property read costs
        more than the attribute, and the attribute mapping's copies more still), else
        through its public surface; the JSON is the one the trace's data line holds:
        ``(span_id, parent_id, name, kind, start, end, status, status message, attributes,
        events)``."""
        try:  # plain instance reads (``__dict__`` would build the span's dict first)
            context, parent, name = span._context, span._parent, span._name
            kind, start, end = span._kind, span._start_time, span._end_time
            status, raw, events = span._status, span._attributes, span._events
            resource = span._resource
            # The status's own fields, and the event list's deque (its ``len`` in C): the
            # ``status_code``/``description`` properties and ``BoundedList.__len__`` are a
            # Python call each.
            description, code = status._description, status._status_code._value_
            events = getattr(events, "_dq", events)
        except AttributeError:
            context, parent, name = span.context, span.parent, span.name
            kind, start, end = span.kind, span.start_time, span.end_time
            status, raw, events = span.status, span.attributes, span.events
            resource = span.resource
            description, code = status.description, status.status_code.value
        if context is None or start is None:
            return None
        if _CONTEXT_IS_TUPLE:  # its fields by index: each property is a Python call
            trace_id, span_id = context[0], context[1]
            parent_id, local = (parent[1], not parent[2]) if parent is not None else (None, False)
        else:
            trace_id, span_id = context.trace_id, context.span_id
            parent_id = parent.span_id if parent is not None else None
            local = parent is not None and not parent.is_remote
        inner = getattr(raw, "_dict", None)
        attributes: Any = inner if type(inner) is dict else (dict(raw) if raw else {})
        if self.redact and attributes and not _PRIVATE.isdisjoint(attributes):
            attributes = redact_attributes(attributes, kind is SpanKind.SERVER)
        name, end = name[:512], end or start
        data = _encode(
            (
                span_id,
                parent_id,
                name,
                kind._value_,  # the member's plain attribute (``.value`` is a property)
                start,
                end,
                code,
                description[:MAX_VALUE] if description else None,
                attributes,
                [(e.name, e.timestamp, _plain(e.attributes)) for e in tuple(events)[:MAX_EVENTS]]
                if events
                else (),
            )
        )
        seen = self._service
        if seen[0] is not resource:  # one lookup per resource, not per span
            named = resource.attributes.get("service.name") if resource else None
            seen = self._service = (resource, str(named)[:128] if named else None)
        if local:
            return (
                trace_id,
                start,
                end,
                code == 2,
                False,
                name,
                None,
                None,
                None,
                seen[1],
                data,
            )
        correlation = attributes.get(CORRELATION_ATTRIBUTE)  # the local root: the summary's
        return (
            trace_id,
            start,
            end,
            code == 2,
            True,
            name,
            str(correlation)[:128] if correlation else None,
            _method(attributes),
            _status_code(attributes),
            seen[1],
            data,
        )

    def write(self, spans: Iterable[ReadableSpan], now_ns: int) -> int:
        """Store ``spans`` (one transaction: a chunk per trace, its summary) and trim;
        returns how many were stored."""
        entries = [entry for entry in map(self.entry, spans) if entry is not None]
        return self.write_entries(entries, now_ns)

    def write_entries(self, entries: list[Entry], now_ns: int) -> int:
        """Store what :meth:`entry` made (one transaction: a chunk per trace, its summary)
        and trim; returns how many spans were stored."""
        by_trace: dict[int, list[Entry]] = {}
        for entry in entries:
            members = by_trace.get(entry[0])
            if members is None:
                by_trace[entry[0]] = [entry]
            else:
                members.append(entry)
        if not by_trace:
            return 0
        pid = os.getpid()
        heads: dict[str | None, bytes] = {}
        values: list[Any] = []  # the statement's parameters, row after row
        for trace_int, members in by_trace.items():
            first = members[0]
            service = first[9]
            head = heads.get(service)
            if head is None:  # ``[service, pid,`` then the spans' JSON
                head = heads[service] = orjson.dumps([service, pid])[:-1] + b","
            data = head + b",".join(map(_DATA, _first_spans(members))) + b"]"
            start = min(map(_START, members))
            root = next(filter(_ROOT, members), None)
            if root is not None:
                duration = root[2] - root[1]
                values += (
                    format(trace_int, "032x"),
                    *(root[5], start, duration if duration > 0 else 0, len(members)),
                    *(sum(map(_FAILED, members)), 1, root[6], root[7], root[8], service, data),
                )
            else:
                duration = max(map(_END, members)) - start
                values += (
                    format(trace_int, "032x"),
                    *(first[5], start, duration if duration > 0 else 0, len(members)),
                    *(sum(map(_FAILED, members)), 0, None, None, None, service, data),
                )
        with self.db.write() as cur:
            _upsert(cur, values)
            self._trim(cur, now_ns, len(entries))
        return len(entries)

    def _trim(self, cur: Any, now_ns: int, stored: int) -> None:
        """Count the ``stored`` spans just written; drop the traces that started before the
        age cap, then the oldest (first written) past the span cap."""
        oldest = now_ns - int(self.max_age * 1e9)
        if self._returning:
            total, aged = cur.execute(_TOTALS, (stored, oldest, oldest)).fetchone()
        else:
            aged = cur.execute(_AGED, (oldest,)).fetchone()[0]
            cur.execute(_ADD, (stored, aged))
            total = cur.execute(_TOTAL).fetchone()[0]
        if aged:
            cur.execute("DELETE FROM traces WHERE start_ns < ?", (oldest,))
        excess = int(total) - self.max_spans
        if excess <= 0:
            return
        found = cur.execute(_CUT, (excess,)).fetchone()
        if found is None:  # fewer stored than counted: all of them go
            found = cur.execute("SELECT max(rowid), total(spans) FROM traces").fetchone()
        cut, dropped = found
        if cut is not None:
            cur.execute("DELETE FROM traces WHERE rowid <= ?", (cut,))
            cur.execute("UPDATE span_total SET spans = max(0, spans - ?)", (int(dropped),))

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
        where = "WHERE duration_ns >= ?"
        if threshold_ns >= SLOW_INDEX_NS:  # the index's own term, for SQLite to choose it
            where = f"WHERE duration_ns >= {SLOW_INDEX_NS} AND duration_ns >= ?"
        return self._traces(where, "duration_ns DESC", (threshold_ns,), limit)

    def failed(self, limit: int = 50) -> list[TraceRow]:
        """The latest traces with a failed span, newest first."""
        return self._traces("WHERE errors > 0", "start_ns DESC", (), limit)

    def summary(self, trace_id: str) -> TraceRow | None:
        found = self._traces("WHERE trace_id = ?", "start_ns", (trace_id,), 1)
        return found[0] if found else None

    def spans(self, trace_id: str, limit: int = 2000) -> list[dict[str, Any]]:
        """The stored spans of one trace, by start time, attributes and events decoded."""
        rows = self.db.read("SELECT data FROM traces WHERE trace_id = ?", (trace_id,))
        out: list[dict[str, Any]] = []
        raw = rows[0][0] if rows else b""
        lines = (raw.encode() if isinstance(raw, str) else raw).split(b"\n") if raw else []
        for line in lines:
            service, pid, *items = orjson.loads(line)
            for item in items:
                span_id, parent, name, kind, start, end, status, message, attrs, events = item
                out.append(
                    {
                        "span_id": format(span_id, "016x"),
                        "parent_id": format(parent, "016x") if parent is not None else None,
                        "name": name,
                        "kind": _KINDS.get(kind, "internal"),
                        "start_ns": start,
                        "duration_ns": max(0, end - start),
                        "status": _STATUS_NAMES[status] if 0 <= status < 3 else "unset",
                        "status_message": message,
                        "service": service,
                        "pid": pid,
                        "attributes": attrs if isinstance(attrs, dict) else {},
                        "events": [
                            {"name": e[0], "time_ns": e[1], "attributes": e[2]} for e in events
                        ],
                    }
                )
                if len(out) >= limit:
                    break
        out.sort(key=lambda span: span["start_ns"])
        return out

    def counts(self) -> dict[str, int]:
        """Spans and traces stored (the whole host)."""
        spans = self.db.read("SELECT coalesce(max(spans), 0) FROM span_total")
        traces = self.db.read("SELECT count(*) FROM traces")
        return {"spans": int(spans[0][0]), "traces": traces[0][0]}


class StoreSpanProcessor(SpanProcessor):
    """Buffers each finished span for the store, as :meth:`SpanStore.entry` makes it; the
    flusher writes them (:meth:`flush`).

    :param store: where spans go.
    :param capacity: most spans buffered; a full buffer drops new ones (counted).
    :param wake: called when the buffer first holds a span in a process (start the flusher).
    :param nudge: called each time ``batch`` more spans are waiting (write now, not at the
        end of the second: the buffer stays small, and each write short); at most half the
        capacity.
    """

    def __init__(
        self,
        store: SpanStore,
        capacity: int,
        *,
        wake: Any = None,
        nudge: Any = None,
        batch: int = 4096,
        clock_ns: Any = None,
    ) -> None:
        import time

        self.store = store
        self.capacity = capacity
        self.wake = wake
        self.nudge = nudge
        # A small buffer is written at half full, not only each second.
        self.batch = max(1, min(batch, capacity // 2))
        self.clock_ns = clock_ns or time.time_ns
        self._buffer: collections.deque[Entry] = collections.deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self.stored = 0
        self._failures = FailureLog()
        self.closed = False
        self._woken = False  # in this process (a forked child starts its own flusher)
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forked(ref))

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.closed:
            return
        buffer = self._buffer
        if len(buffer) >= self.capacity:
            self.dropped += 1
            return
        try:
            entry = self.store.entry(span)
        except Exception:  # never the host's request
            self.dropped += 1
            self._failures("the console's span store (a span not kept)")
            return
        if entry is None:
            return
        buffer.append(entry)
        if len(buffer) % self.batch == 0 and self.nudge is not None:
            self.nudge()
        if not self._woken:  # the first span of this process: start the flusher
            self._woken = True
            if self.wake is not None:
                self.wake()

    def forked(self, clear: bool = True) -> None:
        """In a forked child: its first span starts its own flusher (threads do not survive
        fork(); a check of the pid on every span cost a system call each). What the parent
        had buffered is the parent's to write (every worker wrote it again, a copy each):
        cleared, unless the fork is found late (``clear=False``: the buffer then holds the
        child's own spans too), and its lock may have been held by the parent's flusher."""
        self._woken = False
        if clear:
            self._buffer.clear()
        self._lock = threading.Lock()

    def flush(self) -> int:
        """Write what is buffered (the flusher's task); returns how many spans were stored.
        When the file is busy the spans are kept for the next flush (within ``capacity``),
        on any other failure counted as dropped; the error is raised."""
        buffer = self._buffer
        popleft = buffer.popleft
        with self._lock:
            taken = [popleft() for _ in range(len(buffer))]
        if not taken:
            return 0
        try:
            stored = self.store.write_entries(taken, self.clock_ns())
        except Exception as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                self._keep(taken)  # another worker held the file: the next write will do
            else:  # it would fail the same way each time, and keep the buffer full
                self.dropped += len(taken)
            raise
        self.stored += stored
        return stored

    def _keep(self, taken: list[Entry]) -> None:
        """A write the file was too busy for: its spans wait for the next, within the
        capacity; the rest are counted dropped."""
        buffer = self._buffer
        with self._lock:
            room = max(0, self.capacity - len(buffer))
            buffer.extendleft(reversed(taken[:room]))
            self.dropped += len(taken) - min(room, len(taken))

    def buffered(self) -> int:
        return len(self._buffer)

    def shutdown(self) -> None:
        self.closed = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _forked(ref: weakref.ref[StoreSpanProcessor]) -> None:
    processor = ref()
    if processor is not None:
        processor.forked()
