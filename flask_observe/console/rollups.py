"""Rollups: what the overview shows, kept by the app itself and shared by the workers of a host.

Per route (and per outbound host, per Celery task) each process counts requests, errors and a
latency histogram of fixed log-spaced buckets (:data:`BUCKET_BASE` x :data:`BUCKET_FACTOR`
to the n-th: p50/p95/p99 are within half a bucket, about 9 %). The request path only updates a
dict under a lock (:meth:`Rollups.add`, about a microsecond: no I/O); the app's ticker
flushes what accumulated into one SQLite file that every worker of the host writes to
(:class:`~flask_observe.console.store.ConsoleDB`), in tiers of 1 m, 5 m, 15 m, 1 h and 24 h
slots, each kept for a bounded time (:data:`TIERS`), so memory and disk stay bounded:

- memory: at most :data:`MAX_PENDING` (slot, series) cells wait for a flush; beyond, requests
  are counted in :attr:`Rollups.dropped` and left out;
- series: at most :data:`MAX_NAMES` names per kind; further names are counted as
  :data:`OTHER` (routes are URL rules, hosts the declared ones: far fewer in practice);
- disk: rows per series at most the sum of each tier's kept slots (about 900), plus as many
  for each kind's total (what the charts read).

A window "the last 5 minutes" is the slots of its tier (:data:`WINDOWS`: 1 m slots for 5 and 15
minutes, 5 m for an hour, 1 h for a day) that started within it (so it covers between 5
minutes and 5 minutes plus one slot); rates divide by the time those slots cover.
Errors are answers with a 5xx status (as the RED metrics and the alert rules count them); an
outbound call is an error when ``http_client_errors_total`` counts it.
"""

from __future__ import annotations

import json
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._clock import SYSTEM, Clock

if TYPE_CHECKING:
    from ..hooks import OutboundCall, RequestRecord
    from .store import ConsoleDB

__all__ = [
    "BUCKET_BASE",
    "BUCKET_FACTOR",
    "KINDS",
    "TIERS",
    "WINDOWS",
    "Point",
    "Rollups",
    "Stats",
    "bucket_of",
    "quantile",
]

#: Kinds of series: a Flask route, an outbound host, a Celery task.
ROUTE, HOST, TASK = "route", "host", "task"
KINDS = (ROUTE, HOST, TASK)
#: Upper bound (seconds) of the first latency bucket; each next bound is BUCKET_FACTOR more.
BUCKET_BASE = 0.0005
BUCKET_FACTOR = 2**0.25
#: Buckets: 0.5 ms x 2^(n/4), n < 96: the last one starts near 9 minutes.
BUCKETS = 96
#: (slot seconds, seconds kept) of each tier.
TIERS: tuple[tuple[int, int], ...] = (
    (60, 2 * 3600),
    (300, 26 * 3600),
    (900, 3 * 86400),
    (3600, 8 * 86400),
    (86400, 35 * 86400),
)
#: Window (seconds) -> the tier it is read from.
WINDOWS: dict[int, int] = {300: 60, 900: 60, 3600: 300, 86400: 3600}
#: Seconds between two deletions of expired slots by one process (a flush every second
#: need not delete every second).
EXPIRE_EVERY = 60.0
#: Cells waiting for a flush, at most (a stuck disk cannot grow memory).
MAX_PENDING = 20_000
#: Cells read and written by one statement of a flush (8 parameters a cell: within the 999
#: parameters a statement SQLite took before 3.32).
_CELLS_PER_STATEMENT = 120
#: Names per kind, at most; the rest are counted as OTHER.
MAX_NAMES = 200
OTHER = "<other>"
#: The name of a kind's total over all its series (no series is named so: a route is never
#: empty, a host or task without a name is OTHER).
ALL = ""
#: The route of requests no URL rule matched (as the RED metrics name it).
UNMATCHED = "<unmatched>"

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS rollup (
        res INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        count INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        total REAL NOT NULL,
        hist TEXT NOT NULL,
        PRIMARY KEY (res, slot, kind, name)
    ) WITHOUT ROWID
    """,
)


def upper_bound(index: int) -> float:
    # 2 ** (index / 4), not BUCKET_FACTOR ** index: exact at every fourth bound (1 ms, 2 ms,
    # 4 ms …), which the rounding of the power puts up to 4 ulp below them.
    return float(BUCKET_BASE * 2.0 ** (index / 4))


#: The upper bounds of every bucket but the last (which holds everything longer).
_BOUNDS = [upper_bound(index) for index in range(BUCKETS - 1)]


def bucket_of(seconds: float) -> int:
    """The latency bucket of ``seconds``: the first whose upper bound holds it."""
    return bisect_left(_BOUNDS, seconds)


def quantile(hist: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0-1) of a histogram ``{bucket: count}``, interpolated inside its
    bucket (geometrically: the buckets are log-spaced); ``None`` when it is empty."""
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(hist):
        count = hist[index]
        if seen + count >= rank:
            upper = upper_bound(index)
            lower = upper / BUCKET_FACTOR if index else 0.0
            share = (rank - seen) / count if count else 1.0
            if lower <= 0:
                return upper * share
            return float(lower * (upper / lower) ** share)
        seen += count
    return upper_bound(max(hist))


