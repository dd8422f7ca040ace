"""Diagnostics: slow queries (fingerprinted, scrubbed, counted, span events), queries per
request (metric and access-log field), memory growth with an optional tracemalloc diff."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g
from sqlalchemy import create_engine, text

from flask_observe import Observe
from flask_observe.diagnostics import MemoryWatch, QueryDiagnostics, fingerprint
from flask_observe.state import current_state

from .conftest import need_service, read_json_lines
from .test_metrics import ReadingClient, sample_value


@pytest.fixture
def db_app(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[Flask]:
    app = make_app(
        "dbapp",
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        slow_query_ms=0,  # every query is "slow": the behaviour, not the clock, is under test
    )
    app.test_client_class = ReadingClient
    engine = create_engine(f"sqlite:///{tmp_path / 'd.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)"))
        conn.execute(text("INSERT INTO users (id, email) VALUES (1, 'a@example.com')"))

    @app.get("/users/<int:count>")
    def users(count: int) -> str:
        with engine.connect() as conn:
            for n in range(count):
                # Literal inlined on purpose: the fingerprint must scrub it.
                conn.execute(
                    text(f"SELECT email FROM users WHERE email = 'secret-{n}@x.io' OR id = {n}")
                )
        return "ok"

    app.config["engine"] = engine
    yield app
    engine.dispose()


def test_fingerprint_scrubs_literals_and_collapses_in_lists() -> None:
    """Strings, numbers, placeholders and IN lists become ``?``."""
    assert fingerprint("SELECT * FROM t WHERE a = 'x''y' AND b = 42 AND c IN (1, 2, 3)") == (
        "SELECT * FROM t WHERE a = ? AND b = ? AND c IN (?)"
    )
    assert fingerprint("UPDATE t SET a = %(a)s WHERE id = :id_1 AND t2 = $1") == (
        "UPDATE t SET a = ? WHERE id = ? AND t2 = ?"
    )


@pytest.mark.parametrize(
    "statement",
    [
        r"SELECT * FROM u WHERE name = 'O\'Brien' AND pw = 'SECRET1'",  # MySQL escapes
        r"SELECT * FROM u WHERE path = 'C:\' AND pw = 'SECRET1'",  # standard strings
        r"SELECT E'SECRET1\n'",
        "SELECT $$SECRET1$$, $body$ SECRET1 $body$",
        "SELECT 'multi\nline SECRET1'",
        "SELECT 'it''s SECRET1'",
    ],
)
def test_fingerprint_never_keeps_a_literal_whatever_the_quoting(statement: str) -> None:
    """Backslash escapes (MySQL, PostgreSQL E'' strings, or literal backslashes in standard
    strings: the two readings differ, so both must be safe), dollar-quoted and multi-line
    strings: nothing inside a literal survives; numbered placeholders are not dollar quotes."""
    assert "SECRET1" not in fingerprint(statement)
    assert fingerprint("SELECT a FROM t WHERE b = $1 AND c = $2") == (
        "SELECT a FROM t WHERE b = ? AND c = ?"
    )


def test_slow_queries_logged_once_per_fingerprint_without_parameters(
    db_app: Flask, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three slow queries of one shape: counted three times, logged once, literals scrubbed."""
    with caplog.at_level(logging.WARNING, logger="flask_observe.diagnostics"):
        db_app.test_client().get("/users/3")
    slow = [r for r in caplog.records if r.getMessage() == "slow query"]
    assert len(slow) == 1
    assert slow[0].statement == "SELECT email FROM users WHERE email = ? OR id = ?"  # type: ignore[attr-defined]
    assert "secret" not in caplog.text
    assert sample_value(db_app, "db_slow_queries_total") == 3


def test_queries_per_request_in_metric_and_access_log(db_app: Flask, tmp_path: Path) -> None:
    """Each request's query count is in the histogram (by route) and its access line."""
    client = db_app.test_client()
    client.get("/users/4")
    client.get("/users/1")
    lines = [
        x
        for x in read_json_lines(tmp_path / "logs" / "app.log")
        if x["logger"] == "flask_observe.access"
    ]
    assert [x["db_queries"] for x in lines] == [4, 1]
    route = "/users/<int:count>"
    assert sample_value(db_app, "http_request_db_queries_count", route=route) == 2
    assert sample_value(db_app, "http_request_db_queries_sum", route=route) == 5


def test_slow_query_is_a_span_event_when_tracing(db_app: Flask) -> None:
    """With a recording span current, each slow query adds a ``slow_query`` event to it."""
    from opentelemetry import context, trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")

    @db_app.before_request
    def start() -> None:
        g.span = tracer.start_span("req")
        g.token = context.attach(trace.set_span_in_context(g.span))

    @db_app.teardown_request
    def end(exc: Any) -> None:
        g.span.end()
        context.detach(g.token)

    db_app.test_client().get("/users/2")
    (span,) = exporter.get_finished_spans()
    events = [e for e in span.events if e.name == "slow_query"]
    assert len(events) == 2
    assert (
        events[0].attributes["db.query.text"] == "SELECT email FROM users WHERE email = ? OR id = ?"
    )
    provider.shutdown()


