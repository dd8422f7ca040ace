"""Shared fixtures: a fresh app per test, real servers on loopback, and service checks."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from flask_observe import Observe

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
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps with ``Observe`` on them; each is shut down (handlers removed) afterwards."""
    made: list[tuple[Observe, Flask]] = []

    def factory(name: str = "testapp", *, observe: bool = True, **config: Any) -> Flask:
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
