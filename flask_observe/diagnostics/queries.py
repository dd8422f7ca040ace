"""SQL diagnostics through SQLAlchemy's engine events: query durations, per-statement
statistics, slow queries, queries per request and the connection pools.

- Each query is timed (``before/after_cursor_execute``, SQLAlchemy's documented recipe).
  One slower than the threshold is counted (``db_slow_queries_total``), recorded as a
  ``slow_query`` event on the current trace span when tracing is on, and logged **once per
  fingerprint** — the statement with literals replaced by ``?`` and ``IN`` lists collapsed;
  bound parameters are never logged.
- Queries are counted per request: ``http_request_db_queries`` (histogram by route) and the
  access log's ``db_queries`` field — many queries on one route is the N+1 signal. Requests
  that run no query at all are left out of both (so they cost nothing).

- Every query is timed into ``db_query_duration_seconds{operation}`` (the statement's verb:
  ``SELECT``, ``INSERT``… a bounded set) and into the statistics of its fingerprint: count,
  total time, p50/p95/p99 (estimated from doubling buckets), last seen — parameters never
  kept, at most :data:`MAX_FINGERPRINTS` statements (the least recently seen go first). The
  last :data:`RECENT_SLOW` slow queries are kept with their request's correlation and trace
  IDs. ``flask observe db stats`` and ``flask observe db slow`` print them.
- Each engine's pool: ``db_pool_connections_in_use{engine}``, ``db_pool_overflow{engine}``
  and ``db_pool_size{engine}``, sampled by the background ticker.

The listeners are process-wide (SQLAlchemy's ``Engine`` class events, so engines created
later are covered too) and attribute each query to the app of the current app context.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from flask.globals import _cv_request

from .._clock import SYSTEM, Clock
from .._internal import FailureLog
from ..context import get_correlation_id
from ..hooks import RECORD_KEY
from ..metrics.multiprocess import exact
from ..state import state_or_none

if TYPE_CHECKING:
    from ..hooks import RequestRecord
    from ..metrics import Metrics

__all__ = ["QueryDiagnostics", "fingerprint"]

logger = logging.getLogger("flask_observe.diagnostics")

_STRING = re.compile(r"'(?:[^']|'')*'")
#: PostgreSQL dollar quoting: ``$$…$$`` or ``$tag$…$tag$``.
_DOLLAR = re.compile(r"\$((?:[A-Za-z_]\w*)?)\$.*?\$\1\$", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w$])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE)
_IN_LIST = re.compile(r"\bIN\s*\((?:\s*\?\s*,?)+\)", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|:\w+|\$\d+|\?")
_SPACE = re.compile(r"\s+")
_SEEN_MAX = 1000
QUERY_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200)
#: Statements kept with their statistics (the least recently seen are forgotten first).
MAX_FINGERPRINTS = 500
#: Slow queries kept for ``flask observe db slow``.
RECENT_SLOW = 50
#: Upper bounds (seconds) of the buckets the percentiles are estimated from: 0.25 ms doubling.
STAT_BOUNDS = tuple(0.00025 * 2**i for i in range(18))
#: Buckets of ``db_query_duration_seconds``.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
#: The ``operation`` label's values; any other verb is ``OTHER``.
OPERATIONS = frozenset(
    (
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "CREATE",
        "ALTER",
        "DROP",
        "PRAGMA",
        "SET",
        "SHOW",
        "EXPLAIN",
        "CALL",
        "MERGE",
    )
)
_VERB = re.compile(r"\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*([A-Za-z]+)", re.DOTALL)
_WITH_VERB = re.compile(r"\)\s*(SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_STATEMENT_CACHE = 2048


def operation(statement: str) -> str:
    """The statement's verb, upper case, from a bounded set (``OTHER`` for the rest); a
    ``WITH`` query is the verb after its common table expressions."""
    match = _VERB.match(statement)
    verb = match[1].upper() if match else ""
    if verb == "WITH":
        found = _WITH_VERB.search(statement)
        verb = found[1].upper() if found else "SELECT"
    return verb if verb in OPERATIONS else "OTHER"


class StatementStats:
    """What is known of one statement (by fingerprint): never its parameters."""

    __slots__ = ("buckets", "count", "digest", "last_seen", "max", "operation", "shape", "total")

    def __init__(self, digest: str, shape: str, verb: str) -> None:
        self.digest = digest
        self.shape = shape
        self.operation = verb
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.last_seen = 0.0
        self.buckets = [0] * (len(STAT_BOUNDS) + 1)

    def add(self, seconds: float, now: float) -> None:
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.last_seen = now
        self.buckets[bisect.bisect_left(STAT_BOUNDS, seconds)] += 1

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding the ``q`` quantile (the largest seen for the
        last bucket): an estimate within a factor of two."""
        rank = q * self.count
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank and n:
                return min(STAT_BOUNDS[index], self.max) if index < len(STAT_BOUNDS) else self.max
        return self.max

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.digest,
            "statement": self.shape,
            "operation": self.operation,
            "count": self.count,
            "total_ms": round(self.total * 1000.0, 3),
            "mean_ms": round(self.total / self.count * 1000.0, 3) if self.count else None,
            "p50_ms": round(self.quantile(0.5) * 1000.0, 3),
            "p95_ms": round(self.quantile(0.95) * 1000.0, 3),
            "p99_ms": round(self.quantile(0.99) * 1000.0, 3),
            "max_ms": round(self.max * 1000.0, 3),
            "last_seen": self.last_seen,
        }


