"""The log viewer over HTTP: every route behind the shared auth, the page's cookie sign-in,
clear 4xx for bad input (never 5xx, never a file outside the log directory), live tail
over server-sent events across rotation, and catastrophic regexes that change nothing for
the app's other requests."""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import queue
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest
import requests
from flask import Flask, Request, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_observe import ConfigError
from flask_observe._clock import ManualClock
from flask_observe.context import reset_correlation_id, set_correlation_id
from flask_observe.logging.files import RotatingFileHandler
from flask_observe.logging.handlers import LoggingSetup
from flask_observe.logviewer import LogViewer
from flask_observe.logviewer.session import COOKIE_NAME, SessionSigner
from flask_observe.state import current_state

from .conftest import LiveServer
from .test_logviewer_store import CORPUS, EVIL, NAMES

TOKEN = "viewer-nc4wYYxi2uxLGs9du5oF_uNr"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
logger = logging.getLogger("viewertest")


@pytest.fixture
def viewer_app(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        settings: dict[str, Any] = {
            "log_stdout": False,
            "log_dir": str(tmp_path / "logs"),
            "logviewer_enabled": True,
            "auth_token": TOKEN,
        }
        settings.update(config)
        app = make_app("viewerapp", **settings)

        @app.get("/ping")
        def ping() -> str:
            return "pong"

        return app

    return factory


def log_lines(count: int, correlation_id: str | None = None, **extra: Any) -> None:
    token = set_correlation_id(correlation_id)
    try:
        for i in range(count):
            logger.warning("line %d", i, extra=extra)
    finally:
        reset_correlation_id(token)


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[LiveServer]:
    """A live server whose open event streams are ended (as on shutdown) before it stops."""
    with LiveServer(app) as server:
        try:
            yield server
        finally:
            viewer = current_state(app).get(LogViewer)
            assert viewer is not None
            viewer.close()


def file_handler(app: Flask) -> RotatingFileHandler:
    state = current_state(app)
    assert state.get(LoggingSetup) is not None
    handler = next(
        h for h in state.get(LoggingSetup).handlers if isinstance(h, RotatingFileHandler)
    )
    handler.quiet_seconds = 0  # one process writes: compress rotated files at once
    return handler


# -- who may see it -------------------------------------------------------------------------


def _routes(app: Flask) -> list[tuple[str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("observe_logviewer."):
            continue
        url = rule.rule.replace("<file_name>", "app.log").replace("<name>", "logviewer.js")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, url))
    return out


def test_route_table_every_viewer_route_refuses_without_credentials(
    viewer_app: Callable[..., Flask],
) -> None:
    """Every route of the viewer (API, page, assets, sign-in, sign-out) answers 401/403 to
    no credentials and to wrong ones, and shows no log content."""
    app = viewer_app()
    log_lines(3, "secret-request")
    routes = _routes(app)
    assert {url for _, url in routes} >= {
        "/api/logs/files",
        "/api/logs/search",
        "/api/logs/tail/app.log",
        "/observe/logs",
        "/observe/logs/static/logviewer.js",
        "/observe/logs/login",
        "/observe/logs/logout",
    }
    client = app.test_client()
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    for method, url in routes:
        for headers in ({}, wrong):
            with client.open(url, method=method, headers=headers) as response:
                assert response.status_code in (401, 403), (method, url, headers)
                assert b"secret-request" not in response.data
                assert b"line 0" not in response.data


def test_enabling_it_without_auth_fails_start_up(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """No token and no callback: the viewer would be public, so init_app refuses; so it
    does without files to show, or with the page's path inside the API's."""
    with pytest.raises(ConfigError, match="OBSERVE_AUTH_TOKEN"):
        make_app("open", log_stdout=False, log_dir=str(tmp_path), logviewer_enabled=True)
    with pytest.raises(ConfigError, match="OBSERVE_LOG_DIR"):
        make_app("nodir", log_stdout=False, logviewer_enabled=True, auth_token=TOKEN)
    with pytest.raises(ConfigError, match="OBSERVE_LOGVIEWER_UI_PATH"):
        make_app(
            "clash",
            log_stdout=False,
            log_dir=str(tmp_path),
            logviewer_enabled=True,
            auth_token=TOKEN,
            logviewer_ui_path="/api/logs/ui",
        )


def test_off_by_default(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Without OBSERVE_LOGVIEWER_ENABLED there are no viewer routes at all."""
    app = make_app("plain", log_stdout=False, log_dir=str(tmp_path), auth_token=TOKEN)
    assert _routes(app) == []
    assert app.test_client().get("/api/logs/files", headers=AUTH).status_code == 404


def test_callback_decides_and_the_token_sign_in_is_off(viewer_app: Callable[..., Flask]) -> None:
    """With OBSERVE_AUTH_CALLBACK the host's check decides everything; posting the token to
    the sign-in form gets no session."""

    def operators(request: Request) -> bool:
        return request.headers.get("X-Operator") == "yes"

    app = viewer_app(auth_callback=operators)
    client = app.test_client()
    assert client.get("/api/logs/files", headers={"X-Operator": "yes"}).status_code == 200
    assert client.get("/observe/logs", headers={"X-Operator": "yes"}).status_code == 200
    assert client.get("/api/logs/files", headers=AUTH).status_code == 403
    page = client.get("/observe/logs")
    assert page.status_code == 401
    assert b"own sign-in" in page.data
    signed = client.post("/observe/logs/login", data={"token": TOKEN})
    assert signed.status_code == 403
    assert COOKIE_NAME not in signed.headers.get("Set-Cookie", "")


def test_sign_in_gives_a_scoped_httponly_cookie_and_sign_out_ends_it(
    viewer_app: Callable[..., Flask],
) -> None:
    """The form posts the token once; the cookie is HttpOnly, SameSite=Strict, scoped to the
    viewer's paths, and opens the page and the API; a forged or cross-site one does not."""
    app = viewer_app()
    client = app.test_client()
    assert client.get("/observe/logs").status_code == 401
    assert (
        client.post("/observe/logs/login", data={"token": "wrong-token-123456"}).status_code == 403
    )
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    ):
        cross = client.post("/observe/logs/login", data={"token": TOKEN}, headers=headers)
        assert cross.status_code == 403, headers
    response = client.post("/observe/logs/login", data={"token": TOKEN})
    assert response.status_code == 303
    cookies = response.headers.getlist("Set-Cookie")
    # The viewer's page and API, and the console behind the same sign-in.
    assert {c.split("Path=")[1].split(";")[0] for c in cookies} == {
        "/api/logs",
        "/observe/logs",
        "/observe/console",
    }
    for cookie in cookies:
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie
    page = client.get("/observe/logs")
    assert page.status_code == 200
    assert TOKEN.encode() not in page.data
    assert client.get("/api/logs/files").status_code == 200
    assert client.get("/observe/logs/static/logviewer.js").status_code == 200
    assert client.post("/observe/logs/logout").status_code == 303
    assert client.get("/api/logs/files").status_code == 401
    forged = viewer_app(auth_token="another-7d7RBnttWOCKZAkEIoTP9XD_").test_client()
    forged.set_cookie(COOKIE_NAME, SessionSigner(TOKEN, 3600).issue(), path="/api/logs")
    assert forged.get("/api/logs/files").status_code == 401


def test_session_values_expire_and_cannot_be_altered() -> None:
    """A session is valid for its lifetime only; changing any part breaks the signature."""
    signer = SessionSigner(TOKEN, 60)
    value = signer.issue(now=1000.0)
    assert signer.valid(value, now=1030.0)
    assert not signer.valid(value, now=1061.0)
    expires, nonce, signature = value.split(".")
    assert not signer.valid(f"{int(expires) + 3600}.{nonce}.{signature}", now=1030.0)
    assert not signer.valid(value, now=0.0)  # issued "in the future": refused
    assert not SessionSigner("other-token-0123456789", 60).valid(value, now=1030.0)


def test_security_headers(viewer_app: Callable[..., Flask]) -> None:
    """The page forbids inline and third-party scripts; nothing is cached or framed."""
    client = viewer_app(
        logviewer_trace_url="http://jaeger.local:16686/trace/{trace_id}"
    ).test_client()
    page = client.get("/observe/logs", headers=AUTH)
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert b"http://jaeger.local:16686/trace/{trace_id}" in page.data
    assert b"<script>" not in page.data  # no inline script
    api = client.get("/api/logs/files", headers=AUTH)
    for response in (page, api):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


# -- the API --------------------------------------------------------------------------------


def test_search_by_correlation_id_finds_the_whole_request(viewer_app: Callable[..., Flask]) -> None:
    """A request's own lines and its access line share its ID; the search returns them,
    parsed, oldest first, and nothing else."""
    app = viewer_app()

    @app.get("/work")
    def work() -> str:
        logger.info("doing the work", extra={"platform": "twitter"})
        logger.error("it broke", extra={"platform": "twitter"})
        return "done"

    client = app.test_client()
    for rid in ("req-one", "req-two"):
        with client.get("/work", headers={"X-Request-ID": rid}):
            pass
    with client.get(
        "/api/logs/search?correlation_id=req-one&order=oldest", headers=AUTH
    ) as response:
        body = response.json
    assert response.status_code == 200
    messages = [r["record"]["message"] for r in body["results"]]
    assert messages == ["doing the work", "it broke", "GET /work 200"]
    assert {r["record"]["correlation_id"] for r in body["results"]} == {"req-one"}
    assert body["cursor"] is None
    assert body["partial"] is False
    with client.get(
        "/api/logs/search?level=error&field=platform=twitter", headers=AUTH
    ) as response:
        assert [r["record"]["correlation_id"] for r in response.json["results"]] == [
            "req-two",
            "req-one",
        ]


def test_files_and_tail(viewer_app: Callable[..., Flask]) -> None:
    """``/files`` lists active and rotated files with first/last timestamps; ``/tail`` gives
    the last lines oldest first."""
    app = viewer_app()
    log_lines(5, "before")
    file_handler(app).rotate()
    assert file_handler(app).wait_idle(10)
    log_lines(30, "after")
    client = app.test_client()
    files = client.get("/api/logs/files", headers=AUTH).json["files"]
    assert [f["active"] for f in files] == [True, False]
    assert files[1]["compressed"] is True
    assert files[1]["name"].endswith(".log.gz")
    assert files[0]["first_timestamp"] <= files[0]["last_timestamp"]
    tail = client.get("/api/logs/tail/app.log?lines=3&level=warning", headers=AUTH).json
    assert [r["record"]["message"] for r in tail["results"]] == ["line 27", "line 28", "line 29"]
    gz = client.get(f"/api/logs/tail/{files[1]['name']}?lines=2", headers=AUTH).json
    assert [r["record"]["message"] for r in gz["results"]] == ["line 3", "line 4"]


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/logs/search?limit=0", 400),
        ("/api/logs/search?limit=abc", 400),
        ("/api/logs/search?limit=99999999", 400),
        ("/api/logs/search?level=loud", 400),
        ("/api/logs/search?since=whenever", 400),
        ("/api/logs/search?regex=" + "x" * 300, 400),
        ("/api/logs/search?regex=(a%2B)%5C1", 400),
        ("/api/logs/search?regex=(%3F%3Da)", 400),
        ("/api/logs/search?regex=a%7B2000%7D", 400),
        ("/api/logs/search?regex=(", 400),
        ("/api/logs/search?correlation_id=a%20b", 400),
        ("/api/logs/search?trace_id=zz", 400),
        ("/api/logs/search?field=novalue", 400),
        ("/api/logs/search?q=hello", 400),
        ("/api/logs/search?cursor=AAAA", 400),
        ("/api/logs/search?order=up", 400),
        ("/api/logs/search?file=..%2F..%2Fetc%2Fpasswd", 400),
        ("/api/logs/search?file=missing.log", 404),
        ("/api/logs/tail/missing.log", 404),
        ("/api/logs/tail/app.log?lines=-1", 400),
        ("/api/logs/tail/app.log?cursor=x", 400),
        ("/api/logs/tail/app.log?follow=maybe", 400),
        ("/api/logs/tail/..%2F..%2Fetc%2Fpasswd", 404),
        ("/api/logs/tail/%2Fetc%2Fpasswd", 404),
        ("/api/logs/tail/..%5C..%5Cetc%5Cpasswd", 400),
        ("/api/logs/tail/%252e%252e%252fetc%252fpasswd", 400),
        ("/api/logs/tail/app.log%00.txt", 400),
        ("/observe/logs/static/..%2f..%2fviews.py", 404),
        ("/observe/logs/static/views.py", 404),
    ],
)
def test_bad_input_is_a_clear_4xx_never_a_5xx(
    viewer_app: Callable[..., Flask], url: str, status: int
) -> None:
    """Each bad request answers a JSON (or routing) 4xx naming the problem."""
    app = viewer_app()
    log_lines(2)
    response = app.test_client().get(url, headers=AUTH)
    assert response.status_code == status, response.data
    if response.mimetype == "application/json":
        assert response.json["error"]