def test_queries_outside_requests_are_not_counted_in_a_request(db_app: Flask) -> None:
    """A query in an app context but outside any request still counts as slow, and does not
    leak into the next request's count."""
    engine = db_app.config["engine"]
    with db_app.app_context(), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert sample_value(db_app, "db_slow_queries_total") == 1


def test_memory_growth_logs_tracemalloc_top_diff(caplog: pytest.LogCaptureFixture) -> None:
    """Growth over the threshold logs one warning per window with the top allocation sites
    (tracemalloc on); gauges carry RSS and growth."""
    watch = MemoryWatch(None, window=10, threshold=1.0, use_tracemalloc=True, top=3)
    try:
        hog = [bytearray(1024) for _ in range(5000)]  # ~5 MB allocated here
        with caplog.at_level(logging.WARNING, logger="flask_observe.diagnostics"):
            watch.sample(now=0, rss=100e6)
            watch.sample(now=10, rss=120e6)  # 20 MB in 10 s
            watch.sample(now=11, rss=121e6)  # same window: not logged again
        (record,) = [r for r in caplog.records if r.getMessage() == "memory is growing"]
        top = record.top_growth  # type: ignore[attr-defined]
        assert len(top) == 3
        assert "test_diagnostics.py" in top[0]["where"]
        assert top[0]["size_diff_kb"] > 1000
        del hog
    finally:
        watch.close()


def test_memory_gauges_exported(make_app: Callable[..., Flask]) -> None:
    """The RSS gauge reads this process's real RSS after a sample."""
    app = make_app("mem", log_stdout=False)
    state = current_state(app)
    assert state.get(MemoryWatch) is not None
    state.get(MemoryWatch).sample()
    assert sample_value(app, "flask_observe_memory_rss_bytes") > 1e6


def test_failing_queries_leave_no_timing_behind(db_app: Flask) -> None:
    """A query that raises never reaches after_cursor_execute: its start time lives on the
    statement's execution context, so a pooled connection does not collect one per error,
    and the queries that do finish are still timed and counted."""
    from sqlalchemy.exc import OperationalError

    engine = db_app.config["engine"]
    with db_app.app_context(), engine.connect() as conn:
        for _ in range(50):
            with pytest.raises(OperationalError):
                conn.execute(text("SELECT * FROM no_such_table"))
        assert [k for k in conn.info if "flask_observe" in k] == []
        before = sample_value(db_app, "db_slow_queries_total")
        conn.execute(text("SELECT 1"))
        assert [k for k in conn.info if "flask_observe" in k] == []
        assert sample_value(db_app, "db_slow_queries_total") == before + 1


def test_every_query_is_timed_by_operation_and_its_statement_has_statistics(
    db_app: Flask,
) -> None:
    """db_query_duration_seconds by operation; per-fingerprint count/total/percentiles/last
    seen, the same statement with other literals counted once; no literal kept."""
    client = db_app.test_client()
    client.get("/users/5")
    client.get("/users/3")
    diagnostics = Observe.handle(QueryDiagnostics, db_app)
    counted = sample_value(db_app, "db_query_duration_seconds_count", operation="SELECT")
    assert counted == 8.0
    rows = diagnostics.statistics()
    select = next(r for r in rows if r["operation"] == "SELECT")
    assert select["count"] == 8
    assert select["statement"] == "SELECT email FROM users WHERE email = ? OR id = ?"
    assert 0 < select["p50_ms"] <= select["p95_ms"] <= select["p99_ms"] <= select["max_ms"] * 2
    assert "secret" not in str(rows)
    by_count = diagnostics.statistics(sort="count")
    assert by_count[0]["fingerprint"] == select["fingerprint"]
    slow = diagnostics.recent_slow()  # every query is slow in this fixture
    assert len(slow) == 8
    assert slow[0]["route"] == "/users/<int:count>"
    assert "secret" not in str(slow)


def test_the_operation_label_is_bounded() -> None:
    from flask_observe.diagnostics.queries import operation

    assert operation("  /* hint */ select 1") == "SELECT"
    assert operation("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x") == "INSERT"
    assert operation("VACUUM") == "OTHER"
    assert operation("x" * 50 + " drop") == "OTHER"


