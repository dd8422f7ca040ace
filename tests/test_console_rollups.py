"""Rollups: per-series counts, errors and latency quantiles in tiers of slots, kept in one
SQLite file that several processes write to, bounded in memory and on disk."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from pathlib import Path

import pytest

from flask_observe._clock import ManualClock
from flask_observe.console import rollups as r
from flask_observe.console.rollups import Rollups, bucket_of, quantile, upper_bound
from flask_observe.console.store import ConsoleDB
from flask_observe.hooks import OutboundCall, RequestRecord


def _record(route: str | None, status: int, seconds: float, path: str = "/x") -> RequestRecord:
    record = RequestRecord({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, None)
    record.route = route
    record.status = status
    record.duration = seconds
    return record


def test_a_duration_falls_in_the_first_bucket_whose_bound_holds_it() -> None:
    for seconds in (0.0001, 0.0005, 0.00051, 0.003, 0.1, 1.0, 7.3, 100.0):
        index = bucket_of(seconds)
        assert upper_bound(index) >= seconds * (1 - 1e-9)
        if index:
            assert upper_bound(index - 1) < seconds
    assert bucket_of(1e6) == r.BUCKETS - 1


def test_a_duration_on_a_bound_falls_in_that_bounds_bucket() -> None:
    """1 ms, 2 ms, 4 ms … 2.048 s are bounds (0.5 ms x 2^(n/4), n a multiple of 4): each is
    in the bucket it bounds, as the logarithm put it, not in the next one."""
    for k in range(13):
        seconds = 0.001 * 2**k
        assert upper_bound(4 * k + 4) == seconds
        assert bucket_of(seconds) == 4 * k + 4, seconds
        assert bucket_of(seconds * (1 + 1e-15)) == 4 * k + 5


def test_quantiles_are_within_a_bucket_of_the_exact_ones() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-3, 1) for _ in range(20_000)]
    hist: dict[int, int] = {}
    for value in values:
        hist[bucket_of(value)] = hist.get(bucket_of(value), 0) + 1
    values.sort()
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * len(values)) - 1]
        estimate = quantile(hist, q)
        assert estimate is not None
        assert exact / r.BUCKET_FACTOR <= estimate <= exact * r.BUCKET_FACTOR, q
    assert quantile({}, 0.5) is None


def test_requests_are_counted_per_route_with_5xx_as_errors(tmp_path: Path) -> None:
    clock = ManualClock(start=1_800_000_000.0)
    rollups = Rollups(ConsoleDB(tmp_path), clock=clock)
    for i in range(90):
        rollups.on_request(_record("/a", 500 if i % 10 == 0 else 200, 0.010))
    for _ in range(10):
        rollups.on_request(_record(None, 404, 0.001))
    rollups.on_request(_record("/b", 503, 2.0))
    assert rollups.flush() == 3
    rows = {s.name: s for s in rollups.table(r.ROUTE, 300)}
    assert set(rows) == {"/a", "/b", r.UNMATCHED}
    a = rows["/a"]
    assert (a.count, a.errors) == (90, 9)
    assert a.error_ratio == pytest.approx(0.1)
    assert a.p50 is not None
    assert 0.010 / r.BUCKET_FACTOR <= a.p50 <= 0.010 * r.BUCKET_FACTOR
    assert a.mean == pytest.approx(0.010)
    assert rows[r.UNMATCHED].errors == 0  # a 404 is not the server failing
    assert (rows["/b"].count, rows["/b"].errors) == (1, 1)
    # the same requests are in every window's tier
    for window in r.WINDOWS:
        assert rollups.totals(r.ROUTE, window) == (101, 10)


def test_excluded_paths_stay_out_as_they_do_of_the_red_metrics(tmp_path: Path) -> None:
    rollups = Rollups(ConsoleDB(tmp_path), excluded=lambda path: path == "/metrics")
    rollups.on_request(_record("/metrics", 200, 0.01, path="/metrics"))
    rollups.on_request(_record("/a", 200, 0.01, path="/a"))
    rollups.flush()
    assert [s.name for s in rollups.table(r.ROUTE, 300)] == ["/a"]


def test_a_window_holds_only_the_slots_that_started_within_it(tmp_path: Path) -> None:
    clock = ManualClock(start=1_800_000_000.0 - 1_800_000_000.0 % 3600)
    rollups = Rollups(ConsoleDB(tmp_path), clock=clock)
    rollups.add(r.ROUTE, "/a", 0.01, False)
    rollups.flush()
    clock.advance(10 * 60)  # ten minutes later: out of the 5 m window, in the 1 h one
    rollups.add(r.ROUTE, "/a", 0.01, True)
    rollups.flush()
    assert rollups.totals(r.ROUTE, 300) == (1, 1)
    assert rollups.totals(r.ROUTE, 900) == (2, 1)
    assert rollups.totals(r.ROUTE, 3600) == (2, 1)
    (five,) = rollups.table(r.ROUTE, 300)
    # the rate divides by the time from the window's first slot to now
    assert five.rate == pytest.approx(1 / 300)
    clock.advance(30)
    assert rollups.table(r.ROUTE, 300)[0].rate == pytest.approx(1 / 330)
    clock.advance(2 * 3600)
    assert rollups.totals(r.ROUTE, 3600) == (0, 0)
    assert rollups.totals(r.ROUTE, 86400) == (2, 1)


def test_slots_expire_with_their_tier_so_the_file_stays_bounded(tmp_path: Path) -> None:
    clock = ManualClock()
    db = ConsoleDB(tmp_path)
    rollups = Rollups(db, clock=clock)
    for _ in range(3 * 24 * 4):  # three days, a request every 15 minutes
        rollups.add(r.ROUTE, "/a", 0.01, False)
        rollups.flush()
        clock.advance(900)
    rows = dict(
        db.connection().execute("SELECT res, COUNT(*) FROM rollup WHERE name='/a' GROUP BY res")
    )
    for res, keep in r.TIERS:
        assert rows[res] <= keep // res + 2, res
    assert rollups.totals(r.ROUTE, 86400)[0] in (96, 97)


def test_series_are_capped_per_kind_and_pending_cells_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rollups = Rollups(ConsoleDB(tmp_path))
    for i in range(r.MAX_NAMES + 50):
        rollups.add(r.ROUTE, f"/r{i}", 0.01, False)
    rollups.flush()
    names = rollups.names(r.ROUTE)
    assert len(names) == r.MAX_NAMES + 1
    assert r.OTHER in names
    other = next(s for s in rollups.table(r.ROUTE, 300) if s.name == r.OTHER)
    assert other.count == 50
    monkeypatch.setattr(r, "MAX_PENDING", 5)
    clock = ManualClock()
    capped = Rollups(ConsoleDB(tmp_path / "capped"), clock=clock)
    for _ in range(8):
        capped.add(r.ROUTE, "/a", 0.01, False)
        clock.advance(60)
    assert len(capped._pending) == 5
    assert capped.dropped == 3


def test_a_flush_that_cannot_write_keeps_its_cells_for_the_next(tmp_path: Path) -> None:
    db = ConsoleDB(tmp_path)
    db.path.mkdir()  # the file cannot be opened (as root, a read-only mode would not stop it)
    rollups = Rollups(db)
    rollups.add(r.ROUTE, "/a", 0.01, False)
    rollups.add(r.ROUTE, "/a", 0.01, True)
    with pytest.raises(sqlite3.OperationalError):
        rollups.flush()
    assert sum(cell[0] for cell in rollups._pending.values()) == 2
    db.path.rmdir()
    rollups.flush()
    assert rollups.totals(r.ROUTE, 300) == (2, 1)


def test_outbound_calls_count_as_the_errors_metric_does(tmp_path: Path) -> None:
    rollups = Rollups(ConsoleDB(tmp_path))
    calls = [
        OutboundCall("GET", "https://api.example.com/x", 200, None, 0.2, {}, 0),
        OutboundCall("GET", "https://api.example.com/y", 429, None, 0.1, {}, 0),
        OutboundCall("GET", "https://api.example.com/y", 503, None, 0.1, {}, 0),
        OutboundCall("GET", "https://cdn.example.net/z", None, TimeoutError(), 5.0, {}, 0),
    ]
    for call in calls:
        rollups.on_outbound(call)
    rollups.flush()
    rows = {s.name: (s.count, s.errors) for s in rollups.table(r.HOST, 300)}
    assert rows == {"api.example.com": (3, 2), "cdn.example.net": (1, 1)}


def test_celery_task_runs_are_timed_between_the_signals(tmp_path: Path) -> None:
    clock = ManualClock()
    rollups = Rollups(ConsoleDB(tmp_path), clock=clock)
    prerun, postrun = r.task_hooks(rollups, clock)

    class Task:
        name = "scrape"

    prerun(task_id="1", task=Task())
    clock.advance(1.5)
    postrun(task_id="1", task=Task(), state="SUCCESS")
    prerun(task_id="2", task=Task())
    postrun(task_id="2", task=Task(), state="FAILURE")
    postrun(task_id="never-started", task=Task(), state="SUCCESS")
    rollups.flush()
    (stats,) = rollups.table(r.TASK, 300)
    assert (stats.name, stats.count, stats.errors) == ("scrape", 2, 1)
    assert stats.p99 is not None
    assert stats.p99 == pytest.approx(1.5, rel=0.2)


def test_chart_points_cover_every_slot_of_the_window(tmp_path: Path) -> None:
    clock = ManualClock(start=1_800_000_000.0 - 1_800_000_000.0 % 3600 + 30)
    rollups = Rollups(ConsoleDB(tmp_path), clock=clock)
    for minute in range(60):
        for _ in range(minute):
            rollups.add(r.ROUTE, "/a", 0.05, minute % 2 == 1)
        clock.advance(60)
    rollups.flush()
    points = rollups.series(3600, 60)
    assert len(points) == 60
    # the oldest point is minute 1 (minute 0 left the hour); the current minute is empty
    assert points[0].requests == pytest.approx(1 / 60)
    assert points[-1].requests == 0
    assert points[-1].p95 is None
    assert points[-2].errors == pytest.approx(59 / 60)
    assert all(p.p95 is not None for p in points[:-1])
    assert len(rollups.series(86400, 900)) == 96


def _worker(directory: Path, name: str, count: int) -> None:
    rollups = Rollups(ConsoleDB(directory))
    for i in range(count):
        rollups.add(r.ROUTE, name, 0.01, i % 4 == 0)
        if i % 100 == 0:
            rollups.flush()
    rollups.flush()


@pytest.mark.realtime
def test_every_process_of_the_host_adds_to_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "shared"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(path, "/a", 1000)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert Rollups(ConsoleDB(path)).totals(r.ROUTE, 300) == (4000, 1000)


def test_a_flush_of_more_cells_than_one_statement_takes_merges_every_one(tmp_path: Path) -> None:
    """150 routes over two flushes and two processes' worth of stores (5 tiers each: 755 cells
    a flush, several statements): every route's count, errors and latency histogram add up
    to what was recorded, none lost or doubled at a statement's edge."""
    clock = ManualClock(start=1_800_000_000.0)
    first, second = (Rollups(ConsoleDB(tmp_path), clock=clock) for _ in range(2))
    names = [f"/route/{i}" for i in range(150)]
    for rollups in (first, second, first):
        for i, name in enumerate(names):
            for _ in range(i % 3 + 1):
                rollups.add(r.ROUTE, name, 0.002 * (i + 1), i % 7 == 0)
        rollups.flush()
    rows = {s.name: s for s in first.table(r.ROUTE, 300)}
    assert set(rows) == set(names)
    for i, name in enumerate(names):
        expected = 3 * (i % 3 + 1)
        assert (rows[name].count, rows[name].errors) == (expected, expected if i % 7 == 0 else 0)
        assert rows[name].p50 == pytest.approx(upper_bound(bucket_of(0.002 * (i + 1))), rel=0.2)
    calls = [3 * (i % 3 + 1) for i in range(150)]
    failed = sum(c for i, c in enumerate(calls) if i % 7 == 0)
    assert first.totals(r.ROUTE, 86400) == (sum(calls), failed)  # the 1-hour tier