def _encode(hist: dict[int, int]) -> str:
    """A histogram as stored: a JSON list ``[bucket, count, bucket, count, …]``."""
    return json.dumps([value for item in sorted(hist.items()) for value in item])


def _decode(text: str, into: dict[int, int]) -> dict[int, int]:
    values = iter(json.loads(text))
    get = into.get
    for index, count in zip(values, values, strict=True):
        into[index] = get(index, 0) + count
    return into


@dataclass(frozen=True)
class Stats:
    """One series over one window.

    :ivar rate: requests (calls, tasks) per second over the time the window's slots cover.
    :ivar p50: seconds (``None`` without requests); so are ``p95`` and ``p99``.
    """

    name: str
    count: int
    errors: int
    seconds: float
    rate: float
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.count if self.count else 0.0


@dataclass(frozen=True)
class Point:
    """One slot of a chart: per-second rates and the slot's p95 (seconds, or ``None``)."""

    start: float
    requests: float
    errors: float
    p95: float | None


def _stats(
    name: str, count: int, errors: int, total: float, hist: dict[int, int], span: float
) -> Stats:
    return Stats(
        name=name,
        count=count,
        errors=errors,
        seconds=span,
        rate=count / span if span > 0 else 0.0,
        mean=total / count if count else None,
        p50=quantile(hist, 0.50),
        p95=quantile(hist, 0.95),
        p99=quantile(hist, 0.99),
    )


