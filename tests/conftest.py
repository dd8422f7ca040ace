"""Shared fixtures: a fresh app per test, real servers on loopback, and service checks."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, abort
from werkzeug.serving import BaseWSGIServer, make_server

from flask_observe import Observe
from flask_observe.logging import ObserveFormatter
from flask_observe.logging.files import RotatingFileHandler

#: Set in CI: a test that needs PostgreSQL, Redis or a Celery worker fails instead of skipping.
REQUIRE_SERVICES = os.environ.get("OBSERVE_REQUIRE_SERVICES", "") not in ("", "0")


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or, when services are required, fail) unless ``host:port`` accepts connections."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc})"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; OBSERVE_REQUIRE_SERVICES is set", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def make_handler(tmp_path: Path) -> Iterator[Callable[..., RotatingFileHandler]]:
    """Build log file handlers (``tmp_path / name``, JSON lines of service ``svc``); each is
    closed afterwards. One process: ``quiet_seconds`` 0 unless given (nobody else writes the
    rotated files)."""
    handlers: list[RotatingFileHandler] = []

    def factory(name: str = "app.log", **kwargs: Any) -> RotatingFileHandler:
        kwargs.setdefault("quiet_seconds", 0)
        handler = RotatingFileHandler(tmp_path / name, **kwargs)
        handler.setFormatter(ObserveFormatter("svc"))
        handlers.append(handler)
        return handler

    yield factory
    for handler in handlers:
        handler.close()


def file_record(message: str, created: float | None = None) -> logging.LogRecord:
    """An INFO record of logger ``t`` (``created``: its time, if given)."""
    rec = logging.makeLogRecord({"name": "t", "msg": message, "levelno": 20, "levelname": "INFO"})
    if created is not None:
        rec.created = created
    return rec


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps with ``Observe`` on them; each is shut down (handlers removed) afterwards."""
    made: list[tuple[Observe, Flask]] = []

    def factory(name: str = "testapp", *, observe: bool = True, **config: Any) -> Flask:
        # Failed sign-ins and ended sessions are shared through a directory: one per test.
        config.setdefault("auth_state_dir", str(tmp_path / "auth-state"))
        app = Flask(name)
        app.config.update({f"OBSERVE_{k.upper()}": v for k, v in config.items()})
        if observe:
            ext = Observe()
            ext.init_app(app)
            made.append((ext, app))
        return app

    yield factory
    for ext, app in reversed(made):
        ext.shutdown(app)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file, each parsed as JSON (fails on a line that is not)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def parse_stdout(text: str) -> list[dict[str, Any]]:
    """JSON log lines from captured stdout (fails on a line that is not JSON)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class LiveServer:
    """A real threaded werkzeug server on 127.0.0.1 for a WSGI app."""

    def __init__(self, app: Any) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class HungServer:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers (it reads and
    discards what it is sent, and closes nothing until the end). ``accepted`` counts the
    connections it took."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.setblocking(False)
                self._conns.append(conn)
            except OSError:
                pass
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.recv(65536)

    def __enter__(self) -> HungServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._conns:
            conn.close()
        self.sock.close()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def assert_at_deadline(elapsed: float, deadline: float, tolerance: float = 0.3) -> None:
    """The failure arrived at its deadline, give or take ``tolerance`` seconds."""
    assert deadline - tolerance <= elapsed <= deadline + tolerance, (
        f"took {elapsed:.3f}s, deadline {deadline}s"
    )


@pytest.fixture
def logged_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    """An app logging to ``tmp_path/logs`` only, with a view that logs, one that fails and one
    that answers 403 (the logging and access-log tests)."""
    app = make_app("scraper", log_stdout=False, log_dir=str(tmp_path / "logs"))

    @app.get("/accounts/<int:account_id>")
    def account(account_id: int) -> dict[str, Any]:
        logging.getLogger("host.views").info("loading account", extra={"account_id": account_id})
        return {"id": account_id}

    @app.get("/broken")
    def broken() -> str:
        raise KeyError("missing")

    @app.get("/denied")
    def denied() -> str:
        abort(403)

    return app
