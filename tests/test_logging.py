"""Structured logging: one JSON format for every logger, the access log, and coexistence."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import structlog
from flask import Flask, request

from flask_observe import get_correlation_id, get_logger

from .conftest import LiveServer, parse_stdout, read_json_lines


def lines(tmp_path: Path) -> list[dict[str, Any]]:
    return read_json_lines(tmp_path / "logs" / "app.log")


def test_host_log_line_is_json_with_required_fields(logged_app: Flask, tmp_path: Path) -> None:
    """A host logger line has timestamp (UTC ISO 8601), level, logger, message, service, ID."""
    logged_app.test_client().get("/accounts/7", headers={"X-Request-ID": "rid-1"}).close()
    line = next(x for x in lines(tmp_path) if x["logger"] == "host.views")
    assert line["message"] == "loading account"
    assert line["level"] == "info"
    assert line["service"] == "scraper"
    assert line["correlation_id"] == "rid-1"
    assert line["account_id"] == 7
    assert line["timestamp"].endswith("Z")
    assert len(line["timestamp"]) == len("2026-11-23T03:14:49.123Z")


def test_unhandled_exception_is_logged_with_traceback_and_id(
    logged_app: Flask, tmp_path: Path
) -> None:
    """Flask's own 'Exception on ...' line is JSON with the traceback and the request's ID."""
    logged_app.test_client().get("/broken", headers={"X-Request-ID": "rid-err"}).close()
    error = next(x for x in lines(tmp_path) if x["logger"] == "scraper" and x["level"] == "error")
    assert error["correlation_id"] == "rid-err"
    assert error["exc_type"] == "KeyError"
    assert "Traceback" in error["exception"]


def test_structlog_logger_and_bound_context_share_the_pipeline(
    logged_app: Flask, tmp_path: Path
) -> None:
    """get_logger() lines and stdlib lines both carry structlog's bound context variables."""

    @logged_app.get("/structured")
    def structured() -> str:
        with structlog.contextvars.bound_contextvars(platform="twitter"):
            get_logger("host.scraper").info("scraped", followers=10)
            logging.getLogger("host.plain").warning("plain %s", "line")
        return "ok"

    logged_app.test_client().get("/structured", headers={"X-Request-ID": "rid-s"}).close()
    by_logger = {x["logger"]: x for x in lines(tmp_path)}
    assert by_logger["host.scraper"]["message"] == "scraped"
    assert by_logger["host.scraper"]["followers"] == 10
    assert by_logger["host.scraper"]["platform"] == "twitter"
    assert by_logger["host.scraper"]["correlation_id"] == "rid-s"
    assert by_logger["host.plain"]["message"] == "plain line"
    assert by_logger["host.plain"]["platform"] == "twitter"


def test_third_party_loggers_come_out_as_json(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """SQLAlchemy, urllib3 (requests) and werkzeug lines use the same JSON format."""
    app = make_app(
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        log_level="DEBUG",
        log_levels={"sqlalchemy.engine": "INFO", "urllib3": "DEBUG"},
    )
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")

    @app.get("/work")
    def work() -> str:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return "ok"

    with LiveServer(app) as server:
        assert requests.get(server.url + "/work", timeout=5).status_code == 200
        logging.getLogger("werkzeug").warning("a werkzeug warning")
    records = lines(tmp_path)
    sql = [x for x in records if x["logger"].startswith("sqlalchemy.engine")]
    assert any("select 1" in x["message"] for x in sql)
    assert all(x["correlation_id"] for x in sql if "select 1" in x["message"])
    assert any(x["logger"] == "urllib3.connectionpool" for x in records)
    assert any(x["logger"] == "werkzeug" and x["level"] == "warning" for x in records)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.NOTSET)
    logging.getLogger("urllib3").setLevel(logging.NOTSET)