def test_no_generated_name_escapes_over_http(
    viewer_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """Property over HTTP: 3000 generated names as the tail's path segment and as
    ``file=``: never a 5xx, never another file's content (a sibling ``logs_evil`` and a
    symlink to /etc/passwd are planted)."""
    import os

    app = viewer_app()
    log_lines(2, "mine")
    logs = tmp_path / "logs"
    evil = tmp_path / "logs_evil"
    evil.mkdir()
    (evil / "app.log").write_bytes(EVIL)
    os.symlink("/etc/passwd", logs / "app.20260102T000000-000.log")
    os.symlink(evil / "app.log", logs / "app.20260103T000000-000.log")
    client = app.test_client()
    statuses: dict[int, int] = {}
    leaks: list[str] = []

    def leaked(data: bytes) -> bool:
        return b"EVIL-SECRET" in data or b"root:" in data

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(NAMES, st.sampled_from(CORPUS)))
    def check(name: str) -> None:
        for url in (
            "/api/logs/tail/" + quote(name, safe=""),
            "/api/logs/search?file=" + quote(name, safe=""),
        ):
            response = client.get(url, headers=AUTH)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500 or leaked(response.data):
                leaks.append(name)

    check()
    assert leaks == []
    assert sum(statuses.values()) >= 6000
    assert set(statuses) <= {200, 400, 404, 405, 308}