def test_a_flush_finds_its_stored_cells_by_the_key_not_by_reading_the_table(
    tmp_path: Path,
) -> None:
    """A file holding 20,000 cells of other routes: a flush of one route's request reads and
    writes its 10 cells in a few thousand SQLite steps (by the primary key), not one step or
    more per stored row each statement (``(res, slot, kind, name) IN (VALUES …)`` scanned the
    table: ~200,000 steps, every second in every worker, inside the host's write lock)."""
    clock = ManualClock(start=1_800_000_000.0)
    db = ConsoleDB(tmp_path)
    rollups = Rollups(db, clock=clock)
    rollups.add(r.ROUTE, "/kept", 0.01, False)
    rollups.flush()  # the first flush also expires old slots: not the one measured
    conn = db.connection()
    with db.write() as cur:
        cur.executemany(
            "INSERT INTO rollup VALUES (?, ?, ?, ?, 1, 0, 0.01, '{}')",
            [
                (60, 1_800_000_000 - 60 * slot, r.ROUTE, f"/other/{n}")
                for slot in range(100)
                for n in range(200)
            ],
        )
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0

    rollups.add(r.ROUTE, "/kept", 0.01, True)
    conn.set_progress_handler(step, 1)
    try:
        assert rollups.flush() == 1
    finally:
        conn.set_progress_handler(None, 1)
    assert steps[0] < 20_000
    (kept,) = [s for s in rollups.table(r.ROUTE, 300) if s.name == "/kept"]
    assert (kept.count, kept.errors) == (2, 1)
