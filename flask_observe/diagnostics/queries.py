"""SQL diagnostics through SQLAlchemy's engine events: slow queries and queries per request.

- Each query is timed (``before/after_cursor_execute``, SQLAlchemy's documented recipe).
  One slower than the threshold is counted (``db_slow_queries_total``), recorded as a
  ``slow_query`` event on the current trace span when tracing is on, and logged **once per
  fingerprint** — the statement with literals replaced by ``?`` and ``IN`` lists collapsed;
  bound parameters are never logged.
- Queries are counted per request: ``http_request_db_queries`` (histogram by route) and the
  access log's ``db_queries`` field — many queries on one route is the N+1 signal. Requests
  that run no query at all are left out of both (so they cost nothing).

The listeners are process-wide (SQLAlchemy's ``Engine`` class events, so engines created
later are covered too) and attribute each query to the app of the current app context.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from flask.globals import _cv_request

from .._internal import FailureLog
from ..hooks import RECORD_KEY
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

    def __init__(self, metrics: Metrics, threshold: float) -> None:
        self.threshold = threshold
        self.slow = metrics.counter(
            "db_slow_queries_total", "SQL queries slower than the slow-query threshold."
        )
        self.per_request = metrics.histogram(
            "http_request_db_queries",
            "SQL queries run while serving one request.",
            ["route"],
            buckets=QUERY_BUCKETS,
        )
        self._children: dict[str | None, Any] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._failures = FailureLog()

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

    def after_query(self, statement: str, elapsed: float) -> None:
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
        if elapsed < self.threshold:
            return
        self.slow.inc()
        shape = fingerprint(statement)
        digest = hashlib.sha256(shape.encode()).hexdigest()[:16]
        _span_event(shape, digest, elapsed)
        with self._lock:
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
                "statement": shape[:2000],
                "duration_ms": round(elapsed * 1000.0, 1),
                "threshold_ms": round(self.threshold * 1000.0, 1),
            },
        )


def _span_event(shape: str, digest: str, elapsed: float) -> None:
    try:
        from opentelemetry import trace
    except ImportError:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            "slow_query",
            {"db.statement": shape[:2000], "db.fingerprint": digest, "duration_ms": elapsed * 1e3},
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
            diagnostics.after_query(statement, elapsed)
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