# -- live tail ------------------------------------------------------------------------------


class EventReader:
    """A server-sent event client on a plain socket: reads events in a thread into a queue
    of ``(event, data, id)``; :meth:`close` drops the connection at once, as a browser
    closing the tab would."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.netloc, timeout=30)
        self.conn.request("GET", f"{parts.path}?{parts.query}", headers=headers)
        self.sock = self.conn.sock  # the response takes it over from the connection
        self.response = self.conn.getresponse()
        self.events: queue.Queue[tuple[str, Any, str | None]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if self.response.status == 200:
            self.thread.start()

    def _run(self) -> None:
        kind, data, ident = "message", b"", None
        try:
            while line := self.response.readline():
                line = line.rstrip(b"\r\n")
                if not line:
                    if data:
                        self.events.put((kind, orjson.loads(data), ident))
                    kind, data = "message", b""
                elif line.startswith(b"event: "):
                    kind = line[7:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
                elif line.startswith(b"id: "):
                    ident = line[4:].decode()
        except (OSError, http.client.HTTPException):  # closed by the test (mid-chunk too)
            return

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        if self.thread.is_alive():
            self.thread.join(5)
        self.response.close()  # the last reference to the socket: now it is really closed
        self.conn.close()

    def until(
        self, predicate: Callable[[tuple[str, Any, str | None]], bool], timeout: float = 10
    ) -> list[tuple[str, Any, str | None]]:
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:
                continue
            seen.append(event)
            if predicate(event):
                return seen
        raise AssertionError(f"no such event within {timeout}s; saw {seen}")


def _message(event: tuple[str, Any, str | None]) -> str | None:
    kind, data, _ = event
    return data["record"]["message"] if kind == "line" and "record" in data else None


@pytest.fixture
def stream() -> Iterator[Callable[..., EventReader]]:
    opened: list[EventReader] = []

    def open_stream(url: str, **headers: str) -> EventReader:
        reader = EventReader(url, {**AUTH, **headers})
        opened.append(reader)
        assert reader.response.status == 200, reader.response.read()
        assert reader.response.getheader("Content-Type", "").startswith("text/event-stream")
        return reader

    yield open_stream
    for reader in opened:
        reader.close()


def test_follow_streams_new_lines_and_survives_rotation(
    viewer_app: Callable[..., Flask], stream: Callable[..., EventReader]
) -> None:
    """``follow`` sends the last lines, then each new line; after the file is rotated (and
    gzipped) it goes on with the new file, nothing lost on the way."""
    app = viewer_app()
    log_lines(3, "old")
    handler = file_handler(app)
    with serving(app) as server:
        events = stream(f"{server.url}/api/logs/tail/app.log?follow=1&lines=2&level=warning")
        first = events.until(lambda e: e[0] == "ready")
        assert [_message(e) for e in first if e[0] == "line"] == ["line 1", "line 2"]
        logger.warning("before rotation")
        events.until(lambda e: _message(e) == "before rotation")
        logger.warning("just before the rename")
        handler.rotate()
        logger.warning("after rotation")
        seen = events.until(lambda e: _message(e) == "after rotation")
        kinds = [e[0] for e in seen]
        assert "rotated" in kinds
        assert [_message(e) for e in seen if e[0] == "line"] == [
            "just before the rename",
            "after rotation",
        ]
        assert kinds.index("rotated") < len(kinds) - 1


def test_follow_resumes_after_the_last_event_id(
    viewer_app: Callable[..., Flask], stream: Callable[..., EventReader]
) -> None:
    """A reconnecting EventSource sends Last-Event-ID: the stream goes on after that line,
    without repeating the tail."""
    app = viewer_app()
    log_lines(2, "x")
    with serving(app) as server:
        url = f"{server.url}/api/logs/tail/app.log?follow=1&lines=5&level=warning"
        events = stream(url)
        events.until(lambda e: e[0] == "ready")
        logger.warning("first live line")
        seen = events.until(lambda e: _message(e) == "first live line")
        last_id = seen[-1][2]
        assert last_id
        events.close()
        logger.warning("written while disconnected")
        again = stream(url, **{"Last-Event-ID": last_id})
        resumed = again.until(lambda e: _message(e) == "written while disconnected")
        assert [_message(e) for e in resumed if e[0] == "line"] == ["written while disconnected"]


@pytest.mark.realtime
def test_live_tails_are_limited(
    viewer_app: Callable[..., Flask], stream: Callable[..., EventReader]
) -> None:
    """Beyond OBSERVE_LOGVIEWER_MAX_FOLLOWERS open streams, a new one gets 429; closing one
    frees its slot. Following a rotated file is a 400."""
    app = viewer_app(logviewer_max_followers=1)
    log_lines(1)
    with serving(app) as server:
        url = f"{server.url}/api/logs/tail/app.log?follow=1&lines=1"
        first = stream(url)
        first.until(lambda e: e[0] == "ready")
        refused = requests.get(url, headers=AUTH, timeout=5)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        first.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server notices at its next write
            logger.warning("nudge")
            probe = EventReader(url, AUTH)
            status = probe.response.status
            probe.close()
            if status == 200:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the closed stream's slot was never freed")
    file_handler(app).rotate()
    assert file_handler(app).wait_idle(10)
    rotated = app.test_client().get("/api/logs/files", headers=AUTH).json["files"][1]["name"]
    response = app.test_client().get(f"/api/logs/tail/{rotated}?follow=1", headers=AUTH)
    assert response.status_code == 400


def test_searches_are_limited(viewer_app: Callable[..., Flask]) -> None:
    """With every search slot taken, another search is refused with 429 at once."""
    app = viewer_app(logviewer_max_concurrent=1)
    viewer = current_state(app).get(LogViewer)
    assert viewer is not None
    with viewer._slot():  # a search in progress
        response = app.test_client().get("/api/logs/search", headers=AUTH)
    assert response.status_code == 429
    assert app.test_client().get("/api/logs/search", headers=AUTH).status_code == 200


# -- catastrophic regular expressions -------------------------------------------------------

EVIL_PATTERNS = [
    r"(a+)+$",
    r"(a|aa)+$",
    r"(a|a?)+$",
    r"(.*a){12}",
    r"^(\w+\s?)*$",
    r"(x+x+)+y",
    r"((a+)+)+b",
    r"(a*)*b",
    r"([a-zA-Z]+)*$",
    r"(\d+)*\w!$",
    r"^(([a-z])+.)+[A-Z]([a-z])+$",
    r"(.*){1,1000}[bc]",
    r"(\w|\d|_)*\s\s\s$",
]
REFUSED_PATTERNS = [r"(a+)\1", r"(?=a)a", r"a{1001}", "a" * 257]


@pytest.mark.realtime
def test_catastrophic_regexes_answer_in_budget_and_the_app_stays_live(
    viewer_app: Callable[..., Flask],
) -> None:
    """Each pattern of the ReDoS catalogue answers (RE2: linear time) within the time budget
    plus a tolerance, or is refused with 400; meanwhile the app's /ping keeps answering as
    fast as before."""
    budget = 0.5
    app = viewer_app(logviewer_time_budget=budget)
    handler = file_handler(app)
    bait = '{"timestamp":"2026-09-21T10:00:00.000Z","level":"info","message":"' + "a" * 60 + '!"}'
    for _ in range(40_000):
        handler.write_line(bait, time.time())
    with serving(app) as server:
        session = requests.Session()

        def ping_latencies(stop: threading.Event, out: list[float]) -> None:
            while not stop.is_set():
                started = time.perf_counter()
                assert session.get(f"{server.url}/ping", timeout=5).text == "pong"
                out.append(time.perf_counter() - started)
                time.sleep(0.01)

        baseline: list[float] = []
        stop = threading.Event()
        pinger = threading.Thread(target=ping_latencies, args=(stop, baseline))
        pinger.start()
        time.sleep(1.0)
        stop.set()
        pinger.join()

        during: list[float] = []
        stop = threading.Event()
        pinger = threading.Thread(target=ping_latencies, args=(stop, during))
        pinger.start()
        searcher = requests.Session()
        rounds = 0
        started_all = time.monotonic()
        try:
            while rounds < 1 or time.monotonic() - started_all < 3.0:  # keep it busy a while
                rounds += 1
                for pattern in EVIL_PATTERNS + REFUSED_PATTERNS:
                    started = time.perf_counter()
                    response = searcher.get(
                        f"{server.url}/api/logs/search",
                        params={"regex": pattern, "limit": "1000"},
                        headers=AUTH,
                        timeout=30,
                    )
                    took = time.perf_counter() - started
                    if pattern in REFUSED_PATTERNS:
                        assert response.status_code == 400, pattern
                        continue
                    assert response.status_code == 200, (pattern, response.text)
                    assert took < budget + 1.0, (pattern, took)
        finally:
            stop.set()
            pinger.join()
    assert len(during) > 20
    assert statistics.median(during) < statistics.median(baseline) + 0.02
    # A search holding the interpreter for its budget would delay most pings taken during it;
    # one slow ping on a shared 2-core machine (a scheduler hiccup) is not that.
    assert statistics.quantiles(during, n=20)[-1] < 0.25, sorted(during)[-5:]
    assert max(during) < 1.0


# -- what sign-in reads, sign-out on every worker, the cookie's Secure flag (issue 10) -----

SAME_SITE = {"Sec-Fetch-Site": "same-origin"}
FORM = "application/x-www-form-urlencoded"


class Endless(io.RawIOBase):
    """A request body of ``size`` bytes (``token=aaaa…``) that counts what is read of it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.consumed, 65536)
        head = b"token="[self.consumed : self.consumed + n] if self.consumed < 6 else b""
        buffer[:n] = head + b"a" * (n - len(head))
        self.consumed += n
        return n


