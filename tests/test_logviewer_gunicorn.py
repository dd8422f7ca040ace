"""Live tails under real gunicorn: they never starve the app. With the shipped config
(threaded workers) two open tails stream while ``/`` and ``/health/live`` answer; with plain
sync workers a tail is refused with the reason (409) instead of holding the worker, and the
page falls back to polling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .test_logviewer_ui import browser  # noqa: F401 - the fixture
from .test_logviewer_views import EventReader
from .test_multiprocess import free_port

pytestmark = pytest.mark.realtime

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "gunicorn-viewer-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Server:
    """gunicorn serving tests/apps/viewer_app.py on a free loopback port."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"
        self.log = self.log_path.open("w")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VIEWER_LOG_DIR": str(tmp_path / "logs"),
            "VIEWER_TOKEN": TOKEN,
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.pop("WEB_CONCURRENCY", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *args,
                "--bind",
                f"127.0.0.1:{self.port}",
                "tests.apps.viewer_app:app",
            ],
            env=env,
            cwd=str(tmp_path),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health/live", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        self.stop()
        raise AssertionError("gunicorn did not start: " + self.log_path.read_text())

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(tmp_path, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def app_answers(server: Server, seconds: float = 3.0) -> list[float]:
    """``GET /`` and ``GET /health/live`` in turn for ``seconds``: each must answer 200
    within 5 s (gunicorn's worker timeout would have killed a starved worker by 30 s)."""
    took = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in ("/", "/health/live"):
            started = time.monotonic()
            response = requests.get(server.url + path, timeout=5)
            assert response.status_code == 200, (path, response.status_code)
            took.append(time.monotonic() - started)
        time.sleep(0.05)
    return took


def test_shipped_config_holds_two_live_tails_and_the_app_still_answers(
    gunicorn: Callable[..., Server],
) -> None:
    """``gunicorn -c python:flask_observe.contrib.gunicorn`` (2 workers by default): two
    live tails stream the app's own new lines while ``/`` and ``/health/live`` answer."""
    server = gunicorn("-c", "python:flask_observe.contrib.gunicorn")
    url = f"{server.url}/api/logs/tail/app.log?follow=1&lines=0&text=home%20page"
    tails = [EventReader(url, AUTH) for _ in range(2)]
    try:
        assert [t.response.status for t in tails] == [200, 200]
        for tail in tails:
            tail.until(lambda e: e[0] == "ready")
        took = app_answers(server)
        for tail in tails:
            tail.until(lambda e: e[0] == "line" and "home page served" in str(e[1]))
    finally:
        for tail in tails:
            tail.close()
    print(f"\nshipped config: {len(took)} answers with 2 tails open, slowest {max(took):.3f}s")
    assert "WORKER TIMEOUT" not in server.output()


def test_sync_workers_refuse_a_live_tail_with_the_reason_and_stay_free(
    gunicorn: Callable[..., Server],
) -> None:
    """Plain sync workers (gunicorn's default class, 2 workers): a live tail is refused at
    once (409, saying why and what to do) instead of holding a worker; the app answers; the
    polling tail (``after=``) gives the lines written since."""
    server = gunicorn("--workers", "2", "--worker-class", "sync")
    url = f"{server.url}/api/logs/tail/app.log?follow=1&lines=0"
    refused = [requests.get(url, headers=AUTH, timeout=5) for _ in range(2)]
    assert [r.status_code for r in refused] == [409, 409]
    reason = refused[0].json()["error"]
    assert "sync" in reason
    assert "gthread" in reason
    first = requests.get(
        f"{server.url}/api/logs/tail/app.log?lines=0&text=home%20page", headers=AUTH, timeout=5
    ).json()
    app_answers(server)
    polled = requests.get(
        f"{server.url}/api/logs/tail/app.log",
        params={"after": first["next"], "text": "home page"},
        headers=AUTH,
        timeout=5,
    ).json()
    assert polled["results"]
    assert all("home page served" in r["record"]["message"] for r in polled["results"])
    assert "WORKER TIMEOUT" not in server.output()


def test_a_cursor_from_one_worker_is_good_on_the_other(gunicorn: Callable[..., Server]) -> None:
    """Cursors are signed with a key derived from the token, so a search paged across the
    two workers (each page on a new connection) goes on, whichever worker answers."""
    server = gunicorn("-c", "python:flask_observe.contrib.gunicorn")
    for _ in range(40):
        requests.get(server.url + "/", timeout=5)
    cursor = None
    signed_by = ""  # the worker that answered the page the cursor came from
    crossed = 0  # pages one worker served with a cursor the other signed
    pages = 0
    # Sequential connections can all go to one worker (the kernel wakes the same accept
    # waiter): page on until a cursor of one worker has been taken by the other, starting the
    # search again whenever it runs out (40 lines, one a page).
    while crossed < 2 and pages < 3000:
        params = {"text": "home page", "limit": "1"}
        if cursor:
            params["cursor"] = cursor
        response = requests.get(
            f"{server.url}/api/logs/search", params=params, headers=AUTH, timeout=5
        )
        assert response.status_code == 200, response.text
        pid = response.headers["X-Worker-Pid"]
        body = response.json()
        if cursor and pid != signed_by:  # taken (a cursor it cannot verify is a 400)
            crossed += 1
        cursor, signed_by = body["cursor"], pid
        pages += 1
    assert crossed == 2


def test_the_page_polls_on_sync_workers(
    gunicorn: Callable[..., Server],
    browser: Any,  # noqa: F811 - the fixture imported above
) -> None:
    """In Chromium, on sync workers: Follow polls instead of streaming, says so, and shows
    the lines the app writes meanwhile; the app keeps answering."""
    from playwright.sync_api import expect

    server = gunicorn("--workers", "2", "--worker-class", "sync")
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(f"{server.url}/observe/logs")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.click("#tab-tail")
        page.fill("#tail-form input[name=lines]", "1")
        page.fill("#tail-form input[name=text]", "home page")
        page.click("#tail-start")
        expect(page.locator("#tail-status")).to_contain_text("polling", timeout=10_000)
        app_answers(server, seconds=1.0)
        rows = page.locator("#tail tbody tr.line", has_text="home page served")
        expect(rows.first).to_be_visible(timeout=10_000)
        app_answers(server, seconds=1.0)
    finally:
        context.close()
    assert errors == []
    assert "WORKER TIMEOUT" not in server.output()
