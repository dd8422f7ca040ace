"""The overview, alerts and health history pages in a real browser (headless Chromium under
Playwright, as the log viewer's tests drive it).

The first test is the proof of the overview: the sample scraper under gunicorn with 4 workers
and the demo platform, a scripted workload (scrapes, requests that fail, the platform broken
for a while, an alert that fires and resolves); then the figures the overview shows for each
route and outbound host are the ones ``/metrics`` (every worker's, multiprocess) counts for
the same period, and the alert page shows the alert fired, resolved and sent. The second
plants hostile text in every place the pages show (a route, a task name, an alert's name and
summary, a check's output) and checks that none of it runs. Screenshots are saved next to
the test's files (and, with ``OBSERVE_SCREENSHOTS=<dir>``, there too).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from flask_observe import Observe
from flask_observe.alerting import Alert, AlertRouter
from flask_observe.console.overview import OverviewData
from flask_observe.console.rollups import TASK
from flask_observe.health.checks import CheckFailed, FunctionCheck
from flask_observe.health.runner import HealthRunner
from sample_app import create_app, observe
from sample_app.platform import create_platform_app

from .alert_sinks import Sink
from .conftest import LiveServer
from .test_logviewer_ui import browser, screenshot  # noqa: F401 (the Chromium fixture)
from .test_multiprocess import Gunicorn

pytestmark = [pytest.mark.services, pytest.mark.realtime]

TOKEN = "overview-ui-Wq3v9Lr8t2yHcB7nD4kPz"
BASE = "/observe/console"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE = re.compile(r"^(?P<name>[a-z_:]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:  # noqa: F811 (the fixture imported above)
    """A page whose script errors and CSP violations fail the test (as the viewer's)."""
    context = browser.new_context(viewport={"width": 1500, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page
    context.close()
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def metrics(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of ``/metrics`` as (name, labels, value)."""
    text = requests.get(url + "/metrics", timeout=10).text
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        found.append((match["name"], labels, float(match["value"])))
    return found


def per_series(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, Any]:
    """What the overview shows, as ``/metrics`` counts it: per route (requests, 5xx) and per
    outbound host (calls, failed calls)."""
    routes: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    hosts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for name, labels, value in samples:
        if name == "http_requests_total":
            routes[labels["route"]][0] += value
            if labels["status"].startswith("5"):
                routes[labels["route"]][1] += value
        elif name == "http_client_request_duration_seconds_count":
            hosts[labels["host"]][0] += value
        elif name == "http_client_errors_total":
            hosts[labels["host"]][1] += value
    return {
        "route": {k: (int(v[0]), int(v[1])) for k, v in routes.items()},
        "host": {k: (int(v[0]), int(v[1])) for k, v in hosts.items()},
    }


def bucket_bounds(
    samples: list[tuple[str, dict[str, str], float]], route: str, q: float
) -> tuple[float, float]:
    """The bounds of the ``/metrics`` histogram bucket holding the ``q`` quantile of
    ``route``'s durations."""
    cumulative: dict[float, float] = defaultdict(float)
    for name, labels, value in samples:
        if name == "http_request_duration_seconds_bucket" and labels["route"] == route:
            cumulative[float(labels["le"])] += value
    bounds = sorted(cumulative)
    rank = q * cumulative[bounds[-1]]
    lower = 0.0
    for bound in bounds:
        if cumulative[bound] >= rank:
            return lower, bound
        lower = bound
    return lower, float("inf")


def seconds_of(text: str) -> float:
    number, unit = text.split()
    return float(number) / (1000 if unit == "ms" else 1)


@pytest.fixture
def scraper(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The sample scraper under gunicorn (4 workers), the demo platform and an alert sink."""
    platform_app = create_platform_app(OBSERVE_LOG_STDOUT=False)
    with LiveServer(platform_app) as platform, Sink() as sink:
        db = f"sqlite:///{tmp_path / 'scraper.db'}"
        seeded = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": db,
                "OBSERVE_LOG_STDOUT": False,
                "OBSERVE_LOG_DIR": str(tmp_path / "seed-logs"),
                "SCRAPER_PLATFORM_URL": platform.url,
            }
        )
        observe.shutdown(seeded)
        env = {
            "FLASK_SQLALCHEMY_DATABASE_URI": db,
            "FLASK_SCRAPER_PLATFORM_URL": platform.url,
            "FLASK_SCRAPER_SEED_DEMO": "false",
            "FLASK_SCRAPER_BREAKER_RESET_SECONDS": "2",
            "FLASK_OBSERVE_LOG_STDOUT": "false",
            "FLASK_OBSERVE_LOG_DIR": str(tmp_path / "logs"),
            "FLASK_OBSERVE_AUTH_TOKEN": TOKEN,
            "FLASK_OBSERVE_SAMPLE_INTERVAL_SECONDS": "0.25",
            "FLASK_OBSERVE_ALERT_CHANNELS": json.dumps(
                [{"type": "webhook", "url": sink.url + "/hook", "name": "ops-webhook"}]
            ),
            "FLASK_OBSERVE_ALERT_ALLOW_HTTP": "true",
            "FLASK_OBSERVE_ALERT_ALLOW_HOSTS": '["127.0.0.1"]',
            "FLASK_OBSERVE_ALERT_RULES_CONSECUTIVE": "1",
            "FLASK_OBSERVE_ALERT_RESOLVE_AFTER_SECONDS": "1",
            "FLASK_OBSERVE_ALERT_ERROR_RATE_WINDOW_SECONDS": "2",
            "FLASK_OBSERVE_ALERT_ERROR_RATE": "0.2",
            "FLASK_OBSERVE_ALERT_COOLDOWN_SECONDS": "0",
        }
        app = Gunicorn(tmp_path, "sample_app:create_app()", "--workers", "4", env=env)
        try:
            yield {"url": app.url, "platform": platform.url, "sink": sink, "log": tmp_path}
        finally:
            app.stop()
    # The platform's Observe, in this process: its handlers and patches must not outlive us.
    Observe().shutdown(platform_app)


def test_the_overview_agrees_with_metrics_after_a_workload(
    scraper: dict[str, Any], tab: Any, tmp_path: Path
) -> None:
    page = tab
    url, platform, sink = scraper["url"], scraper["platform"], scraper["sink"]
    session = requests.Session()
    wait_for(lambda: session.get(url + "/health/ready", timeout=5).status_code == 200, 30, "ready")
    # 1. a healthy while: scrapes, reads, a few 404s
    for _ in range(3):
        assert session.post(url + "/api/scrapes", json={}, timeout=30).status_code == 201
    for _ in range(20):
        session.get(url + "/api/accounts", timeout=10)
    for _ in range(3):
        session.get(url + "/no/such/page", timeout=10)
    # 2. the platform breaks: every call answers 503 (scrapes fail, breakers open)
    chaos = {"failure_rate": 1.0, "failure_status": 503}
    assert session.put(platform + "/admin/chaos", json=chaos, timeout=5).ok
    for _ in range(4):
        session.post(url + "/api/scrapes", json={}, timeout=30)
    # 3. requests that fail, enough for the error-rate alert of every worker serving them
    for _ in range(60):
        session.get(url + "/api/debug/fail", headers=AUTH, timeout=10)
    wait_for(
        lambda: any(b and b.get("status") == "firing" for _, _, b in sink.received), 20, "firing"
    )
    # 4. the platform recovers; good traffic until the alert resolves
    assert session.put(platform + "/admin/chaos", json={"failure_rate": 0.0}, timeout=5).ok

    def resolved() -> bool:
        session.get(url + "/api/accounts", timeout=10)
        return any(b and b.get("status") == "resolved" for _, _, b in sink.received)

    wait_for(resolved, 30, "the alert to resolve")
    time.sleep(3)  # the breakers' reset timeout: a scrape closes them again
    for _ in range(2):
        session.post(url + "/api/scrapes", json={}, timeout=30)

    # Sign in first (the sign-in is a request too), then let every worker flush.
    page.goto(f"{url}{BASE}")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{BASE}/overview")
    time.sleep(2.0)  # 8 ticker rounds: every worker's rollups and history are written

    before = metrics(url)
    expected = per_series(before)
    page.goto(f"{url}{BASE}/overview?window=1h")
    shown: dict[str, dict[str, tuple[int, int]]] = {"route": {}, "host": {}}
    for kind in shown:
        for row in page.locator(f"#table-{kind} tbody tr[data-name]").all():
            name = row.get_attribute("data-name")
            count = int(row.locator("td.count").inner_text())
            errors = int(row.locator("td.errors").inner_text())
            shown[kind][name] = (count, errors)
    assert per_series(metrics(url)) == expected  # nothing moved meanwhile
    routes = {r: v for r, v in expected["route"].items() if v[0]}
    assert shown["route"] == routes
    assert shown["host"] == {h: v for h, v in expected["host"].items() if v[0]}
    # the workload is all there: the failures, the broken platform's calls, the 404s
    assert routes["/api/debug/fail"] == (60, 60)
    assert routes["<unmatched>"][0] >= 3
    host = next(iter(shown["host"].values()))
    assert host[1] > 0
    # p95 lies in (or beside: the rollups' buckets are finer) the /metrics bucket holding it
    p95 = page.locator("#table-route tr[data-name='/api/scrapes'] td.p95").inner_text()
    low, high = bucket_bounds(before, "/api/scrapes", 0.95)
    assert low / 1.2 <= seconds_of(p95) <= high * 1.2
    assert page.locator("svg.chart").count() == 3
    assert page.locator("#health-now").count() == 1
    assert page.locator("#breakers td.mono").first.inner_text() == "platform-api"
    screenshot(page, tmp_path, "console-overview")
    page.set_viewport_size({"width": 1500, "height": 1500})
    screenshot(page, tmp_path, "console-overview-full")
    page.set_viewport_size({"width": 1500, "height": 900})

    page.goto(f"{url}{BASE}/alerts")
    incident = page.locator("section.alert", has_text="HighErrorRate").first
    assert incident.locator(".status").inner_text() == "resolved"
    assert incident.locator("dd.fired").inner_text()
    assert "after" in incident.locator("dd.resolved").inner_text()
    outcomes = incident.locator("table.notifications tbody tr").all_inner_texts()
    assert any("firing" in o and "ops-webhook" in o and "sent" in o for o in outcomes)
    assert any("resolved" in o and "ops-webhook" in o and "sent" in o for o in outcomes)
    screenshot(page, tmp_path, "console-alerts")

    page.goto(f"{url}{BASE}/health")
    checks = page.locator("#transitions td.check").all_inner_texts()
    assert "platform-api-breaker" in checks
    screenshot(page, tmp_path, "console-health")


@pytest.fixture
def hostile_app(tmp_path: Path) -> Iterator[tuple[str, Flask]]:
    app = Flask("hostile")
    app.config.update(
        OBSERVE_LOG_STDOUT=False,
        OBSERVE_LOG_DIR=str(tmp_path / "logs"),
        OBSERVE_LOGVIEWER_ENABLED=True,
        OBSERVE_AUTH_TOKEN=TOKEN,
        OBSERVE_AUTH_STATE_DIR=str(tmp_path / "auth"),
    )
    with Sink() as sink:
        app.config.update(
            OBSERVE_ALERT_CHANNELS=[{"type": "webhook", "url": sink.url + "/h"}],
            OBSERVE_ALERT_ALLOW_HTTP=True,
            OBSERVE_ALERT_ALLOW_HOSTS=["127.0.0.1"],
        )
        ext = Observe(app)
        try:
            app.add_url_rule('/q/" autofocus onfocus="window.__xss=1', "q", lambda: ("no", 500))
            with LiveServer(app) as server:
                yield server.url, app
        finally:
            ext.shutdown(app)


XSS = "<img src=x onerror=window.__xss=1><script>window.__xss=2</script>"


def test_no_stored_xss_from_route_names_alert_text_or_check_output(
    hostile_app: tuple[str, Flask], tab: Any, tmp_path: Path
) -> None:
    page = tab
    url, app = hostile_app
    requests.get(url + '/q/" autofocus onfocus="window.__xss=1', timeout=5)
    data = Observe.handle(OverviewData, app)
    data.rollups.add(TASK, XSS, 0.2, True)
    runner = Observe.handle(HealthRunner, app)

    def broken() -> None:
        raise CheckFailed(f"down {XSS}")

    runner.add(FunctionCheck("hostile", critical=False, func=broken))
    with app.app_context():
        runner.run(fresh=True)
    router = Observe.handle(AlertRouter, app)
    router.notify(Alert(f"Evil{XSS}", "critical", summary=XSS, labels={"k": XSS}))
    assert router.flush(5)
    time.sleep(0.3)  # the hook of the request above ran after its response
    data.rollups.flush()
    data.history.flush()
    page.goto(f"{url}{BASE}/overview?window=5m")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{BASE}/overview*")
    for path in ("overview?window=5m", "alerts", "health"):
        page.goto(f"{url}{BASE}/{path}")
        page.keyboard.press("Tab")  # an injected autofocus/onfocus would fire now
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("img[src=x]").count() == 0
        assert page.locator("main script").count() == 0
    page.goto(f"{url}{BASE}/overview?window=5m")
    assert page.locator("#table-task td.name").inner_text() == XSS
    routes = page.locator("#table-route td.name").all_inner_texts()
    assert '/q/" autofocus onfocus="window.__xss=1' in routes
    page.goto(f"{url}{BASE}/alerts")
    assert page.locator("section.alert .summary").first.inner_text() == XSS
    page.goto(f"{url}{BASE}/health")
    assert XSS in page.locator("#transitions td.output").first.inner_text()