def test_sign_in_reads_a_few_kib_at_most_and_answers_413_beyond(
    viewer_app: Callable[..., Flask],
) -> None:
    """A 100 MB sign-in post is refused with 413: from its Content-Length without reading a
    byte, and, sent chunked (no Content-Length), after reading no more than the 4 KiB cap. A
    form at the cap with the right token still signs in. Every other route of flask_observe
    refuses a declared body above the cap; the host's limits and routes are unchanged."""
    app = viewer_app(metrics_auth=True)

    @app.post("/host-upload")
    def host_upload() -> dict[str, int]:
        return {"bytes": len(request.get_data())}

    client = app.test_client()
    declared = Endless(100 * 1024 * 1024)
    response = client.post(
        "/observe/logs/login",
        content_type=FORM,
        headers=SAME_SITE,
        environ_overrides={"wsgi.input": declared, "CONTENT_LENGTH": str(declared.size)},
    )
    assert response.status_code == 413
    assert declared.consumed == 0
    chunked = Endless(100 * 1024 * 1024)
    response = client.post(
        "/observe/logs/login",
        content_type=FORM,
        headers={**SAME_SITE, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": chunked, "wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert b"at most 4096 bytes" in response.data
    assert 4096 < chunked.consumed <= 4097
    padded = f"token={TOKEN}&pad=".encode()
    at_cap = padded + b"x" * (4096 - len(padded))
    assert client.post("/observe/logs/login", data=at_cap, content_type=FORM).status_code == 303
    too_big = at_cap + b"x"
    assert client.post("/observe/logs/login", data=too_big, content_type=FORM).status_code == 413
    for url in ("/api/logs/files", "/observe/logs", "/health/live", "/health", "/metrics"):
        assert client.get(url, data=b"x" * 5000, headers=AUTH).status_code == 413, url
        assert client.get(url, data=b"x" * 100, headers=AUTH).status_code == 200, url
    assert app.config["MAX_CONTENT_LENGTH"] is None
    assert client.post("/host-upload", data=b"x" * 1024 * 1024).json == {"bytes": 1024 * 1024}


def test_sign_out_ends_the_session_for_every_app_sharing_the_state(
    viewer_app: Callable[..., Flask],
) -> None:
    """Two apps with the same settings stand for two workers of one host. Signed in on one,
    the cookie opens the other; signed out on the second, both refuse it (page and API), for
    its whole remaining lifetime, while a new sign-in works. The ended session is forgotten
    once it would have expired anyway."""
    first, second = viewer_app(), viewer_app()
    clocks = ManualClock(), ManualClock()
    for app, clock in zip((first, second), clocks, strict=True):
        current_state(app).auth.clock = clock
    one, two = first.test_client(), second.test_client()
    assert one.post("/observe/logs/login", data={"token": TOKEN}).status_code == 303
    value = one.get_cookie(COOKIE_NAME, path="/api/logs").value
    two.set_cookie(COOKIE_NAME, value, path="/api/logs")
    two.set_cookie(COOKIE_NAME, value, path="/observe/logs")
    assert two.get("/api/logs/files").status_code == 200
    assert two.post("/observe/logs/logout", headers=SAME_SITE).status_code == 303
    replay = first.test_client()
    replay.set_cookie(COOKIE_NAME, value, path="/api/logs")
    replay.set_cookie(COOKIE_NAME, value, path="/observe/logs")
    for clock in clocks:
        clock.advance(3000)  # 10 minutes of its hour left
    assert replay.get("/api/logs/files").status_code == 401
    page = replay.get("/observe/logs")
    assert page.status_code == 401
    assert b'id="sign-in"' in page.data
    again = first.test_client()
    assert again.post("/observe/logs/login", data={"token": TOKEN}).status_code == 303
    assert again.get("/api/logs/files").status_code == 200
    store = current_state(first).auth.store
    assert store is not None
    assert store.revoked() == 1
    for clock in clocks:
        clock.advance(700)  # past the session's expiry
    assert again.post("/observe/logs/logout", headers=SAME_SITE).status_code == 303
    assert store.revoked() == 1  # the first one's row is gone, the new one's is there


def test_a_store_that_cannot_be_read_refuses_sessions_not_tokens(
    viewer_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """When ended sessions cannot be looked up, a session cookie is refused (it might have been
    ended); the bearer token still opens the viewer."""
    app = viewer_app()
    client = app.test_client()
    assert client.post("/observe/logs/login", data={"token": TOKEN}).status_code == 303
    store = current_state(app).auth.store
    assert store is not None
    store.close()
    store.path.unlink()
    store.path.mkdir()  # where the database was, a directory: it cannot be opened
    assert client.get("/api/logs/files").status_code == 401
    assert client.get("/api/logs/files", headers=AUTH).status_code == 200


def _sign_in_cookies(client: Any, **kwargs: Any) -> list[str]:
    response = client.post("/observe/logs/login", data={"token": TOKEN}, **kwargs)
    assert response.status_code == 303, response.data
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 3  # the viewer's page and API, the console
    return cookies


def _secure(cookies: list[str]) -> set[bool]:
    return {"; Secure" in cookie for cookie in cookies}


def test_the_cookie_is_secure_behind_a_tls_proxy_with_or_without_proxyfix(
    viewer_app: Callable[..., Flask],
) -> None:
    """Auto (the default): behind the host's ProxyFix, ``X-Forwarded-Proto: https`` makes it
    Secure; behind a proxy the app was not told about (plain HTTP to a public host name) it is
    Secure too; only plain HTTP on this machine (localhost, 127.0.0.1) goes without. The
    header alone is not trusted, and sign-out's deletion carries the same flag."""
    app = viewer_app()
    client = app.test_client()
    assert _secure(_sign_in_cookies(client)) == {False}  # http://localhost
    loopback = {"base_url": "http://127.0.0.1:5000"}
    assert _secure(_sign_in_cookies(client, **loopback)) == {False}
    assert _secure(_sign_in_cookies(client, base_url="http://[::1]:5000")) == {False}
    forged = {"X-Forwarded-Proto": "https"}
    assert _secure(_sign_in_cookies(client, headers=forged, **loopback)) == {False}
    assert _secure(_sign_in_cookies(client, base_url="http://logs.example.com")) == {True}
    assert _secure(_sign_in_cookies(client, base_url="https://127.0.0.1")) == {True}

    proxied = viewer_app()
    proxied.wsgi_app = ProxyFix(proxied.wsgi_app, x_proto=1, x_host=1)  # type: ignore[method-assign]
    behind = proxied.test_client()
    via_tls = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "logs.example.com"}
    assert _secure(_sign_in_cookies(behind, headers=via_tls, **loopback)) == {True}
    logout = behind.post("/observe/logs/logout", headers={**via_tls, **SAME_SITE}, **loopback)
    assert logout.status_code == 303
    deletions = logout.headers.getlist("Set-Cookie")
    assert len(deletions) == 3  # the viewer's page and API, the console
    assert _secure(deletions) == {True}


def test_the_secure_setting_forces_the_flag_either_way(viewer_app: Callable[..., Flask]) -> None:
    """``OBSERVE_LOGVIEWER_COOKIE_SECURE=true``: Secure even on http://localhost; ``false``:
    never, even over HTTPS (for plain HTTP on a network one trusts)."""
    always = viewer_app(logviewer_cookie_secure=True).test_client()
    assert _secure(_sign_in_cookies(always)) == {True}
    never = viewer_app(logviewer_cookie_secure="false").test_client()
    assert _secure(_sign_in_cookies(never, base_url="https://logs.example.com")) == {False}


def test_signing_in_over_plain_http_to_a_public_host_says_why_it_cannot_work(
    viewer_app: Callable[..., Flask],
) -> None:
    """A browser on plain HTTP (its Origin says so) to a host that is not this machine would
    drop the Secure cookie and loop back to the sign-in: the page says so and what to do."""
    client = viewer_app().test_client()
    response = client.post(
        "/observe/logs/login",
        data={"token": TOKEN},
        base_url="http://logs.example.com",
        headers={"Origin": "http://logs.example.com"},
    )
    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers
    assert b"OBSERVE_LOGVIEWER_COOKIE_SECURE" in response.data
    assert b"HTTPS" in response.data


def test_wrong_tokens_in_the_sign_in_form_are_throttled(viewer_app: Callable[..., Flask]) -> None:
    """The form shares the bearer token's throttle: after 10 wrong tokens the sign-in page
    answers 429 with Retry-After and says how long to wait, even for the right token."""
    app = viewer_app()
    clock = ManualClock()
    current_state(app).auth.clock = clock
    client = app.test_client()
    for i in range(10):
        assert client.post("/observe/logs/login", data={"token": f"wrong-{i}"}).status_code == 403
    throttled = client.post("/observe/logs/login", data={"token": TOKEN})
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "6"
    assert b"Try again in 6 seconds." in throttled.data
    assert "Set-Cookie" not in throttled.headers
    assert client.get("/api/logs/files", headers=AUTH).status_code == 429
    clock.advance(6)
    assert client.post("/observe/logs/login", data={"token": TOKEN}).status_code == 303


def test_a_hard_link_out_is_not_served(viewer_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Over HTTP: a hard link to an outside file, named like a rotated file, is not in
    ``/files``, ``/tail`` of it is a 404, and no search shows its content."""
    import os

    app = viewer_app()
    log_lines(2, "mine")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.log").write_bytes(EVIL)
    name = "app.20260106T000000-000.log"
    os.link(outside / "secret.log", tmp_path / "logs" / name)
    client = app.test_client()
    files = client.get("/api/logs/files", headers=AUTH)
    assert name not in [f["name"] for f in files.json["files"]]
    assert client.get(f"/api/logs/tail/{name}", headers=AUTH).status_code == 404
    assert client.get(f"/api/logs/search?file={name}", headers=AUTH).status_code == 404
    everything = client.get("/api/logs/search?limit=1000", headers=AUTH)
    assert everything.status_code == 200
    assert b"EVIL-SECRET" not in everything.data
