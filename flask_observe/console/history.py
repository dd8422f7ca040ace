"""Alert and health history: what fired and resolved, what each channel did with it, and
each health check's transitions, kept for the host in the console's SQLite file.

The listeners (:meth:`History.on_alert` for the alert router, :meth:`History.on_health` for
the health runner) only append to a bounded in-memory queue: they run in the router's sender
thread, the rule engine's ticker thread, or a request thread running a health probe, and must
not wait on a disk. The app's ticker writes the queue (:meth:`History.flush`).

- An **alert** is one incident of one fingerprint: fired at its first firing notification,
  resolved at its resolved one. Several workers firing the same condition share the open
  incident; notifications the router suppressed (dedup, cooldown) are counted on it, not listed.
- Each **notification** outcome per channel is a row: ``sent``, ``retrying``, ``failed``,
  ``held`` (the receiver throttles the channel), ``dropped``.
- A **transition** is a check's status changing as the host sees it: a worker recording the
  change another already recorded adds nothing.

Rows are bounded (:class:`History`'s ``max_*``), text fields capped (:data:`MAX_TEXT`).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._clock import SYSTEM, Clock

if TYPE_CHECKING:
    from ..alerting.model import Alert
    from ..health.results import CheckResult
    from .store import ConsoleDB

__all__ = ["AlertEntry", "History", "Notification", "Transition"]

#: Characters kept of a summary, description, detail or check output.
MAX_TEXT = 1000
#: Events waiting for a flush, at most (the oldest are dropped and counted).
MAX_QUEUED = 10_000

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS alert (
        id INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        name TEXT NOT NULL,
        severity TEXT NOT NULL,
        summary TEXT NOT NULL,
        description TEXT NOT NULL,
        labels TEXT NOT NULL,
        fired_at REAL NOT NULL,
        last_seen REAL NOT NULL,
        resolved_at REAL,
        resolved_summary TEXT,
        suppressed INTEGER NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS alert_fingerprint ON alert (fingerprint, id)
    """,
    """
    CREATE TABLE IF NOT EXISTS notification (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL,
        status TEXT NOT NULL,
        channel TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL,
        at REAL NOT NULL
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS notification_alert ON notification (alert_id)
    """,
    """
    CREATE TABLE IF NOT EXISTS transition (
        id INTEGER PRIMARY KEY,
        check_name TEXT NOT NULL,
        from_status TEXT,
        to_status TEXT NOT NULL,
        critical INTEGER NOT NULL,
        output TEXT NOT NULL,
        at REAL NOT NULL
    )
    """,
    """
    CREATE INDEX IF NOT EXISTS transition_check ON transition (check_name, id)
    """,
)

#: Router events that are a channel's outcome (a row each).
OUTCOMES = frozenset(("sent", "retrying", "failed", "held", "dropped"))


def _cap(text: object) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"


@dataclass(frozen=True)
class Notification:
    status: str
    channel: str
    outcome: str
    detail: str
    at: float


@dataclass(frozen=True)
class AlertEntry:
    """One incident: fired (and maybe resolved), with each channel's outcomes."""

    id: int
    fingerprint: str
    name: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str]
    fired_at: float
    last_seen: float
    resolved_at: float | None
    resolved_summary: str | None
    suppressed: int
    notifications: list[Notification] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "resolved" if self.resolved_at is not None else "firing"


@dataclass(frozen=True)
class Transition:
    check: str
    from_status: str | None
    to_status: str
    critical: bool
    output: str
    at: float


