"""The console's span store and Traces pages: spans of a real traced app (SQLAlchemy and an
outgoing ``requests`` call) reach the host's SQLite store off the request path, bounded by
count and age; the pages list recent, slow and failed traces and draw one trace with its
attributes, events and links, all behind the sign-in."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy
from flask import Flask

from flask_observe import Observe, capture_exception
from flask_observe.console import Console
from flask_observe.console.spanstore import SpanStore
from flask_observe.console.store import ConsoleDB
from flask_observe.tracing import TracingSetup

from .conftest import LiveServer

TOKEN = "console-nc4wYYxi2uxLGs9du5oF_uNr"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONSOLE = "/observe/console"


@pytest.fixture
def peer() -> Iterator[LiveServer]:
    """A real HTTP server the app calls out to."""
    other = Flask("peer")

    @other.get("/status/<int:code>")
    def status(code: int) -> tuple[str, int]:
        return "peer", code

    with LiveServer(other) as server:
        yield server


@pytest.fixture
def traced_app(
    make_app: Callable[..., Flask], tmp_path: Path, peer: LiveServer
) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        settings: dict[str, Any] = {
            "log_stdout": False,
            "log_dir": str(tmp_path / "logs"),
            "logviewer_enabled": True,
            "auth_token": TOKEN,
            "tracing_enabled": True,
            "tracing_exporter": "none",
            "console_slow_ms": 50,
        }
        settings.update(config)
        app = make_app("tracedapp", **settings)
        engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
        from flask_observe.tracing import instrument_engine

        instrument_engine(engine)

        @app.get("/scrape/<name>")
        def scrape(name: str) -> tuple[str, int]:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1 AS one"))
            code = 503 if name == "broken" else 200
            answer = requests.get(f"{peer.url}/status/{code}", timeout=5)
            if name == "slow":
                time.sleep(0.4)
            if answer.status_code >= 500:
                raise RuntimeError(f"platform {name} answered {answer.status_code}")
            return "ok", 200

        @app.get("/handled")
        def handled() -> str:
            try:
                raise KeyError("missing")
            except KeyError as exc:
                capture_exception(exc)
            return "handled"

        return app

    return factory


def flush(app: Flask) -> Console:
    console = Observe.handle(Console, app)
    assert console.flusher is not None
    console.flusher.run_once()
    return console


def test_a_requests_spans_reach_the_store_and_its_waterfall_shows_sql_and_http(
    traced_app: Callable[..., Flask],
) -> None:
    app = traced_app()
    client = app.test_client()
    answer = client.get("/scrape/ok", headers={"X-Request-ID": "req-ok-1"})
    assert answer.status_code == 200
    console = flush(app)
    assert console.spans is not None
    (row,) = console.spans.recent()
    assert row.name == "GET /scrape/<name>"
    assert row.correlation_id == "req-ok-1"
    assert row.status_code == 200
    assert row.spans >= 3  # server, SQL, HTTP client
    page = client.get(f"{CONSOLE}/traces/{row.trace_id}", headers=AUTH)
    assert page.status_code == 200, page.data
    html = page.get_data(as_text=True)
    assert "SELECT 1 AS one" in html  # the SQL span's statement
    assert re.search(r"GET\s*<span class=\"muted\">client", html)  # the HTTP client span
    assert 'href="/observe/logs#correlation_id=req-ok-1"' in html
    assert "Open in Jaeger" not in html  # no tracing UI configured
    listing = client.get(f"{CONSOLE}/traces", headers=AUTH).get_data(as_text=True)
    assert f'href="{CONSOLE}/traces/{row.trace_id}"' in listing


def test_failed_and_slow_traces_are_listed_and_jaeger_is_linked(
    traced_app: Callable[..., Flask],
) -> None:
    app = traced_app(logviewer_trace_url="http://127.0.0.1:16686/trace/{trace_id}")
    client = app.test_client()
    client.get("/scrape/ok")
    client.get("/scrape/slow", headers={"X-Request-ID": "req-slow-1"})
    client.get("/scrape/broken", headers={"X-Request-ID": "req-broken-1"})
    console = flush(app)
    assert console.spans is not None
    failed = console.spans.failed()
    assert [r.correlation_id for r in failed] == ["req-broken-1"]
    assert failed[0].status_code == 500
    slow = console.spans.slow(int(50e6))
    assert slow[0].correlation_id == "req-slow-1"  # the slowest first
    assert slow[0].duration_ms >= 400
    assert all(r.duration_ms >= 50 for r in slow)
    page = client.get(f"{CONSOLE}/traces/failed", headers=AUTH).get_data(as_text=True)
    assert "req-broken-1" in page
    trace = client.get(f"{CONSOLE}/traces/{failed[0].trace_id}", headers=AUTH).get_data(
        as_text=True
    )
    assert f'href="http://127.0.0.1:16686/trace/{failed[0].trace_id}"' in trace
    assert "RuntimeError" in trace  # the exception event on the server span
    assert "platform broken answered 503" in trace
    # The error group of that failure links back to this trace.
    assert f'href="{CONSOLE}/errors/' in trace


def test_the_span_store_is_off_the_request_path_and_bounded() -> None:
    """``on_end`` only buffers; the store keeps at most ``max_spans`` and drops what is past
    the age cap; a full buffer drops and counts."""
    import tempfile

    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console.spanstore import StoreSpanProcessor

    with tempfile.TemporaryDirectory() as directory:
        db = ConsoleDB(directory)
        store = SpanStore(db, max_spans=1000, max_age=3600)
        now = [time.time_ns()]
        processor = StoreSpanProcessor(store, capacity=1500, clock_ns=lambda: now[0])
        provider = TracerProvider()
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("t")
        half_hour_ago = now[0] - int(1800e9)
        for i in range(1600):
            span = tracer.start_span(f"op-{i}", start_time=half_hour_ago + i)
            span.end(end_time=half_hour_ago + i + 1000)
        assert processor.buffered() == 1500
        assert processor.dropped == 100
        assert store.counts()["spans"] == 0  # nothing written on the request path
        assert processor.flush() == 1500
        assert store.counts() == {"spans": 1000, "traces": 1000}
        assert store.recent(1)[0].name == "op-1499"
        now[0] += int(1801e9)  # the old spans are now over an hour old; "late" is not
        with tracer.start_as_current_span("late"):
            pass
        processor.flush()
        assert store.counts() == {"spans": 1, "traces": 1}
        db.close()


def test_a_trace_needs_the_sign_in_and_odd_ids_are_404(traced_app: Callable[..., Flask]) -> None:
    app = traced_app()
    client = app.test_client()
    client.get("/scrape/ok")
    console = flush(app)
    assert console.spans is not None
    trace_id = console.spans.recent()[0].trace_id
    for path in (
        "traces",
        "traces/slow",
        "traces/failed",
        f"traces/{trace_id}",
        "traces?format=json",
    ):
        assert client.get(f"{CONSOLE}/{path}").status_code == 401, path
    assert client.get(f"{CONSOLE}/traces/{'0' * 32}", headers=AUTH).status_code == 404
    assert client.get(f"{CONSOLE}/traces/../../etc", headers=AUTH).status_code == 404
    assert client.get(f"{CONSOLE}/traces/x'or'1", headers=AUTH).status_code == 404
    body = client.get(f"{CONSOLE}/traces?format=json", headers=AUTH).get_json()
    assert body["traces"][0]["trace_id"] == trace_id


def test_without_tracing_the_page_says_how_to_turn_it_on(traced_app: Callable[..., Flask]) -> None:
    app = traced_app(tracing_enabled=False)
    page = app.test_client().get(f"{CONSOLE}/traces", headers=AUTH)
    assert page.status_code == 200
    assert b"OBSERVE_TRACING_ENABLED=true" in page.data


def test_the_store_is_added_to_the_tracing_provider_only_when_it_is_ours(
    traced_app: Callable[..., Flask],
) -> None:
    app = traced_app()
    setup = Observe.handle(TracingSetup, app)
    console = Observe.handle(Console, app)
    processors = setup.provider._active_span_processor._span_processors  # type: ignore[attr-defined]
    assert console.span_processor in processors


def test_a_small_buffer_asks_for_a_write_at_half_full(tmp_path: Path) -> None:
    """The writer is nudged each 4,096 spans, or at half the buffer when that is smaller
    (``OBSERVE_CONSOLE_SPANS_BUFFER`` may be 100): the buffer is written before it fills."""
    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console.spanstore import StoreSpanProcessor

    nudges: list[int] = []
    store = SpanStore(ConsoleDB(tmp_path), max_spans=10_000, max_age=3600)
    small = StoreSpanProcessor(store, capacity=200, nudge=lambda: nudges.append(small.buffered()))
    assert StoreSpanProcessor(store, capacity=100_000).batch == 4096
    provider = TracerProvider()
    provider.add_span_processor(small)
    tracer = provider.get_tracer("t")
    for i in range(250):
        tracer.start_span(f"op-{i}").end()
    assert nudges == [100, 200]
    assert small.dropped == 50  # nothing writes in this test: the nudge only records
    store.db.close()


def test_a_huge_trace_keeps_its_first_spans_even_in_one_write(tmp_path: Path) -> None:
    """A trace holds at most ``MAX_TRACE_SPANS`` spans' data, whether they come in one write
    or several, its root among them; its span count says how many it had."""
    from opentelemetry import trace as api
    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console.spanstore import MAX_TRACE_SPANS, StoreSpanProcessor

    store = SpanStore(ConsoleDB(tmp_path), max_spans=100_000, max_age=3600)
    processor = StoreSpanProcessor(store, capacity=10_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    root = tracer.start_span("batch job")
    ctx = api.set_span_in_context(root)
    for i in range(MAX_TRACE_SPANS + 500):
        tracer.start_span(f"step-{i}", context=ctx).end()
    root.end()
    assert processor.flush() == MAX_TRACE_SPANS + 501  # one write
    trace_id = format(root.get_span_context().trace_id, "032x")
    kept = store.spans(trace_id, limit=10_000)
    assert len(kept) == MAX_TRACE_SPANS
    names = [span["name"] for span in kept]
    assert names[0] == "batch job"  # the root, which ended last, is kept
    assert names[1:] == [f"step-{i}" for i in range(MAX_TRACE_SPANS - 1)]
    (row,) = store.recent()
    assert row.spans == MAX_TRACE_SPANS + 501
    store.db.close()


def test_a_trace_written_in_several_flushes_is_one_waterfall(tmp_path: Path) -> None:
    """Children written before their root ends (two flushes, as two workers or two seconds
    would): one trace, every span, the root's name and duration."""
    from opentelemetry import trace as api
    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console.spanstore import StoreSpanProcessor

    db = ConsoleDB(tmp_path)
    store = SpanStore(db, max_spans=10_000, max_age=3600)
    processor = StoreSpanProcessor(store, capacity=100)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    root = tracer.start_span("POST /api/scrapes", kind=api.SpanKind.SERVER)
    ctx = api.set_span_in_context(root)
    for name in ("SELECT", "INSERT"):
        tracer.start_span(name, context=ctx).end()
    assert processor.flush() == 2
    tracer.start_span("GET", context=ctx, kind=api.SpanKind.CLIENT).end()
    root.end()
    assert processor.flush() == 2
    trace_id = format(root.get_span_context().trace_id, "032x")
    (row,) = store.recent()
    assert row.name == "POST /api/scrapes"
    assert row.spans == 4
    spans = store.spans(trace_id)
    assert sorted(s["name"] for s in spans) == ["GET", "INSERT", "POST /api/scrapes", "SELECT"]
    assert store.counts() == {"spans": 4, "traces": 1}
    db.close()