def fingerprint(statement: str) -> str:
    """The statement with every literal and placeholder as ``?`` and ``IN (…)`` collapsed."""
    text = _DOLLAR.sub("?", statement)
    if "\\" in text and "'" in text:
        # Backslashes make quoting ambiguous (MySQL and PostgreSQL E'' strings escape quotes
        # with them, standard strings do not): rather than guess, scrub from the first quote
        # to the last.
        text = text[: text.index("'")] + "?" + text[text.rindex("'") + 1 :]
    text = _STRING.sub("?", text)
    text = _NUMBER.sub("?", text)
    text = _PLACEHOLDER.sub("?", text)
    text = _IN_LIST.sub("IN (?)", text)
    return _SPACE.sub(" ", text).strip()


class QueryDiagnostics:
    """The SQL diagnostics of one app.

    :param metrics: where the counters go.
    :param threshold: seconds from which a query is slow.
    """

    def __init__(self, metrics: Metrics, threshold: float, *, clock: Clock = SYSTEM) -> None:
        self.threshold = threshold
        self._clock = clock
        self.slow = metrics.counter(
            "db_slow_queries_total", "SQL queries slower than the slow-query threshold."
        )
        self.per_request = metrics.histogram(
            "http_request_db_queries",
            "SQL queries run while serving one request.",
            ["route"],
            buckets=QUERY_BUCKETS,
        )
        self.duration = metrics.histogram(
            "db_query_duration_seconds",
            "SQL query durations, by the statement's operation (SELECT, INSERT…).",
            ["operation"],
            buckets=DURATION_BUCKETS,
        )
        self.pool_in_use = metrics.gauge(
            "db_pool_connections_in_use",
            "Connections of each engine's pool checked out now.",
            ["engine"],
            multiprocess_mode="livesum",
        )
        self.pool_overflow = metrics.gauge(
            "db_pool_overflow",
            "Connections each engine's pool opened beyond its size (negative: room left).",
            ["engine"],
            multiprocess_mode="livesum",
        )
        self.pool_size = metrics.gauge(
            "db_pool_size", "The size of each engine's pool.", ["engine"], multiprocess_mode="max"
        )
        self._children: dict[str | None, Any] = {}
        self._by_operation: dict[str, Any] = {}
        #: statement text -> (digest, shape, operation): statements repeat, fingerprinting
        #: each run would cost more than the rest of the bookkeeping.
        self._statements: dict[str, tuple[str, str, str]] = {}
        self._stats: OrderedDict[str, StatementStats] = OrderedDict()
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_SLOW)
        self._engines: weakref.WeakSet[Any] = weakref.WeakSet()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._failures = FailureLog()

    # -- what it knows -------------------------------------------------------------------

    def statistics(self, top: int = 20, sort: str = "total") -> list[dict[str, Any]]:
        """The statements with the most ``total`` time (or ``count``, ``p95``, ``max``)."""
        keys = {
            "total": lambda s: s.total,
            "count": lambda s: s.count,
            "p95": lambda s: s.quantile(0.95),
            "max": lambda s: s.max,
        }
        if sort not in keys:
            raise ValueError(f"sort: one of {', '.join(keys)}")
        with self._lock:
            stats = list(self._stats.values())
        stats.sort(key=keys[sort], reverse=True)
        return [s.as_dict() for s in stats[:top]]

    def recent_slow(self) -> list[dict[str, Any]]:
        """The last slow queries, newest first (no parameters)."""
        with self._lock:
            return list(reversed(self._recent))

    def sample_pools(self) -> None:
        """Set the pool gauges of every engine a query was seen on (the ticker's task)."""
        for engine in list(self._engines):
            pool = engine.pool
            name = _engine_label(engine)
            for gauge, reading in (
                (self.pool_in_use, "checkedout"),
                (self.pool_overflow, "overflow"),
                (self.pool_size, "size"),
            ):
                read = getattr(pool, reading, None)
                if callable(read):
                    gauge.labels(name).set(read())

    # -- request hooks ---------------------------------------------------------------------

    def on_finish(self, record: RequestRecord) -> None:
        fields = record.fields
        if fields is None or record.excluded:
            return
        count = fields.get("db_queries")
        if count is None:
            return
        route = record.route
        child = self._children.get(route)
        if child is None:
            from ..metrics.http import UNMATCHED

            child = self.per_request.labels(route if route is not None else UNMATCHED)
            self._children[route] = child  # bounded: routes are
        child.observe(count)

    # -- engine events ---------------------------------------------------------------------

    def after_query(self, statement: str, elapsed: float, engine: Any = None) -> None:
        # The request's record, from the environ the middleware stored it in: requests that
        # run no query cost nothing.
        ctx = _cv_request.get(None)
        record = ctx.request.environ.get(RECORD_KEY) if ctx is not None else None
        if record is not None:
            fields = record.fields
            if fields is None:
                record.fields = {"db_queries": 1}
            else:
                fields["db_queries"] = fields.get("db_queries", 0) + 1
        known = self._statements.get(statement)
        if known is None:
            shape = fingerprint(statement)
            known = (
                hashlib.sha256(shape.encode()).hexdigest()[:16],
                shape[:2000],
                operation(shape),
            )
            if len(self._statements) >= _STATEMENT_CACHE:
                self._statements.clear()
            self._statements[statement] = known
        digest, shape, verb = known
        child = self._by_operation.get(verb)
        if child is None:
            child = self._by_operation[verb] = self.duration.labels(verb)  # bounded: verbs
        child.observe(exact(elapsed))  # whole QUANTUM: the workers' sums add up exactly
        now = self._clock.time()
        with self._lock:
            stats = self._stats.get(digest)
            if stats is None:
                stats = self._stats[digest] = StatementStats(digest, shape, verb)
                if len(self._stats) > MAX_FINGERPRINTS:
                    self._stats.popitem(last=False)
            else:
                self._stats.move_to_end(digest)
            stats.add(elapsed, now)
        if engine is not None and engine not in self._engines:
            self._engines.add(engine)
        if elapsed < self.threshold:
            return
        self.slow.inc()
        _span_event(shape, digest, elapsed)
        slow = {
            "fingerprint": digest,
            "statement": shape,
            "operation": verb,
            "duration_ms": round(elapsed * 1000.0, 1),
            "timestamp": now,
            "correlation_id": get_correlation_id(),
            "trace_id": _trace_id(),
            "route": ctx.request.url_rule.rule
            if ctx is not None and ctx.request.url_rule
            else None,
        }
        with self._lock:
            self._recent.append(slow)
            if digest in self._seen:
                self._seen.move_to_end(digest)
                return
            self._seen[digest] = None
            if len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)
        logger.warning(
            "slow query",
            extra={
                "fingerprint": digest,
                "statement": shape,
                "duration_ms": round(elapsed * 1000.0, 1),
                "threshold_ms": round(self.threshold * 1000.0, 1),
            },
        )


