"""The console's error groups: every error the errors feature captures (unhandled, logged,
or through :func:`~flask_observe.capture_exception`), grouped by its fingerprint (type and
frames), counted across the workers of the host, in the console's SQLite file.

What is stored is the :class:`~flask_observe.errors.CapturedError` the Sentry path sends:
its message went through the same scrubber, its frames carry no local variables, and it has
no request body, header or cookie. The listener (on the thread that captured the error)
only appends to a bounded buffer; the console's flusher writes.
"""

from __future__ import annotations

import collections
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from ..errors.capture import CapturedError
    from .store import ConsoleDB

__all__ = ["ErrorGroup", "ErrorStore"]

#: Occurrences kept per group (the latest), for their trace and log links.
EVENTS_PER_GROUP = 20

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS error_groups (
        fingerprint TEXT PRIMARY KEY, exc_type TEXT, message TEXT NOT NULL,
        frames TEXT NOT NULL, level TEXT NOT NULL, mechanism TEXT NOT NULL,
        handled INTEGER NOT NULL, route TEXT, method TEXT, logger TEXT,
        count INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
        trace_id TEXT, correlation_id TEXT)""",
    "CREATE INDEX IF NOT EXISTS error_groups_seen ON error_groups(last_seen)",
    """CREATE TABLE IF NOT EXISTS error_events (
        id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, timestamp REAL NOT NULL,
        trace_id TEXT, correlation_id TEXT, route TEXT, method TEXT, handled INTEGER NOT NULL,
        mechanism TEXT NOT NULL, pid INTEGER)""",
    "CREATE INDEX IF NOT EXISTS error_events_group ON error_events(fingerprint, id)",
    "CREATE INDEX IF NOT EXISTS error_events_trace ON error_events(trace_id)",
)

_UPSERT = """INSERT INTO error_groups (fingerprint, exc_type, message, frames, level, mechanism,
        handled, route, method, logger, count, first_seen, last_seen, trace_id, correlation_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
    ON CONFLICT(fingerprint) DO UPDATE SET
        count = count + 1,
        message = excluded.message, frames = excluded.frames, level = excluded.level,
        mechanism = excluded.mechanism, handled = excluded.handled,
        route = coalesce(excluded.route, route), method = coalesce(excluded.method, method),
        logger = coalesce(excluded.logger, logger),
        first_seen = min(first_seen, excluded.first_seen),
        last_seen = max(last_seen, excluded.last_seen),
        trace_id = coalesce(excluded.trace_id, trace_id),
        correlation_id = coalesce(excluded.correlation_id, correlation_id)"""


@dataclass(frozen=True)
class ErrorGroup:
    """One fingerprint: what it is, how often and when it was seen, the latest trace."""

    fingerprint: str
    exc_type: str | None
    message: str
    frames: list[list[Any]]
    level: str
    mechanism: str
    handled: bool
    route: str | None
    method: str | None
    logger: str | None
    count: int
    first_seen: float
    last_seen: float
    trace_id: str | None
    correlation_id: str | None

    @property
    def title(self) -> str:
        return self.exc_type or f"{self.level} message"


class ErrorStore:
    """The error tables of the console's store, and the listener that feeds them.

    :param db: the console's SQLite file.
    :param max_groups: most groups kept; the least recently seen go first.
    :param capacity: most errors buffered between two writes; more are dropped (counted).
    """

    def __init__(self, db: ConsoleDB, max_groups: int, capacity: int = 1000) -> None:
        self.db = db
        self.max_groups = max_groups
        self.capacity = capacity
        db.add_schema(*SCHEMA)
        self._buffer: collections.deque[CapturedError] = collections.deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self.wake: Any = None

    def listener(self, error: CapturedError) -> None:
        """The errors feature's listener: buffer ``error`` (never blocks)."""
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            return
        self._buffer.append(error)
        if self.wake is not None:
            self.wake()

    def flush(self) -> int:
        """Write what is buffered (one transaction); returns how many errors were stored."""
        with self._lock:
            taken = list(self._buffer)
            for _ in taken:
                self._buffer.popleft()
        if not taken:
            return 0
        pid = os.getpid()
        with self.db.write() as cur:
            for error in taken:
                cur.execute(
                    _UPSERT,
                    (
                        error.fingerprint,
                        error.exc_type,
                        error.message,
                        orjson.dumps(error.frames).decode(),
                        error.level,
                        error.mechanism,
                        int(error.handled),
                        error.route,
                        error.method,
                        error.logger,
                        error.timestamp,
                        error.timestamp,
                        error.trace_id,
                        error.correlation_id,
                    ),
                )
                cur.execute(
                    "INSERT INTO error_events (fingerprint, timestamp, trace_id, correlation_id,"
                    " route, method, handled, mechanism, pid) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        error.fingerprint,
                        error.timestamp,
                        error.trace_id,
                        error.correlation_id,
                        error.route,
                        error.method,
                        int(error.handled),
                        error.mechanism,
                        pid,
                    ),
                )
            self._trim(cur, {error.fingerprint for error in taken})
        return len(taken)

    def _trim(self, cur: Any, touched: set[str]) -> None:
        for fingerprint in touched:
            cur.execute(
                "DELETE FROM error_events WHERE fingerprint = ? AND id <= coalesce((SELECT id"
                " FROM error_events WHERE fingerprint = ? ORDER BY id DESC LIMIT 1 OFFSET ?),"
                " -1)",
                (fingerprint, fingerprint, EVENTS_PER_GROUP),
            )
        extra = cur.execute("SELECT count(*) FROM error_groups").fetchone()[0] - self.max_groups
        if extra > 0:
            old = [
                row[0]
                for row in cur.execute(
                    "SELECT fingerprint FROM error_groups ORDER BY last_seen LIMIT ?", (extra,)
                )
            ]
            cur.executemany("DELETE FROM error_groups WHERE fingerprint = ?", [(f,) for f in old])
            cur.executemany("DELETE FROM error_events WHERE fingerprint = ?", [(f,) for f in old])

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _group(row: Any) -> ErrorGroup:
        values = dict(row)
        values["frames"] = orjson.loads(values["frames"])
        values["handled"] = bool(values["handled"])
        return ErrorGroup(**values)

    def groups(self, limit: int = 100) -> list[ErrorGroup]:
        """The groups, the most recently seen first."""
        rows = self.db.read("SELECT * FROM error_groups ORDER BY last_seen DESC LIMIT ?", (limit,))
        return [self._group(row) for row in rows]

    def group(self, fingerprint: str) -> ErrorGroup | None:
        rows = self.db.read("SELECT * FROM error_groups WHERE fingerprint = ?", (fingerprint,))
        return self._group(rows[0]) if rows else None

    def events(self, fingerprint: str) -> list[dict[str, Any]]:
        """The latest occurrences of a group, newest first."""
        rows = self.db.read(
            "SELECT timestamp, trace_id, correlation_id, route, method, handled, mechanism, pid"
            " FROM error_events WHERE fingerprint = ? ORDER BY id DESC LIMIT ?",
            (fingerprint, EVENTS_PER_GROUP),
        )
        return [dict(row) for row in rows]

    def for_trace(self, trace_id: str) -> list[ErrorGroup]:
        """The groups with an occurrence in ``trace_id`` (the trace page links them)."""
        rows = self.db.read(
            "SELECT g.* FROM error_groups g WHERE g.fingerprint IN (SELECT fingerprint FROM"
            " error_events WHERE trace_id = ?)",
            (trace_id,),
        )
        return [self._group(row) for row in rows]
