"""The console's SQLite file: its schema is made once (at setup), a process that finds it
made runs one statement instead of the schema's, and a changed schema is made again."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_observe import Observe
from flask_observe.console import Console
from flask_observe.console.store import FILE_NAME, ConsoleDB

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT)",
    "CREATE INDEX IF NOT EXISTS notes_text ON notes(text)",
)


def statements_of_first_use(db: ConsoleDB, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL the first ``connection()`` of ``db`` runs (after its own pragmas; without
    the statements SQLite runs inside one, traced as ``-- …``)."""
    seen: list[str] = []
    connect = db._connect

    def traced() -> sqlite3.Connection:
        conn = connect()
        conn.set_trace_callback(lambda sql: sql.startswith("--") or seen.append(sql))
        return conn

    monkeypatch.setattr(db, "_connect", traced)
    db.connection()
    return seen


def test_a_made_schema_is_not_made_again_and_a_changed_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ConsoleDB(tmp_path, SCHEMA)
    first.make_schema()
    assert first.read("SELECT name FROM sqlite_master WHERE name = 'notes_text'")
    # Another process (a worker) opening the same file: one statement, no transaction.
    worker = ConsoleDB(tmp_path, SCHEMA)
    assert statements_of_first_use(worker, monkeypatch) == ["PRAGMA user_version"]
    # A schema with one statement more (a newer version) is made, in one transaction.
    newer = ConsoleDB(tmp_path, (*SCHEMA, "CREATE TABLE IF NOT EXISTS more (id INTEGER)"))
    ran = statements_of_first_use(newer, monkeypatch)
    assert ran[1] == "BEGIN IMMEDIATE"
    assert "CREATE TABLE IF NOT EXISTS more (id INTEGER)" in ran
    assert ran[-1] == "COMMIT"
    assert newer.read("SELECT name FROM sqlite_master WHERE name = 'more'")
    for db in (first, worker, newer):
        db.close()


def test_a_retired_index_made_again_by_an_older_version_is_dropped_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rolling deploy: the new schema dropped an index, an old worker (which runs its own
    schema whatever ``user_version`` says) made it again; the next new process drops it."""
    schema = (*SCHEMA, "DROP INDEX IF EXISTS notes_old")
    first = ConsoleDB(tmp_path, schema)
    first.retire("notes_old")
    first.make_schema()
    with first.write() as cur:  # what the old version's schema does
        cur.execute("CREATE INDEX IF NOT EXISTS notes_old ON notes(id, text)")
    later = ConsoleDB(tmp_path, schema)
    later.retire("notes_old")
    assert "DROP INDEX IF EXISTS notes_old" in statements_of_first_use(later, monkeypatch)
    assert not later.read("SELECT name FROM sqlite_master WHERE name = 'notes_old'")
    for db in (first, later):
        db.close()


def test_the_console_makes_its_store_at_setup(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Before any request or flush, the file holds every part's tables (the span store's
    too), so a busy worker's writer does not make them while its spans pile up."""
    app = make_app(
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        logviewer_enabled=True,
        auth_token="console-store-Vq8n2LxT0s4wJm6pR1cZ",
        tracing_enabled=True,
        tracing_exporter="none",
    )
    console = Observe.handle(Console, app)
    assert console.flusher is not None
    assert console.flusher.rounds == 0
    conn = sqlite3.connect(tmp_path / "logs" / FILE_NAME)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    assert {"traces", "span_total", "error_groups", "rollup", "logger_levels"} <= tables
    assert version != 0


def test_a_store_that_cannot_be_made_at_setup_is_a_warning_not_a_failure(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unwritable console directory does not stop the app: a warning says so."""
    blocked = tmp_path / "console-dir"
    blocked.write_text("a file where the directory should be")
    app = make_app(
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        logviewer_enabled=True,
        auth_token="console-store-Vq8n2LxT0s4wJm6pR1cZ",
        console_dir=str(blocked),
    )
    assert app.test_client().get("/").status_code == 404  # the app answers
    warnings = [r for r in caplog.records if "could not be made at setup" in r.getMessage()]
    assert len(warnings) == 1
    assert str(blocked) in warnings[0].getMessage()