def _trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def _engine_label(engine: Any) -> str:
    """An engine's name for a label: driver, host and database, never its credentials."""
    url = engine.url
    return f"{url.drivername}://{url.host or ''}/{url.database or ''}"


def _span_event(shape: str, digest: str, elapsed: float) -> None:
    try:
        from opentelemetry import trace
    except ImportError:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            "slow_query",
            # db.query.text: the stable convention's name (db.statement before it).
            {"db.query.text": shape[:2000], "db.fingerprint": digest, "duration_ms": elapsed * 1e3},
        )


# -- process-wide listeners --------------------------------------------------------------

_installed = 0
_install_lock = threading.Lock()


_START = "_flask_observe_query_start"


def _before(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, *args: Any
) -> None:
    # On the statement's execution context: a statement that fails never reaches
    # after_cursor_execute, and a start kept on the (pooled) connection would stay there.
    if context is not None:
        setattr(context, _START, time.perf_counter())
    else:
        conn.info.setdefault(_START, []).append(time.perf_counter())


def _after(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, *args: Any
) -> None:
    started = getattr(context, _START, None) if context is not None else None
    if started is None:
        starts = conn.info.get(_START)
        if not starts:
            return
        started = starts.pop()
    elapsed = time.perf_counter() - started
    state = state_or_none()
    diagnostics = state.get(QueryDiagnostics) if state is not None else None
    if diagnostics is not None:
        try:
            diagnostics.after_query(statement, elapsed, conn.engine)
        except Exception:
            diagnostics._failures("slow-query diagnostics")


def install() -> None:
    """Listen to every SQLAlchemy engine (reference-counted; :func:`uninstall` undoes)."""
    global _installed
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    with _install_lock:
        if _installed == 0:
            event.listen(Engine, "before_cursor_execute", _before)
            event.listen(Engine, "after_cursor_execute", _after)
        _installed += 1


def uninstall() -> None:
    global _installed
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    with _install_lock:
        _installed -= 1
        if _installed == 0:
            event.remove(Engine, "before_cursor_execute", _before)
            event.remove(Engine, "after_cursor_execute", _after)
