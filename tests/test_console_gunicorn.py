"""The console on the sample app under gunicorn with 4 workers after a scripted workload:
every worker's spans and errors land in the host's one store; the failing scrape's trace
shows its SQL and HTTP spans and links to its log lines; the error group counts each failure
whichever worker served it; a logger level set on one worker reaches all four. With
``OBSERVE_SCREENSHOTS=<dir>`` the pages are photographed in Chromium for docs/console.md."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flask_observe import Observe
from sample_app import create_app, observe
from sample_app.platform import create_platform_app

from .conftest import LiveServer
from .peers import free_port
from .test_logviewer_ui import browser, page, screenshot  # noqa: F401 - fixtures

pytestmark = [pytest.mark.realtime, pytest.mark.services]

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "console-gunicorn-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Connection": "close"}
CONSOLE = "/observe/console"
WORKERS = 4
FAILURES = 6


class Gunicorn:
    def __init__(self, tmp_path: Path, platform_url: str, db: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "gunicorn.log"
        self.log = self.log_path.open("w")
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "FLASK_SQLALCHEMY_DATABASE_URI": db,
            "FLASK_SCRAPER_PLATFORM_URL": platform_url,
            "FLASK_SCRAPER_SEED_DEMO": "false",
            "FLASK_OBSERVE_AUTH_TOKEN": TOKEN,
            "FLASK_OBSERVE_LOG_STDOUT": "false",
            "FLASK_OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            "FLASK_OBSERVE_LOGVIEWER_TRACE_URL": "http://127.0.0.1:16686/trace/{trace_id}",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        }
        (tmp_path / "prom").mkdir()
        env.pop("WEB_CONCURRENCY", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:flask_observe.contrib.gunicorn",
                "--workers",
                str(WORKERS),
                "--bind",
                f"127.0.0.1:{self.port}",
                "sample_app:create_app()",
            ],
            env=env,
            cwd=str(tmp_path),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health/live", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.3)
        self.stop()
        raise AssertionError("gunicorn did not start: " + self.log_path.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp_path = tmp_path_factory.mktemp("console-gunicorn")
    db = f"sqlite:///{tmp_path / 'scraper.db'}"
    seeded = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": db,
            "OBSERVE_LOG_STDOUT": False,
            "OBSERVE_LOG_DIR": str(tmp_path / "seed-logs"),
        }
    )
    observe.shutdown(seeded)
    platform = create_platform_app(
        latency_ms=5,
        failure_rate=0,
        OBSERVE_LOG_DIR=str(tmp_path / "logs"),
        OBSERVE_LOG_STDOUT=False,
    )
    with LiveServer(platform) as platform_server:
        server = Gunicorn(tmp_path, platform_server.url, db)
        try:
            yield {"server": server, "tmp_path": tmp_path, "workload": workload(server.url)}
        finally:
            server.stop()
            # The platform's own Observe (its Celery receivers, handlers) goes with it.
            Observe().shutdown(platform)


def workload(base: str) -> dict[str, Any]:
    """Scrapes of real accounts, scrapes of one that does not exist (404 from the platform:
    a failed run and a captured PlatformError each), a run of everything, a bad request."""
    ok, failed = [], []
    for i in range(12):
        handle = ("nasa", "github")[i % 2]
        answer = requests.post(
            f"{base}/api/scrapes",
            json={"platform": "twitter", "handle": handle},
            headers={"X-Request-ID": f"ok-{i}", "Connection": "close"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        ok.append(f"ok-{i}")
    for i in range(FAILURES):
        answer = requests.post(
            f"{base}/api/scrapes",
            json={"platform": "instagram", "handle": "ghost_account"},
            headers={"X-Request-ID": f"fail-{i}", "Connection": "close"},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "failed"
        failed.append(f"fail-{i}")
    requests.post(f"{base}/api/scrapes", json={"platform": "nope"}, timeout=10)
    time.sleep(2.5)  # every worker's flusher writes within a second
    return {"ok": ok, "failed": failed}


def get(base: str, path: str) -> Any:
    answer = requests.get(f"{base}{CONSOLE}/{path}", headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def test_the_failing_scrapes_trace_shows_sql_and_http_and_links_to_its_logs(
    served: dict[str, Any],
) -> None:
    base = served["server"].url
    traces = get(base, "traces?format=json").json()["traces"]
    by_request = {t["correlation_id"]: t for t in traces if t["correlation_id"]}
    for correlation in served["workload"]["ok"] + served["workload"]["failed"]:
        assert correlation in by_request, correlation
    failing = by_request["fail-0"]
    assert failing["name"] == "POST /api/scrapes"
    spans = get(base, f"traces/{failing['trace_id']}?format=json").json()["spans"]
    sql = [
        s for s in spans if "db.system" in s["attributes"] or "db.system.name" in s["attributes"]
    ]
    http = [s for s in spans if s["kind"] == "client" and s not in sql]
    assert sql, [s["name"] for s in spans]
    assert any(
        "ghost_account" in str(s["attributes"]) or "instagram" in str(s["attributes"]) for s in http
    )
    statements = " ".join(
        str(s["attributes"].get("db.statement") or s["attributes"].get("db.query.text"))
        for s in sql
    )
    assert "INSERT INTO" in statements
    assert any(
        s["attributes"].get("http.response.status_code") == 404
        or s["attributes"].get("http.status_code") == 404
        for s in http
    )
    html = get(base, f"traces/{failing['trace_id']}").text
    assert 'href="/observe/logs#correlation_id=fail-0"' in html
    assert f'href="http://127.0.0.1:16686/trace/{failing["trace_id"]}"' in html
    # Those log lines exist: the viewer finds the failed scrape under that correlation ID.
    lines = requests.get(
        f"{base}/api/logs/search", params={"correlation_id": "fail-0"}, headers=AUTH, timeout=10
    ).json()["results"]
    assert "account scrape failed" in {line.get("record", {}).get("message") for line in lines}
    # Several workers wrote into the one store.
    pids = {
        s["pid"]
        for t in traces[:20]
        for s in get(base, f"traces/{t['trace_id']}?format=json").json()["spans"]
    }
    assert len(pids) >= 2, pids


def test_the_error_group_counts_each_failure_from_every_worker(served: dict[str, Any]) -> None:
    base = served["server"].url
    groups = get(base, "errors?format=json").json()["groups"]
    platform = [g for g in groups if g["exc_type"] == "sample_app.scraper.PlatformError"]
    assert len(platform) == 1, groups
    assert platform[0]["count"] == FAILURES
    detail = get(base, f"errors/{platform[0]['fingerprint']}?format=json").json()
    assert {e["correlation_id"] for e in detail["events"]} == set(served["workload"]["failed"])
    assert len({e["pid"] for e in detail["events"]}) >= 2


def test_a_logger_level_set_on_one_worker_reaches_every_worker(served: dict[str, Any]) -> None:
    base = served["server"].url
    answer = requests.post(
        f"{base}{CONSOLE}/loggers",
        data={"logger": "sample_app", "level": "DEBUG"},
        headers={**AUTH, "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 303
    time.sleep(2.5)
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 20
    while len(seen) < WORKERS and time.monotonic() < deadline:
        html = get(base, "loggers?q=sample_app").text
        pid = re.search(r"Served by process (\d+)", html)
        table = html.split('id="loggers"', 1)[1]
        row = re.search(r'<td class="mono">sample_app(?:<| )[\s\S]*?</tr>', table)
        assert pid is not None
        assert row is not None
        effective = re.findall(r"<td>([A-Z]+)</td>", row[0])
        seen[pid[1]] = effective[-1]
    assert len(seen) == WORKERS, seen
    assert set(seen.values()) == {"DEBUG"}, seen
    requests.post(
        f"{base}{CONSOLE}/loggers",
        data={"logger": "sample_app", "action": "reset"},
        headers={**AUTH, "Sec-Fetch-Site": "same-origin"},
        timeout=10,
    )


def test_screenshots_of_each_page(served: dict[str, Any], page: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    base = served["server"].url
    tmp_path = served["tmp_path"]
    page.goto(f"{base}{CONSOLE}")
    page.fill("#token", TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("main h1")).to_be_visible()
    shots = ["traces", "traces/failed", "errors", "loggers?q=sample_app", "info"]
    for path in shots:
        page.goto(f"{base}{CONSOLE}/{path}")
        expect(page.locator("main h1")).to_be_visible()
        name = re.sub(r"[^a-z]+", "-", path.split("?")[0]).strip("-")
        screenshot(page, tmp_path, f"console-{name}")
    traces = get(base, "traces?format=json").json()["traces"]
    failing = next(t for t in traces if t["correlation_id"] == "fail-0")
    page.goto(f"{base}{CONSOLE}/traces/{failing['trace_id']}")
    screenshot(page, tmp_path, "console-trace")
    # The platform call that answered 404, opened, its attributes in view.
    call = page.locator(".waterfall li.span", has_text="instagram").locator("summary").first
    call.click()
    page.evaluate("document.querySelector('#waterfall-title').scrollIntoView()")
    screenshot(page, tmp_path, "console-trace-spans")
    groups = get(base, "errors?format=json").json()["groups"]
    page.goto(f"{base}{CONSOLE}/errors/{groups[0]['fingerprint']}")
    screenshot(page, tmp_path, "console-error-group")