def test_statistics_keep_at_most_the_bound_of_statements(make_app: Callable[..., Flask]) -> None:
    """5,000 different statements: the statistics hold the most recent 500."""
    from flask_observe.diagnostics.queries import MAX_FINGERPRINTS

    app = make_app("many", log_stdout=False, slow_query_ms=10_000)
    diagnostics = Observe.handle(QueryDiagnostics, app)
    for n in range(5_000):
        diagnostics.after_query(f"SELECT * FROM table_{n}", 0.001)
    assert len(diagnostics.statistics(top=10_000)) == MAX_FINGERPRINTS


@pytest.mark.services
def test_pool_gauges_of_a_real_postgresql_engine(make_app: Callable[..., Flask]) -> None:
    """Two connections held from a pool of 1 (+2 overflow) on the machine's PostgreSQL: in use
    2, overflow 1, size 1 — read by the ticker's task, credentials never in the label."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    app = make_app("pool", log_stdout=False)
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test", pool_size=1, max_overflow=2
    )
    try:
        with app.app_context(), engine.connect() as one, engine.connect() as two:
            one.execute(text("SELECT 1"))
            two.execute(text("SELECT 1"))
            Observe.handle(QueryDiagnostics, app).sample_pools()
            label = {"engine": "postgresql+psycopg://127.0.0.1/test"}
            assert sample_value(app, "db_pool_connections_in_use", **label) == 2.0
            assert sample_value(app, "db_pool_overflow", **label) == 1.0
            assert sample_value(app, "db_pool_size", **label) == 1.0
    finally:
        engine.dispose()


def test_the_db_commands_print_statistics_and_slow_queries(db_app: Flask) -> None:
    db_app.test_client().get("/users/2")
    runner = db_app.test_cli_runner()
    stats = runner.invoke(args=["observe", "db", "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)[0]["count"] >= 2
    slow = runner.invoke(args=["observe", "db", "slow"])
    assert slow.exit_code == 0
    assert "SELECT email FROM users WHERE email = ? OR id = ?" in slow.output


def test_random_statements_keep_every_db_family_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """10,000 random statements (random verbs, comments, literals, identifiers, junk):
    ``db_query_duration_seconds`` takes only the known verbs and
    ``OTHER``; the statistics, the statement cache, the recent slow queries and the logged-once
    set stay at their bounds; the pool gauges take one series per engine the app itself
    created (six real SQLite engines), never anything from the statements."""
    import random
    import string

    from flask_observe.diagnostics import queries
    from flask_observe.metrics import Metrics

    caplog.set_level(logging.ERROR, logger="flask_observe.diagnostics")
    rng = random.Random(11)
    metrics = Metrics(buckets=(0.1, 1.0))
    diagnostics = QueryDiagnostics(metrics, threshold=0.0)  # every query is slow
    engines = [create_engine(f"sqlite:///{tmp_path / f'e{n}.db'}") for n in range(6)]
    verbs = [*sorted(queries.OPERATIONS), "WITH", "VACUUM", "GRANT", "select", "Insert"]

    def word(k: int) -> str:
        return "".join(rng.choices(string.ascii_letters + string.digits + "_", k=k))

    try:
        for n in range(10_000):
            verb = rng.choice([*verbs, word(rng.randint(1, 12))])
            prefix = rng.choice(["", "  ", "/* " + word(8) + " */ ", "-- " + word(5) + "\n"])
            body = " ".join(
                rng.choice([word(6), f"'{word(10)}'", str(rng.randint(0, 10**9)), "(", ")", "?"])
                for _ in range(rng.randint(0, 12))
            )
            engine = rng.choice(engines)
            diagnostics.after_query(f"{prefix}{verb} {body} t_{n}", rng.random() / 10, engine)
        for engine in engines:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        diagnostics.sample_pools()

        def labels(family_name: str, label: str) -> set[str]:
            return {
                s.labels[label]
                for family in metrics.registry.collect()
                if family.name == family_name
                for s in family.samples
                if label in s.labels
            }

        assert labels("db_query_duration_seconds", "operation") <= queries.OPERATIONS | {"OTHER"}
        assert "OTHER" in labels("db_query_duration_seconds", "operation")
        assert len(diagnostics.statistics(top=100_000)) == queries.MAX_FINGERPRINTS
        assert len(diagnostics._statements) <= queries._STATEMENT_CACHE
        assert len(diagnostics.recent_slow()) == queries.RECENT_SLOW
        assert len(diagnostics._seen) <= queries._SEEN_MAX
        assert metrics.registry.get_sample_value("db_slow_queries_total") == 10_000.0
        own = {queries._engine_label(engine) for engine in engines}
        assert len(own) == len(engines)
        for family_name in ("db_pool_connections_in_use", "db_pool_overflow", "db_pool_size"):
            assert labels(family_name, "engine") == own
        assert all(len(row["statement"]) <= 2000 for row in diagnostics.statistics(top=10))
    finally:
        for engine in engines:
            engine.dispose()