class Rollups:
    """Per-series request counts, errors and latencies of this host, in time slots.

    :param db: the console's SQLite file, shared by the host's workers.
    :param clock: what slots and expiry are measured on (``clock.time()``).
    :param excluded: the shared exclusion predicate (paths the RED metrics leave out).
    :param host_label: an outbound call's host as the metrics label it (the declared pattern
        or ``other``); default: the URL's host name.
    """

    def __init__(
        self,
        db: ConsoleDB,
        *,
        clock: Clock = SYSTEM,
        excluded: Callable[[str], bool] | None = None,
        host_label: Callable[[str], str] | None = None,
    ) -> None:
        self.db = db
        db.add_schema(*SCHEMA)
        self.clock = clock
        self._time = clock.time
        self._excluded = excluded
        self._host_label = host_label or _url_host
        self._lock = threading.Lock()
        #: (minute, kind, name) -> [count, errors, seconds, {bucket: count}]
        self._pending: dict[tuple[int, str, str], list[Any]] = {}
        self._names: dict[str, set[str]] = {kind: set() for kind in KINDS}
        #: Requests left out because the pending cells were full (a flush could not write).
        self.dropped = 0
        self._flush_lock = threading.Lock()
        self._expired_at: float | None = None

    # -- the request path (no I/O) --------------------------------------------------------

    def add(self, kind: str, name: str, seconds: float, failed: bool) -> None:
        """Count one request (call, task) of series ``name`` taking ``seconds``."""
        names = self._names[kind]
        if name not in names:
            if len(names) >= MAX_NAMES or not name:  # (no series may pass for ALL)
                name = OTHER
            else:
                names.add(name)
        key = (int(self._time()) // 60, kind, name)
        index = bisect_left(_BOUNDS, seconds)  # bucket_of(), inlined
        with self._lock:
            cell = self._pending.get(key)
            if cell is None:
                if len(self._pending) >= MAX_PENDING:
                    self.dropped += 1
                    return
                cell = self._pending[key] = [0, 0, 0.0, {}]
            cell[0] += 1
            cell[1] += failed
            cell[2] += seconds
            hist = cell[3]
            hist[index] = hist.get(index, 0) + 1

    def on_request(self, record: RequestRecord) -> None:
        """A request hook (``Stage.MEASURE``): the request as the RED metrics count it."""
        excluded = record.excluded
        if excluded is None:
            predicate = self._excluded
            excluded = predicate is not None and predicate(record.environ.get("PATH_INFO", ""))
            record.excluded = excluded
        if excluded:
            return
        self.add(
            ROUTE,
            record.route or UNMATCHED,
            record.duration - record.client_wait,
            record.status >= 500,
        )

    def on_outbound(self, call: OutboundCall) -> None:
        """An outbound hook: one outgoing call, by host."""
        from ..metrics.outbound import error_type

        self.add(HOST, self._host_label(call.url), call.duration, error_type(call) is not None)

    # -- the ticker ----------------------------------------------------------------------

    def flush(self) -> int:
        """Write what accumulated into the shared file (every tier) and, once a minute,
        delete the slots past their tier's age; returns the cells written. On failure the
        cells are kept for the next flush (within :data:`MAX_PENDING`)."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if pending:
                try:
                    self._write(pending)
                except Exception:
                    self._keep(pending)
                    raise
            now = self.clock.monotonic()
            if self._expired_at is None or now - self._expired_at >= EXPIRE_EVERY:
                self._expire()
                self._expired_at = now
            return len(pending)

    def _keep(self, pending: dict[tuple[int, str, str], list[Any]]) -> None:
        with self._lock:
            for key, cell in pending.items():
                mine = self._pending.get(key)
                if mine is None:
                    if len(self._pending) >= MAX_PENDING:
                        self.dropped += cell[0]
                        continue
                    self._pending[key] = cell
                else:
                    _merge(mine, cell)

    def _write(self, pending: dict[tuple[int, str, str], list[Any]]) -> None:
        cells: dict[tuple[int, int, str, str], list[Any]] = {}
        for (minute, kind, name), cell in pending.items():
            start = minute * 60
            for res, _ in TIERS:
                # Each series' cell, and the kind's total (the charts read only those).
                for series in (name, ALL):
                    key = (res, start - start % res, kind, series)
                    mine = cells.get(key)
                    if mine is None:
                        cells[key] = [cell[0], cell[1], cell[2], dict(cell[3])]
                    else:
                        _merge(mine, cell)
        keys = list(cells)
        with self.db.write() as db:
            # A few statements a flush, not two a cell: each statement of a thread that
            # releases the GIL waits for it again (milliseconds beside busy request threads).
            for at in range(0, len(keys), _CELLS_PER_STATEMENT):
                chunk = keys[at : at + _CELLS_PER_STATEMENT]
                # The keys first, each found by the primary key: ``(res, slot, kind, name) IN
                # (VALUES …)`` scanned the whole table once a statement (SQLite 3.34-3.40).
                stored = db.execute(
                    "WITH k(res, slot, kind, name) AS"
                    f" (VALUES {', '.join(['(?, ?, ?, ?)'] * len(chunk))})"
                    " SELECT r.res, r.slot, r.kind, r.name, r.count, r.errors, r.total, r.hist"
                    " FROM k CROSS JOIN rollup AS r ON r.res = k.res AND r.slot = k.slot"
                    " AND r.kind = k.kind AND r.name = k.name",
                    [part for key in chunk for part in key],
                ).fetchall()
                for res, slot, kind, name, count, errors, total, hist in stored:
                    cell = cells[(res, slot, kind, name)]
                    cell[0] += count
                    cell[1] += errors
                    cell[2] += total
                    _decode(hist, cell[3])
                rows = [(*key, *cells[key][:3], _encode(cells[key][3])) for key in chunk]
                db.execute(
                    "INSERT OR REPLACE INTO rollup VALUES"
                    f" {', '.join(['(?, ?, ?, ?, ?, ?, ?, ?)'] * len(rows))}",
                    [value for row in rows for value in row],
                )

    def _expire(self) -> None:
        now = self.clock.time()
        with self.db.write() as db:
            for res, keep in TIERS:
                db.execute("DELETE FROM rollup WHERE res=? AND slot<?", (res, int(now - keep)))

    # -- reading (the pages) -------------------------------------------------------------

    def table(self, kind: str, window: int) -> list[Stats]:
        """Every series of ``kind`` with requests in the last ``window`` seconds (a key of
        :data:`WINDOWS`), busiest first."""
        res = WINDOWS[window]
        now = self.clock.time()
        since = int(now - window)
        since -= since % res
        span = max(now - since, 1.0)
        totals: dict[str, list[Any]] = {}
        db = self.db.connection()
        rows = db.execute(
            "SELECT name, count, errors, total, hist FROM rollup"
            " WHERE res=? AND slot>=? AND kind=? AND name!=''",
            (res, since, kind),
        ).fetchall()
        for name, count, errors, total, hist in rows:
            cell = totals.get(name)
            if cell is None:
                cell = totals[name] = [0, 0, 0.0, {}]
            cell[0] += count
            cell[1] += errors
            cell[2] += total
            _decode(hist, cell[3])
        found = [_stats(n, c[0], c[1], c[2], c[3], span) for n, c in totals.items()]
        found.sort(key=lambda s: (-s.count, s.name))
        return found

    def names(self, kind: str, window: int = 86400) -> list[str]:
        return [stats.name for stats in self.table(kind, window)]

    def series(self, window: int, res: int, kind: str = ROUTE) -> list[Point]:
        """Chart points of every series of ``kind`` together: one per ``res``-second slot
        (a tier's) over the last ``window`` seconds, slots without requests included."""
        if res not in dict(TIERS):
            raise ValueError(f"no tier of {res}s slots")
        now = self.clock.time()
        last = int(now) - int(now) % res
        first = last - (window // res - 1) * res
        db = self.db.connection()
        rows = db.execute(
            "SELECT slot, count, errors, hist FROM rollup"
            " WHERE res=? AND slot>=? AND kind=? AND name=''",
            (res, first, kind),
        ).fetchall()
        by_slot = {slot: (count, errors, hist) for slot, count, errors, hist in rows}
        points = []
        for slot in range(first, last + 1, res):
            count, errors, hist = by_slot.get(slot, (0, 0, "[]"))
            # The current slot has run only part of its time.
            span = min(res, max(now - slot, 1.0))
            points.append(
                Point(float(slot), count / span, errors / span, quantile(_decode(hist, {}), 0.95))
            )
        return points

    def totals(self, kind: str, window: int) -> tuple[int, int]:
        """(requests, errors) of every series of ``kind`` over ``window``."""
        rows = self.table(kind, window)
        return sum(s.count for s in rows), sum(s.errors for s in rows)


def _merge(into: list[Any], cell: Sequence[Any]) -> None:
    into[0] += cell[0]
    into[1] += cell[1]
    into[2] += cell[2]
    hist = into[3]
    for index, count in cell[3].items():
        hist[index] = hist.get(index, 0) + count


def _url_host(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname or OTHER
    except ValueError:
        return OTHER


def task_hooks(rollups: Rollups, clock: Clock = SYSTEM) -> tuple[Callable[..., None], ...]:
    """Receivers of Celery's ``task_prerun`` and ``task_postrun`` signals counting each task
    run into ``rollups`` (by task name; a run whose state is ``FAILURE`` is an error)."""
    started: dict[str, float] = {}
    lock = threading.Lock()

    def prerun(task_id: str | None = None, **_: Any) -> None:
        if task_id is not None:
            with lock:
                if len(started) < MAX_PENDING:
                    started[task_id] = clock.monotonic()

    def postrun(
        task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
    ) -> None:
        with lock:
            began = started.pop(task_id, None) if task_id is not None else None
        if began is None:
            return
        name = str(getattr(task, "name", None) or OTHER)
        rollups.add(TASK, name, clock.monotonic() - began, state == "FAILURE")

    return prerun, postrun


def kinds_present(rollups: Rollups, window: int = 86400) -> Iterable[str]:
    """The kinds with any series over ``window`` (the overview hides empty tables)."""
    return [kind for kind in KINDS if rollups.table(kind, window)]