def test_werkzeug_request_lines_are_dropped_as_duplicates(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """The dev server's own '"GET / HTTP/1.1" 200' line is dropped: the access log has it."""
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"))
    with LiveServer(app) as server:
        requests.get(server.url + "/nothing-here", timeout=5)
    records = lines(tmp_path)
    assert [x for x in records if x["logger"] == "werkzeug" and "HTTP/1.1" in x["message"]] == []
    assert any(x["logger"] == "flask_observe.access" for x in records)


def test_reserved_names_in_extra_do_not_overwrite_fields(logged_app: Flask, tmp_path: Path) -> None:
    """A caller's extra 'service' or 'level' is kept as extra_<name>, not clobbering ours."""
    with logged_app.app_context():
        logging.getLogger("host").info("x", extra={"service": "evil", "level": "fake"})
    line = next(x for x in lines(tmp_path) if x["logger"] == "host")
    assert line["service"] == "scraper"
    assert line["level"] == "info"
    assert line["extra_service"] == "evil"
    assert line["extra_level"] == "fake"


def test_unserialisable_extra_is_rendered_as_text(logged_app: Flask, tmp_path: Path) -> None:
    """Objects JSON cannot encode are written as str(), never dropping the line."""

    class Thing:
        def __str__(self) -> str:
            return "thing!"

    logging.getLogger("host").info("odd", extra={"thing": Thing(), "big": 2**80})
    line = next(x for x in lines(tmp_path) if x["logger"] == "host")
    assert line["thing"] == "thing!"
    assert line["big"] == str(2**80)


def test_a_lone_surrogate_is_escaped_not_a_lost_line(logged_app: Flask, tmp_path: Path) -> None:
    """A file name decoded with surrogateescape (bytes that are not UTF-8) in a message or a
    field: the line is still written, as valid JSON, with the surrogate as an escape."""
    name = b"scrape-\xff.json".decode("utf-8", "surrogateescape")
    logging.getLogger("host").warning("cannot read %s", name, extra={"file": name})
    logging.getLogger("host").info("next line")
    written = [x for x in lines(tmp_path) if x["logger"] == "host"]
    assert [x["message"] for x in written] == ["cannot read scrape-\\udcff.json", "next line"]
    assert written[0]["file"] == "scrape-\\udcff.json"


def test_stdout_is_json_by_default(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    """With no log dir, lines go to stdout as JSON; outside a request there is no ID."""
    make_app("stdout-app")
    logging.getLogger("host").warning("to stdout")
    (line,) = [x for x in parse_stdout(capsys.readouterr().out) if x["logger"] == "host"]
    assert line["service"] == "stdout-app"
    assert "correlation_id" not in line
    assert get_correlation_id() is None


def test_console_format_is_human_readable(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    """OBSERVE_LOG_FORMAT=console prints a readable line, not JSON."""
    make_app("console-app", log_format="console")
    logging.getLogger("host").warning("pretty line", extra={"k": "v"})
    out = capsys.readouterr().out
    assert "pretty line" in out
    assert "k=v" in out
    assert not out.lstrip().startswith("{")


HOSTILE = "\x1b[31mRED\x1b[0m\r\nFAKE line\x1b]0;title\x07\x9b2J"


def test_console_format_never_prints_control_characters_raw(
    make_app: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    """A request path, a header-derived message or an extra field carrying ANSI escapes,
    CR/LF or C1 controls comes out escaped; a traceback keeps its lines, and a message's line
    break starts an indented continuation, so only a record's first line starts at the left
    margin (nothing forged)."""
    app = make_app("console-app", log_format="console")

    @app.get("/echo")
    def echo() -> str:
        anything = request.args["q"]
        logging.getLogger("host").warning("user said %s", anything, extra={"said": anything})
        try:
            raise ValueError(anything.replace("\n", " "))  # a traceback keeps its LFs
        except ValueError:
            logging.getLogger("host").exception("failed")
        return "ok"

    quoted = "".join(f"%{b:02x}" for b in HOSTILE.encode())
    with app.test_client().get(
        f"/echo?q={quoted}", headers={"X-Request-ID": "\x1b[2Jcid"}
    ) as response:
        assert response.status_code == 200
    with app.test_client().get(f"/nope/{quoted}") as response:
        assert response.status_code == 404
    out = capsys.readouterr().out
    # the message: escapes written out, the LF a continuation
    assert "user said \\x1b[31mRED\\x1b[0m\\r\n" in out
    assert "\\x1b]0;title\\x07\\x9b2J" in out
    assert "\\x1b[31mRED\\x1b[0m\\r\\nFAKE line" in out  # the field: everything escaped
    traceback = out[out.index("Traceback") :]
    assert traceback.count("\n") >= 3  # still a multi-line traceback
    printed = out.replace("\n", "")
    assert not [c for c in printed if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]
    starts = [line for line in out.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3}Z ", line)]
    # one line per record: the warning, the exception, two access lines; nothing forged
    assert len(starts) == 4
    assert not any(line.startswith("FAKE") for line in out.splitlines())
    # the warning's and the 404 access line's message, continued under the message column
    continued = [line for line in out.splitlines() if line.lstrip().startswith("FAKE line")]
    assert len(continued) == 2
    assert all(line.startswith(" " * 26) for line in continued)


def test_no_duplicate_handlers_across_apps(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Apps sharing a destination share one handler; each line is written once."""
    root = logging.getLogger()
    before = len(root.handlers)
    make_app("a1", log_dir=str(tmp_path / "logs"))
    after_first = len(root.handlers)
    make_app("a2", log_dir=str(tmp_path / "logs"))
    # stdout, the file, and the errors feature's capture handler (one per process)
    assert len(root.handlers) == after_first == before + 3
    logging.getLogger("host").warning("once")
    assert [x["message"] for x in lines(tmp_path) if x["logger"] == "host"] == ["once"]


def test_a_second_app_is_told_which_of_its_settings_a_shared_destination_ignores(
    make_app: Callable[..., Flask], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One handler per destination: a second app asking for another format, level or
    rotation on it gets a warning naming those keys; the same settings, no warning."""
    log_dir = str(tmp_path / "logs")
    make_app("first", log_dir=log_dir, log_rotate_bytes=4096)
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        make_app("same", log_dir=log_dir, log_rotate_bytes=4096)
        assert not [r for r in caplog.records if "already written" in r.getMessage()]
        make_app(
            "other", log_dir=log_dir, log_format="console", log_level="DEBUG", log_compress=False
        )
    warnings = [r.getMessage() for r in caplog.records if "already written" in r.getMessage()]
    assert len(warnings) == 2  # stdout and the file
    file, stdout = sorted(warnings, key=lambda m: "stdout" in m)
    assert "OBSERVE_LOG_COMPRESS, OBSERVE_LOG_LEVEL" in file  # files are always JSON
    assert "OBSERVE_LOG_FORMAT, OBSERVE_LOG_LEVEL" in stdout


def test_apps_sharing_a_file_keep_their_own_identity(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Two apps on one handler: each app's lines, access lines included, name that app.

    The access line is written after the app context is gone, so it must carry its app's
    service, version and environment itself rather than take the handler's defaults.
    """
    log_dir = str(tmp_path / "logs")
    first = make_app("first", log_dir=log_dir, log_stdout=False, service_version="1.2.3")
    second = make_app("second", log_dir=log_dir, log_stdout=False, environment="staging")
    for app in (first, second):

        @app.get("/where")
        def where() -> str:
            logging.getLogger("host.where").info("here")
            return "ok"

    first.test_client().get("/where", headers={"X-Request-ID": "rid-first"}).close()
    second.test_client().get("/where", headers={"X-Request-ID": "rid-second"}).close()
    by_id = {
        (x["correlation_id"], x["logger"]): x for x in lines(tmp_path) if "correlation_id" in x
    }
    for logger in ("host.where", "flask_observe.access"):
        one, two = by_id[("rid-first", logger)], by_id[("rid-second", logger)]
        assert (one["service"], one.get("version"), one.get("environment")) == (
            "first",
            "1.2.3",
            None,
        )
        assert (two["service"], two.get("version"), two.get("environment")) == (
            "second",
            None,
            "staging",
        )


def test_flask_default_handler_is_removed(make_app: Callable[..., Flask]) -> None:
    """app.logger does not also print through Flask's default handler."""
    from flask.logging import default_handler

    app = Flask("pre-accessed")
    # Flask adds it when no handler is configured (pytest's capture handler hides that here).
    app.logger.addHandler(default_handler)
    from flask_observe import Observe

    ext = Observe(app)
    try:
        assert default_handler not in app.logger.handlers
    finally:
        ext.shutdown(app)


def test_host_configured_logging_is_kept(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """A host handler on the root logger keeps working; a lower host root level is kept."""
    root = logging.getLogger()
    previous_level = root.level
    seen: list[logging.LogRecord] = []

    class HostHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    host_handler = HostHandler(level=logging.DEBUG)
    root.addHandler(host_handler)
    root.setLevel(logging.DEBUG)
    try:
        make_app(log_stdout=False, log_dir=str(tmp_path / "logs"), log_level="INFO")
        assert root.level == logging.DEBUG
        logging.getLogger("host").debug("debug for the host only")
        logging.getLogger("host").info("for both")
        assert [r.getMessage() for r in seen] == ["debug for the host only", "for both"]
        assert [x["message"] for x in lines(tmp_path) if x["logger"] == "host"] == ["for both"]
    finally:
        root.removeHandler(host_handler)
        root.setLevel(previous_level)


def test_structlog_setup_leaves_the_process_logger_class_alone() -> None:
    """Configuring structlog does not swap ``logging``'s logger class for the host's loggers."""
    from flask_observe.logging.formatter import configure_structlog

    structlog.reset_defaults()
    before = logging.getLoggerClass()
    assert configure_structlog() is True
    assert logging.getLoggerClass() is before
    assert configure_structlog() is False  # configured once, then left alone


def test_shutdown_of_the_last_app_puts_process_wide_logging_back(tmp_path: Path) -> None:
    """Root level, per-logger levels and the werkzeug filter are the process's, not one app's:
    they stay while any app still uses them and are put back when the last one shuts down —
    except a level someone else changed in between."""
    from flask_observe import Observe
    from flask_observe.logging.handlers import WerkzeugRequestLineFilter

    root, engine, urllib3 = (
        logging.getLogger(),
        logging.getLogger("sqlalchemy.engine"),
        logging.getLogger("urllib3"),
    )
    werkzeug = logging.getLogger("werkzeug")
    before = (root.level, engine.level, urllib3.level)
    root.setLevel(logging.WARNING)

    def dropper_count() -> int:
        return sum(isinstance(f, WerkzeugRequestLineFilter) for f in werkzeug.filters)

    apps = []
    try:
        for name in ("first", "second"):
            app = Flask(name)
            app.config.update(
                OBSERVE_LOG_STDOUT=False,
                OBSERVE_LOG_DIR=str(tmp_path / name),
                OBSERVE_LOG_LEVEL="DEBUG",
                OBSERVE_LOG_LEVELS={"sqlalchemy.engine": "INFO", "urllib3": "ERROR"},
            )
            apps.append((Observe(app), app))
        assert (root.level, engine.level, urllib3.level) == (
            logging.DEBUG,
            logging.INFO,
            logging.ERROR,
        )
        assert dropper_count() == 1
        urllib3.setLevel(logging.CRITICAL)  # the host changes one of them meanwhile
        first, second = apps
        first[0].shutdown(first[1])
        assert (root.level, engine.level) == (logging.DEBUG, logging.INFO)  # second still uses
        assert dropper_count() == 1
        second[0].shutdown(second[1])
        assert (root.level, engine.level) == (logging.WARNING, before[1])
        assert urllib3.level == logging.CRITICAL  # the host's own change is kept
        assert dropper_count() == 0
    finally:
        root.setLevel(before[0])
        engine.setLevel(before[1])
        urllib3.setLevel(before[2])