def test_slow_traces_are_read_through_the_index_of_long_traces_only(tmp_path: Path) -> None:
    """The slow page's index holds the traces of 100 ms and more (a store that had the index
    of every duration loses it); a threshold at or above that reads through it, a lower one
    scans, and both find the same traces."""
    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console.spanstore import SCHEMA, StoreSpanProcessor

    db = ConsoleDB(tmp_path)
    with db.write(db.connection()) as cur:  # a store made by the version before
        cur.execute(SCHEMA[0])
        cur.execute("CREATE INDEX traces_duration ON traces(duration_ns)")
    store = SpanStore(db, max_spans=10_000, max_age=3600)
    processor = StoreSpanProcessor(store, capacity=100)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    start = time.time_ns()
    for name, ms in (("fast", 2), ("medium", 60), ("slow", 700), ("slower", 1500)):
        tracer.start_span(name, start_time=start).end(end_time=start + ms * 1_000_000)
    assert processor.flush() == 4
    indexes = {row[0] for row in db.read("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "traces_slow" in indexes
    assert "traces_duration" not in indexes

    def plan(threshold_ms: int) -> tuple[str, str]:
        conn = db.connection()
        captured: list[str] = []
        conn.set_trace_callback(captured.append)
        names = [row.name for row in store.slow(threshold_ms * 1_000_000)]
        conn.set_trace_callback(None)
        (select,) = [sql for sql in captured if sql.startswith("SELECT")]
        steps = conn.execute(f"EXPLAIN QUERY PLAN {select}").fetchall()
        return " ".join(str(step[-1]) for step in steps), ",".join(names)

    for threshold in (500, 100):
        through, found = plan(threshold)
        assert "USING INDEX traces_slow" in through
        assert found == "slower,slow"
    through, found = plan(50)
    assert "traces_slow" not in through
    assert found == "slower,slow,medium"
    db.close()


def test_a_span_of_another_make_is_stored_as_the_sdks_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store reads the SDK's spans from their own fields; a span that has only the
    public surface (another SDK's), or a span context that is not the API's tuple, gives
    the same entry."""
    from opentelemetry import trace as api
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flask_observe.console import spanstore

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("GET /x", kind=api.SpanKind.SERVER) as root:
        root.set_attribute("client.address", "10.1.2.3")
        root.set_attribute("http.response.status_code", 500)
        with tracer.start_as_current_span("GET", kind=api.SpanKind.CLIENT) as child:
            child.set_attribute("url.full", "http://peer/x?token=s3cret")
            child.add_event("retry", {"attempt": 2})
            child.set_status(api.Status(api.StatusCode.ERROR, "peer answered 503"))
    spans = exported.get_finished_spans()

    class Public:
        """A span with the public surface only."""

        def __init__(self, span: Any) -> None:
            for name in ("context", "parent", "name", "kind", "start_time", "end_time"):
                setattr(self, name, getattr(span, name))
            self.status, self.attributes = span.status, dict(span.attributes)
            self.events, self.resource = list(span.events), span.resource

    store = SpanStore(ConsoleDB(tmp_path), max_spans=1000, max_age=3600)
    fast = [store.entry(span) for span in spans]
    assert [entry is not None and entry[3] for entry in fast] == [True, False]  # failed
    assert b"s3cret" not in fast[0][10]  # type: ignore[index]
    assert b"10.1.2.3" not in fast[1][10]  # type: ignore[index]
    assert [store.entry(Public(span)) for span in spans] == fast  # type: ignore[arg-type]
    monkeypatch.setattr(spanstore, "_CONTEXT_IS_TUPLE", False)
    assert [store.entry(span) for span in spans] == fast


def test_the_buffer_holds_no_span_and_stored_spans_are_capped(tmp_path: Path) -> None:
    """``on_end`` keeps plain values, not the span (a garbage collection has nothing of it to
    walk); a span too big for the quick path has its long values and attributes past the
    cap cut, an int wider than JSON takes is stored as text, and the span is still written."""
    import gc
    import weakref

    from opentelemetry.sdk.trace import SpanLimits, TracerProvider

    from flask_observe.console.spanstore import MAX_ATTRIBUTES, MAX_VALUE, StoreSpanProcessor

    db = ConsoleDB(tmp_path)
    store = SpanStore(db, max_spans=10_000, max_age=3600)
    processor = StoreSpanProcessor(store, capacity=100)
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=200))
    tracer = provider.get_tracer("t")
    many = {f"k{i}": "v" * 100 for i in range(MAX_ATTRIBUTES + 6)}  # past the quick path's size
    wide = tracer.start_span("wide", attributes=many)
    wide.end()
    odd = tracer.start_span("odd", attributes={"long": "x" * (MAX_VALUE + 500), "huge": 2**70})
    odd.end()
    for span in (wide, odd):
        readable = span._readable_span()  # type: ignore[attr-defined]
        gone = weakref.ref(readable)
        processor.on_end(readable)
        del readable
        gc.collect()
        assert gone() is None, "the buffer holds the span"
    assert processor.flush() == 2
    assert processor.dropped == 0

    def attributes(span: Any) -> dict[str, Any]:
        (stored,) = store.spans(format(span.get_span_context().trace_id, "032x"))
        return stored["attributes"]  # type: ignore[no-any-return]

    kept = attributes(wide)
    assert len(kept) == MAX_ATTRIBUTES + 1
    assert kept["…"] == "6 more attributes not kept"
    assert attributes(odd) == {"long": "x" * MAX_VALUE + "…", "huge": str(2**70)}
    db.close()


def test_an_sqlite_without_returning_stores_and_trims_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite before 3.35 (Debian 11's, RHEL 9's, Ubuntu 20.04's: what Python links there)
    rejects ``UPDATE … RETURNING``: the store still writes, counts, ages out and caps there
    (a flush that raised lost every span of it, and the Traces page stayed empty)."""
    import functools
    import sqlite3

    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console import store as store_module
    from flask_observe.console.spanstore import StoreSpanProcessor

    class OldCursor(sqlite3.Cursor):
        def execute(self, sql: str, *args: Any) -> Any:  # type: ignore[override]
            if "RETURNING" in sql.upper():
                raise sqlite3.OperationalError('near "RETURNING": syntax error')
            return super().execute(sql, *args)

    class OldConnection(sqlite3.Connection):
        def cursor(self, factory: Any = OldCursor) -> Any:  # type: ignore[override]
            return super().cursor(factory)

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(
        store_module.sqlite3,
        "connect",
        functools.partial(sqlite3.connect, factory=OldConnection),
    )
    db = ConsoleDB(tmp_path)
    store = SpanStore(db, max_spans=100, max_age=3600)
    now = [time.time_ns()]
    processor = StoreSpanProcessor(store, capacity=1000, clock_ns=lambda: now[0])
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    half_hour_ago = now[0] - int(1800e9)
    for i in range(150):
        tracer.start_span(f"op-{i}", start_time=half_hour_ago + i).end(
            end_time=half_hour_ago + i + 1000
        )
    assert processor.flush() == 150
    assert store.counts() == {"spans": 100, "traces": 100}
    assert store.recent(1)[0].name == "op-149"
    now[0] += int(1801e9)
    with tracer.start_as_current_span("late"):
        pass
    assert processor.flush() == 1
    assert store.counts() == {"spans": 1, "traces": 1}
    db.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_worker_does_not_write_what_the_master_buffered(tmp_path: Path) -> None:
    """gunicorn --preload: a span the master ended just before forking its workers is the
    master's to write; each worker wrote its copy of the buffer too (one trace, the span
    once per process)."""
    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console.spanstore import StoreSpanProcessor

    db = ConsoleDB(tmp_path)
    store = SpanStore(db, max_spans=10_000, max_age=3600)
    processor = StoreSpanProcessor(store, capacity=100)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    span = provider.get_tracer("t").start_span("a start-up query")
    span.end()
    workers = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:  # a worker
            code = 1
            try:
                processor.flush()
                code = 0
            finally:
                os._exit(code)
        workers.append(pid)
    for pid in workers:
        assert os.waitpid(pid, 0)[1] == 0
    assert processor.flush() == 1
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert [s["pid"] for s in store.spans(trace_id)] == [os.getpid()]
    assert store.counts() == {"spans": 1, "traces": 1}
    db.close()


def test_a_flush_that_cannot_write_keeps_its_spans_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker holds the file past the busy timeout: the flush raises (the flusher
    logs it) and its spans wait for the next one, within the buffer's capacity beside those
    that ended meanwhile, the rest counted as dropped; they were lost uncounted."""
    import sqlite3

    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console import store as store_module
    from flask_observe.console.spanstore import StoreSpanProcessor

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 100)
    db = ConsoleDB(tmp_path)
    store = SpanStore(db, max_spans=10_000, max_age=3600)
    processor = StoreSpanProcessor(store, capacity=8)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(5):
        tracer.start_span(f"before {i}").end()
    assert store.counts() == {"spans": 0, "traces": 0}  # the file and its tables made
    write = store.write_entries

    def while_requests_go_on(entries: Any, now_ns: int) -> int:
        for i in range(5):  # request threads end spans while the flusher waits
            tracer.start_span(f"during {i}").end()
        return write(entries, now_ns)

    monkeypatch.setattr(store, "write_entries", while_requests_go_on)
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError):
        processor.flush()
    other.execute("ROLLBACK")
    other.close()
    monkeypatch.setattr(store, "write_entries", write)
    assert (processor.buffered(), processor.dropped) == (8, 2)  # 3 of the 5 kept
    assert processor.flush() == 8
    names = {row.name for row in store.recent(20)}
    assert names == {f"before {i}" for i in range(3)} | {f"during {i}" for i in range(5)}
    db.close()


def test_a_flush_that_fails_for_good_counts_its_spans_as_dropped(tmp_path: Path) -> None:
    """A write that would fail the same way again (here: more parameters than an SQLite of
    before 3.32 takes, 999, in a flush of 84 traces) is not retried for ever with the buffer
    full: its spans are counted as dropped and the next, smaller flush is written."""
    import sqlite3

    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console import spanstore
    from flask_observe.console.spanstore import StoreSpanProcessor

    db = ConsoleDB(tmp_path)
    db.connection().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 12 * 83 + 3)
    store = SpanStore(db, max_spans=10_000, max_age=3600)
    processor = StoreSpanProcessor(store, capacity=1000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    assert spanstore._PER_STATEMENT > 84  # this SQLite's own build takes more
    for i in range(84):
        tracer.start_span(f"big flush {i}").end()
    with pytest.raises(sqlite3.OperationalError):
        processor.flush()
    assert (processor.buffered(), processor.dropped) == (0, 84)
    tracer.start_span("next").end()
    assert processor.flush() == 1
    assert [row.name for row in store.recent()] == ["next"]
    db.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libc fork() through ctypes")
def test_a_worker_forked_without_pythons_fork_hooks_starts_its_own_writer(tmp_path: Path) -> None:
    """uWSGI forks its workers in C and by default runs no ``os.register_at_fork`` hook: the
    flusher finds the new process itself (it looks at the process ID once in 256 calls, as
    every request makes one) and starts the worker's writer, which stores the worker's spans,
    those that ended before it was found included."""
    import ctypes
    import json

    from opentelemetry.sdk.trace import TracerProvider

    from flask_observe.console.flusher import Flusher
    from flask_observe.console.spanstore import StoreSpanProcessor

    db = ConsoleDB(tmp_path)
    store = SpanStore(db, max_spans=10_000, max_age=3600)
    flusher = Flusher(interval=0.05)
    processor = StoreSpanProcessor(
        store, capacity=1000, wake=flusher.ensure_started, nudge=flusher.nudge
    )
    flusher.add("span store", processor.flush)
    flusher.after_fork(lambda: processor.forked(clear=False))  # as console/setup.py wires it
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    tracer.start_span("in the master").end()  # the master's writer starts
    deadline = time.monotonic() + 10
    while processor.stored < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert processor.stored == 1
    read, write = os.pipe()
    pid = ctypes.PyDLL(None).fork()  # libc's fork, the GIL kept: no Python fork hooks run
    if pid == 0:  # the worker
        try:
            for i in range(300):  # requests: each ends a span and calls ensure_started
                tracer.start_span(f"request {i}").end()
                flusher.ensure_started()
            limit = time.monotonic() + 10
            while processor.stored < 300 and time.monotonic() < limit:
                time.sleep(0.01)
            os.write(write, json.dumps(processor.stored).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            stored_by_worker = json.loads(pipe.read() or "null")
    finally:
        os.waitpid(pid, 0)
        flusher.close()
    assert stored_by_worker == 301  # its 300 spans (the counter started at the master's 1)
    assert store.counts()["spans"] == 301
    db.close()