class History:
    """The host's alert and health history.

    :param db: the console's SQLite file, shared by the host's workers.
    :param clock: timestamps of events (``clock.time()``).
    :param max_alerts: incidents kept (the oldest go first); notifications are kept as long
        as their incident, at most ``max_notifications``.
    :param max_transitions: health transitions kept, of all checks together.
    """

    def __init__(
        self,
        db: ConsoleDB,
        *,
        clock: Clock = SYSTEM,
        max_alerts: int = 500,
        max_notifications: int = 5000,
        max_transitions: int = 2000,
    ) -> None:
        self.db = db
        db.add_schema(*SCHEMA)
        self.clock = clock
        self.max_alerts = max_alerts
        self.max_notifications = max_notifications
        self.max_transitions = max_transitions
        self._queue: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        #: Events dropped because the queue was full (a flush could not write).
        self.dropped = 0

    # -- listeners (any thread; no I/O) -----------------------------------------------------

    def _put(self, event: tuple[Any, ...]) -> None:
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)

    def on_alert(self, event: str, alert: Alert, channel: str | None, detail: str) -> None:
        """The alert router's listener: ``event`` is ``queued`` (the alert was raised),
        ``suppressed`` or a channel's outcome (:data:`OUTCOMES`)."""
        self._put(("alert", self.clock.time(), event, alert, channel or "", detail))

    def on_health(self, result: CheckResult, previous: CheckResult | None) -> None:
        """The health runner's listener: a change of a check's status (a first result only
        when it is not a pass)."""
        before = previous.status.value if previous is not None else None
        after = result.status.value
        if before == after or (before is None and after == "pass"):
            return
        self._put(
            ("health", result.timestamp, result.name, before, after, result.critical, result.output)
        )

    # -- the ticker -------------------------------------------------------------------------

    def flush(self) -> int:
        """Write the queued events; returns how many. On failure they are queued again."""
        with self._flush_lock:
            with self._lock:
                events = list(self._queue)
                self._queue.clear()
            if not events:
                return 0
            try:
                with self.db.write() as db:
                    for event in events:
                        if event[0] == "alert":
                            self._write_alert(db, *event[1:])
                        else:
                            self._write_transition(db, *event[1:])
                    self._trim(db)
            except Exception:
                with self._lock:
                    room = MAX_QUEUED - len(self._queue)
                    kept = events[-room:] if room > 0 else []
                    self.dropped += len(events) - len(kept)
                    self._queue.extendleft(reversed(kept))
                raise
            return len(events)

    def _write_alert(
        self, db: Any, at: float, event: str, alert: Alert, channel: str, detail: str
    ) -> None:
        row = db.execute(
            "SELECT id, resolved_at FROM alert WHERE fingerprint=? ORDER BY id DESC LIMIT 1",
            (alert.fingerprint,),
        ).fetchone()
        open_id = row[0] if row is not None and row[1] is None else None
        firing = alert.status == "firing"
        if event == "queued":
            if firing and open_id is None:
                db.execute(
                    "INSERT INTO alert (fingerprint, name, severity, summary, description,"
                    " labels, fired_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        alert.fingerprint,
                        _cap(alert.name),
                        alert.severity,
                        _cap(alert.summary),
                        _cap(alert.description),
                        _cap(json.dumps(dict(alert.labels))),
                        at,
                        at,
                    ),
                )
            elif firing:
                db.execute(
                    "UPDATE alert SET last_seen=?, summary=? WHERE id=?",
                    (at, _cap(alert.summary), open_id),
                )
            elif open_id is not None:
                db.execute(
                    "UPDATE alert SET resolved_at=?, resolved_summary=?, last_seen=? WHERE id=?",
                    (at, _cap(alert.summary), at, open_id),
                )
            return
        target = open_id if open_id is not None else (row[0] if row is not None else None)
        if target is None:
            return
        if event == "suppressed":
            db.execute("UPDATE alert SET suppressed=suppressed+1 WHERE id=?", (target,))
        elif event in OUTCOMES:
            db.execute(
                "INSERT INTO notification (alert_id, status, channel, outcome, detail, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (target, alert.status, _cap(channel), event, _cap(detail), at),
            )

    def _write_transition(
        self,
        db: Any,
        at: float,
        check: str,
        before: str | None,
        after: str,
        critical: bool,
        output: str | None,
    ) -> None:
        row = db.execute(
            "SELECT to_status FROM transition WHERE check_name=? ORDER BY id DESC LIMIT 1",
            (check,),
        ).fetchone()
        if row is not None and row[0] == after:
            return  # another worker saw the same change first
        if row is None and after == "pass":
            return
        db.execute(
            "INSERT INTO transition (check_name, from_status, to_status, critical, output, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                _cap(check),
                row[0] if row is not None else before,
                after,
                int(critical),
                _cap(output),
                at,
            ),
        )

    def _trim(self, db: Any) -> None:
        for table, keep in (
            ("alert", self.max_alerts),
            ("notification", self.max_notifications),
            ("transition", self.max_transitions),
        ):
            db.execute(
                f"DELETE FROM {table} WHERE id <= (SELECT id FROM {table} ORDER BY id DESC"
                " LIMIT 1 OFFSET ?)",
                (keep,),
            )
        db.execute("DELETE FROM notification WHERE alert_id < (SELECT MIN(id) FROM alert)")

    # -- reading (the pages) ----------------------------------------------------------------

    def alerts(self, limit: int = 50, *, firing_only: bool = False) -> list[AlertEntry]:
        """The latest incidents, newest first, each with its notifications (oldest first)."""
        where = " WHERE resolved_at IS NULL" if firing_only else ""
        db = self.db.connection()
        rows = db.execute(
            "SELECT id, fingerprint, name, severity, summary, description, labels, fired_at,"
            f" last_seen, resolved_at, resolved_summary, suppressed FROM alert{where}"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        ids = [row[0] for row in rows]
        notes: dict[int, list[Notification]] = {i: [] for i in ids}
        if ids:
            marks = ",".join("?" * len(ids))
            for alert_id, *rest in db.execute(
                "SELECT alert_id, status, channel, outcome, detail, at FROM notification"
                f" WHERE alert_id IN ({marks}) ORDER BY id",
                ids,
            ):
                notes[alert_id].append(Notification(*rest))
        return [
            AlertEntry(
                id=row[0],
                fingerprint=row[1],
                name=row[2],
                severity=row[3],
                summary=row[4],
                description=row[5],
                labels=json.loads(row[6]) if row[6].startswith("{") else {},
                fired_at=row[7],
                last_seen=row[8],
                resolved_at=row[9],
                resolved_summary=row[10],
                suppressed=row[11],
                notifications=notes[row[0]],
            )
            for row in rows
        ]

    def transitions(self, check: str | None = None, limit: int = 100) -> list[Transition]:
        """The latest transitions (of ``check``, or of every check), newest first."""
        query = "SELECT check_name, from_status, to_status, critical, output, at FROM transition"
        args: tuple[Any, ...] = (limit,)
        if check is not None:
            query += " WHERE check_name=?"
            args = (check, limit)
        db = self.db.connection()
        rows = db.execute(query + " ORDER BY id DESC LIMIT ?", args).fetchall()
        return [Transition(c, f, t, bool(k), o, a) for c, f, t, k, o, a in rows]

    def last_status(self) -> dict[str, Transition]:
        """Each check's latest transition (the status the host saw last)."""
        db = self.db.connection()
        rows = db.execute(
            "SELECT check_name, from_status, to_status, critical, output, at FROM transition"
            " WHERE id IN (SELECT MAX(id) FROM transition GROUP BY check_name)"
        ).fetchall()
        return {c: Transition(c, f, t, bool(k), o, a) for c, f, t, k, o, a in rows}
