"""The access log: one line per finished request, its fields, levels, exclusions and the
direct path to Observe's own handlers."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from .conftest import LiveServer, read_json_lines


def lines(tmp_path: Path) -> list[dict[str, Any]]:
    return read_json_lines(tmp_path / "logs" / "app.log")


def test_access_log_line_has_route_template_status_duration_size(
    logged_app: Flask, tmp_path: Path
) -> None:
    """One access line per request: method, route template, path, status, ms, bytes, ID."""
    response = logged_app.test_client().get("/accounts/7", headers={"X-Request-ID": "rid-2"})
    assert response.status_code == 200
    body = response.get_data()  # the line is written once the body has been sent
    access = [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "GET"
    assert line["route"] == "/accounts/<int:account_id>"
    assert line["path"] == "/accounts/7"
    assert line["status"] == 200
    assert line["response_size"] == len(body)
    assert 0 < line["duration_ms"] < 10_000
    assert line["correlation_id"] == "rid-2"
    assert "remote_addr" not in line


def test_access_log_path_is_the_decoded_utf8_path(logged_app: Flask, tmp_path: Path) -> None:
    """A non-ASCII path is logged as the text the client asked for (``/café``), not as the
    latin-1 reading of its UTF-8 bytes (``/cafÃ©``) that WSGI hands over."""
    logged_app.test_client().get("/caf%C3%A9/%E2%9C%93").close()
    (access,) = [x for x in lines(tmp_path) if x.get("route") is None]
    assert access["path"] == "/café/✓"
    assert access["message"] == "GET /café/✓ 404"


class _BrokenPipe:
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_stdout_does_not_keep_the_access_line_from_the_file(
    make_app: Callable[..., Flask], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Standard output gone (``python -m app | head``, a closed pipe): the request is
    served, and its access line still reaches the log file."""
    app = make_app("pipe", log_dir=str(tmp_path / "logs"))

    @app.get("/")
    def index() -> str:
        return "ok"

    root = logging.getLogger()
    foreign = [h for h in root.handlers if not hasattr(h, "write_line")]  # pytest's capture
    for handler in foreign:  # as in production: the access line takes the direct path
        root.removeHandler(handler)
    try:
        monkeypatch.setattr(sys, "stdout", _BrokenPipe())
        with app.test_client().get("/", headers={"X-Request-ID": "piped"}) as response:
            assert response.status_code == 200
        monkeypatch.undo()
    finally:
        for handler in foreign:
            root.addHandler(handler)
    access = [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert [x["correlation_id"] for x in access] == ["piped"]


def test_access_log_level_follows_status(logged_app: Flask, tmp_path: Path) -> None:
    """5xx access lines are errors, 4xx warnings; unmatched routes have route null."""
    client = logged_app.test_client()
    client.get("/broken").close()
    client.get("/denied").close()
    client.get("/nowhere").close()
    access = {x["path"]: x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"}
    assert access["/broken"]["level"] == "error"
    assert access["/broken"]["status"] == 500
    assert access["/denied"]["level"] == "warning"
    assert access["/nowhere"]["route"] is None
    assert access["/nowhere"]["status"] == 404


def test_remote_addr_only_when_enabled(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """The client address is personal data: logged only with OBSERVE_ACCESS_LOG_REMOTE_ADDR."""
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"), access_log_remote_addr=True)
    app.test_client().get("/", environ_base={"REMOTE_ADDR": "203.0.113.9"}).close()
    (line,) = [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert line["remote_addr"] == "203.0.113.9"


def test_excluded_paths_are_not_access_logged(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Probe paths in OBSERVE_EXCLUDED_PATHS get no access line (but still get an ID)."""
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"))

    @app.get("/health/live")
    def live() -> str:
        return "ok"

    response = app.test_client().get("/health/live")
    response.close()
    assert "X-Request-ID" in response.headers
    app.test_client().get("/health/live-ish").close()
    paths = [x["path"] for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert paths == ["/health/live-ish"]


def test_access_log_can_be_turned_off(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """OBSERVE_ACCESS_LOG=False writes no access lines."""
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"), access_log=False)
    app.test_client().get("/").close()
    assert [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"] == []


def test_access_log_fast_path_writes_the_same_line_as_the_slow_path(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """With only Observe's handlers listening, the access line skips LogRecord but is the same.

    The first request runs with an extra (foreign) handler on the root logger, forcing the
    standard logging path; the second without it (as in production), taking the fast path.
    """
    from flask_observe.logging.access import _direct_sinks

    app = make_app("fast", log_stdout=False, log_dir=str(tmp_path / "logs"))

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    root = logging.getLogger()
    access_logger = logging.getLogger("flask_observe.access")
    foreign = [h for h in root.handlers if not hasattr(h, "write_line")]
    assert foreign, "pytest's capture handler is expected on the root logger"
    assert _direct_sinks(access_logger, logging.INFO) is None
    app.test_client().get("/items/1", headers={"X-Request-ID": "slow"}).close()
    for handler in foreign:
        root.removeHandler(handler)
    try:
        sinks = _direct_sinks(access_logger, logging.INFO)
        assert sinks is not None
        assert len(sinks) == 1
        app.test_client().get("/items/1", headers={"X-Request-ID": "fast"}).close()
    finally:
        for handler in foreign:
            root.addHandler(handler)
    slow, fast = [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert slow.keys() == fast.keys()
    for key in slow.keys() - {"timestamp", "duration_ms", "correlation_id"}:
        assert slow[key] == fast[key], key
    assert (slow["correlation_id"], fast["correlation_id"]) == ("slow", "fast")


def test_remembered_sinks_follow_handlers_filters_and_levels_added_later() -> None:
    """The access log remembers where its line goes only while nothing on the way changed:
    a handler, a filter, a level or a formatter set later is seen by the very next line."""
    from flask_observe.logging.access import _Sinks
    from flask_observe.logging.formatter import ObserveFormatter

    parent = logging.Logger("sinks-test")
    child = logging.Logger("sinks-test.access")
    child.parent = parent
    parent.propagate = False

    class Ours(logging.Handler):
        def write_line(self, line: str, created: float) -> None:
            """A direct sink."""

    ours = Ours()
    ours.setFormatter(ObserveFormatter("svc"))
    parent.addHandler(ours)
    sinks = _Sinks(child)
    first = sinks(logging.INFO)
    assert first is not None
    lines, fields = first
    assert [formatter for formatter, _ in lines] == [ours.formatter]
    assert fields == ()  # no sink of fields (OTLP logs)
    assert sinks(logging.INFO) is first  # nothing changed: remembered
    foreign = logging.NullHandler()
    parent.addHandler(foreign)
    assert sinks(logging.INFO) is None  # someone else listens: the stdlib path
    parent.removeHandler(foreign)
    assert sinks(logging.INFO) is not None
    child.addFilter(lambda record: True)
    assert sinks(logging.INFO) is None
    child.filters.clear()
    ours.setLevel(logging.WARNING)
    assert sinks(logging.INFO) == ((), ())  # our handler no longer takes INFO
    ours.setLevel(logging.NOTSET)
    ours.addFilter(lambda record: True)
    assert sinks(logging.INFO) is None
    ours.filters.clear()
    ours.setFormatter(logging.Formatter())
    assert sinks(logging.INFO) is None  # not our formatter: the stdlib path formats it
    ours.setFormatter(ObserveFormatter("svc"))
    assert sinks(logging.INFO) is not None
    between = logging.Logger("sinks-test.between")
    between.parent, child.parent = parent, between
    between.addHandler(logging.NullHandler())
    assert sinks(logging.INFO) is None  # a new logger on the way, with a handler of its own


def test_access_log_respects_logger_level(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Setting flask_observe.access to WARNING keeps only 4xx/5xx access lines."""
    app = make_app(
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        log_levels={"flask_observe.access": "WARNING"},
    )

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    try:
        client = app.test_client()
        client.get("/ok").close()
        client.post("/ok").close()
        client.get("/missing").close()
        statuses = [x["status"] for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
        assert statuses == [405, 404]
    finally:
        logging.getLogger("flask_observe.access").setLevel(logging.NOTSET)


# -- request data an outsider chooses the length of -------------------------------------


def test_a_long_unmatched_path_is_capped_and_written_once(
    logged_app: Flask, tmp_path: Path
) -> None:
    """A 60 KiB path (werkzeug takes 64 KiB request lines): ``path`` keeps its first 2 KiB and
    says how much was cut; ``message`` repeats only 256 bytes of it. Before, the line carried
    the whole path twice (120 kB)."""
    path = "/" + "a" * 60_000
    logged_app.test_client().get(path).close()
    raw = (tmp_path / "logs" / "app.log").read_text().splitlines()
    (access,) = [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert access["path"] == path[:2016] + f"…[truncated {60_001 - 2016} bytes]"
    assert len(access["path"].encode()) <= 2048
    assert access["message"] == "GET " + path[:224] + f"…[truncated {60_001 - 224} bytes] 404"
    assert max(len(line) for line in raw) < 3000


def test_a_matched_route_names_the_rule_in_the_message(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """``message`` is ``METHOD route status``: a long path that matched a rule is not
    repeated there at all."""
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"))

    @app.get("/files/<path:name>")
    def files(name: str) -> str:
        return "ok"

    app.test_client().get("/files/" + "f" * 20_000).close()
    (access,) = [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert access["message"] == "GET /files/<path:name> 200"
    assert access["path"] == "/files/" + "f" * 2009 + "…[truncated 17991 bytes]"


def test_method_and_remote_addr_are_capped(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Werkzeug takes any token as a method, and a proxy header can make the address long."""
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"), access_log_remote_addr=True)
    app.test_client().open("/", method="M" * 5000, environ_base={"REMOTE_ADDR": "1" * 9000}).close()
    (line,) = [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert line["method"] == "M" * 32 + "…[truncated 4968 bytes]"
    assert line["message"].startswith(line["method"] + " / ")
    assert line["remote_addr"] == "1" * 2016 + "…[truncated 6984 bytes]"


def test_the_cap_is_a_setting(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"), log_max_field_bytes=512)
    app.test_client().get("/" + "b" * 5000).close()
    (line,) = [x for x in lines(tmp_path) if x["logger"] == "flask_observe.access"]
    assert line["path"] == "/" + "b" * 479 + "…[truncated 4521 bytes]"


def test_truncate_cuts_on_a_character_boundary_and_counts_bytes() -> None:
    from flask_observe.logging.formatter import truncate

    assert truncate("short", 256) == "short"
    text = "é" * 200  # 400 bytes of UTF-8
    assert truncate(text, 400) == text
    cut = truncate(text, 257)  # 225 bytes may stay: 112 whole characters
    assert cut == "é" * 112 + "…[truncated 176 bytes]"
    assert len(cut.encode()) <= 257
    assert truncate("\udcff" * 300, 256).endswith("bytes]")  # a lone surrogate does not break it


def _raw_request(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_werkzeugs_bad_request_line_is_capped(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """A malformed 64 KiB request line to the real development server: werkzeug's error line
    ("code 400, message Bad request syntax ('…')") keeps the start of it, capped, instead of
    the whole line."""
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"))
    line = b"GET /bad-token-" + b"z" * 65_000 + b" x HTTP/1.1\r\n\r\n"
    with LiveServer(app) as server:
        assert _raw_request(server.port, line).startswith(b"HTTP/1.1 400")
    raw = (tmp_path / "logs" / "app.log").read_text().splitlines()
    (error,) = [x for x in lines(tmp_path) if "Bad request syntax" in x["message"]]
    assert error["logger"] == "werkzeug"
    assert "GET /bad-token-zzz" in error["message"]
    assert "…[truncated " in error["message"]
    assert max(len(text) for text in raw) < 3000


def test_werkzeugs_own_request_lines_are_capped_when_the_access_log_is_off(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """With the access log off, werkzeug's request lines stay, and carry the request line:
    capped too."""
    app = make_app(log_stdout=False, log_dir=str(tmp_path / "logs"), access_log=False)
    target = b"/" + b"q" * 60_000
    with LiveServer(app) as server:
        reply = _raw_request(server.port, b"GET " + target + b" HTTP/1.0\r\n\r\n")
        assert reply.startswith((b"HTTP/1.1 404", b"HTTP/1.0 404"))
    (request_line,) = [x for x in lines(tmp_path) if "qqq" in x["message"]]
    assert request_line["logger"] == "werkzeug"
    assert "…[truncated " in request_line["message"]
    assert len(request_line["message"]) < 2500
