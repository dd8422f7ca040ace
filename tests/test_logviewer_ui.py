"""The log viewer's page in a real browser: headless Chromium (Debian's) driven by Playwright.

The first test is what a new user does with the sample app: start it (viewer on, a token
printed at start-up), run a few scrapes, open the page from a failed run's correlation ID,
sign in, see that request's lines across the web request, the scraper and the platform,
then follow the live tail while another scrape runs. Screenshots are saved next to the
test's files (and, with ``OBSERVE_SCREENSHOTS=<dir>``, there too).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from flask_observe.context import reset_correlation_id, set_correlation_id

from .conftest import REQUIRE_SERVICES, LiveServer
from .peers import free_port

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN = "ui-E3vmbeJbG21OBoymwMjJsl_o"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (never ``playwright install``)."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(message + "; OBSERVE_REQUIRE_SERVICES is set", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1500, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    yield tab
    context.close()
    # Script errors and CSP violations ("Refused to ..."); a 401 sign-in page or a missing
    # favicon is a resource status, not an error of the page.
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []


def screenshot(tab: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    tab.screenshot(path=str(path), full_page=False)
    extra = os.environ.get("OBSERVE_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


class SampleApp:
    """``python -m sample_app`` as a newcomer runs it, its output collected."""

    def __init__(self, tmp_path: Path) -> None:
        self.port, platform_port = free_port(), free_port()
        env = dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            FLASK_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'scraper.db'}",
        )
        env.pop("FLASK_OBSERVE_AUTH_TOKEN", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sample_app",
                "--port",
                str(self.port),
                "--platform-port",
                str(platform_port),
                "--platform-failure-rate",
                "0",
                "--platform-latency-ms",
                "5",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.output.append(raw.decode(errors="replace"))

    def wait_up(self) -> str:
        """Wait for the app; return the token it printed."""
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if requests.get(f"{self.url}/api/accounts", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            pytest.fail("python -m sample_app did not come up:\n" + "".join(self.output[-50:]))
        for line in self.output:
            match = re.search(r"Access token for this process .*\): (\S+)", line)
            if match:
                return match[1]
        pytest.fail("no log viewer token printed:\n" + "".join(self.output[-50:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[SampleApp]:
    app = SampleApp(tmp_path)
    try:
        yield app
    finally:
        app.stop()


def test_new_user_finds_a_failed_scrape_and_follows_the_tail(
    sample: SampleApp, page: Any, tmp_path: Path
) -> None:
    """The sample app with its printed token: from a failed run's correlation ID on the
    scraper's page to every line of that request (scraper and platform), then the live tail
    showing a scrape triggered while it runs."""
    from playwright.sync_api import expect

    token = sample.wait_up()
    assert token not in (tmp_path / "logs" / "app.log").read_text()  # printed, never logged
    runs = [requests.post(f"{sample.url}/api/scrapes", timeout=30).json() for _ in range(3)]
    assert all(run["status"] == "partial" for run in runs)  # the ghost account always fails
    failed = runs[1]["correlation_id"]

    page.goto(f"{sample.url}/")
    page.click(f"a[href*='{failed}']")  # the run's correlation ID links into the viewer
    expect(page.locator("#token")).to_be_visible()  # sign in first
    page.fill("#token", token)
    page.click("button[type=submit]")

    rows = page.locator("#results tbody tr.line")
    expect(rows.first).to_be_visible(timeout=15_000)
    expect(page.locator("#search-form input[name=correlation_id]")).to_have_value(failed)
    text = page.locator("#results tbody").inner_text()
    assert "account scrape failed" in text
    assert "POST /api/scrapes 201" in text
    assert "scraper" in text
    assert "demo-platform" in text
    cids = set(page.locator("#results tbody button[data-correlation-id]").all_inner_texts())
    assert cids == {failed}
    screenshot(page, tmp_path, "logviewer-request")
    warning = page.locator("#results tbody tr.lvl-warning", has_text="account scrape failed")
    expect(warning).to_have_count(1)
    warning.click()
    expect(page.locator("#results tr.details pre")).to_contain_text('"handle": "ghost_account"')
    screenshot(page, tmp_path, "logviewer-details")

    page.click("#tab-tail")
    page.fill("#tail-form input[name=lines]", "5")
    page.click("#tail-start")
    expect(page.locator("#tail-status")).to_contain_text("live", timeout=10_000)
    live = requests.post(
        f"{sample.url}/api/scrapes", headers={"X-Request-ID": "live-tail-demo"}, timeout=30
    ).json()
    assert live["correlation_id"] == "live-tail-demo"
    finished = page.locator("#tail tbody tr.line", has_text="scrape run finished").filter(
        has_text="live-tail-demo"
    )
    expect(finished).to_have_count(1, timeout=15_000)
    screenshot(page, tmp_path, "logviewer-tail")

    # From the tail, a correlation ID opens that request's lines in the search tab.
    page.locator("#tail tbody button[data-correlation-id='live-tail-demo']").first.click()
    expect(page.locator("#search-panel")).to_be_visible()
    expect(page.locator("#results tbody tr.line").first).to_be_visible(timeout=10_000)
    shown = set(page.locator("#results tbody button[data-correlation-id]").all_inner_texts())
    assert shown == {"live-tail-demo"}


@pytest.fixture
def viewer_server(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[LiveServer]:
    app = make_app(
        "uiapp",
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        logviewer_enabled=True,
        auth_token=TOKEN,
        logviewer_trace_url="http://jaeger.example:16686/trace/{trace_id}",
    )
    with LiveServer(app) as server:
        yield server


def sign_in(tab: Any, url: str) -> None:
    tab.goto(url)
    tab.fill("#token", TOKEN)
    tab.click("button[type=submit]")


def test_page_renders_levels_traces_raw_lines_and_never_html_from_the_logs(
    viewer_server: LiveServer, page: Any, tmp_path: Path
) -> None:
    """Levels are coloured by class, a trace ID links to the configured Jaeger URL, a raw
    line shows as text, and markup in a log message stays text (no element is created)."""
    from playwright.sync_api import expect

    log = logging.getLogger("uitest")
    token = set_correlation_id("ui-req")
    try:
        log.info("all good", extra={"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})
        log.error('<img src=x onerror="window.pwned=1"> broke')
        log.critical("everything is on fire")
    finally:
        reset_correlation_id(token)
    with (tmp_path / "logs" / "app.log").open("a") as fh:
        fh.write("plain text from print()\n")
        # Levels no logger of ours writes: the page must not choke on them as class names.
        fh.write('{"timestamp":"2026-01-01T00:00:00.000Z","level":"very loud","message":"odd"}\n')
        fh.write('{"timestamp":"2026-01-01T00:00:01.000Z","level":{"x":1},"message":"odder"}\n')
    sign_in(page, f"{viewer_server.url}/observe/logs")
    expect(page.locator("#results tbody tr.line").first).to_be_visible(timeout=10_000)
    expect(page.locator("#results tbody tr.line", has_text="odd")).to_have_count(2)
    expect(page.locator("#results tbody tr.lvl-error")).to_have_count(1)
    expect(page.locator("#results tbody tr.lvl-critical")).to_have_count(1)
    expect(page.locator("#results tbody tr.raw")).to_contain_text("plain text from print()")
    link = page.locator("#results tbody td.trace a")
    expect(link).to_have_attribute(
        "href", "http://jaeger.example:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
    )
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert page.locator("#results img").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(page.locator("#results tbody")).to_contain_text('<img src=x onerror="window.pwned=1">')
    page.select_option("#search-form select[name=level]", "error")
    page.click("#search-button")
    expect(page.locator("#results tbody tr.line")).to_have_count(2)
    screenshot(page, tmp_path, "logviewer-levels")
    page.click("form.signout button")
    expect(page.locator("#token")).to_be_visible()


def test_in_chromium_a_cookie_put_back_after_sign_out_opens_nothing(
    viewer_server: LiveServer, page: Any
) -> None:
    """In a real browser: the sign-in cookie is HttpOnly, SameSite=Strict (not Secure on
    http://127.0.0.1); after sign-out, putting the old cookie back into the browser (as a
    thief who copied it would) gets the sign-in form, and the page's API calls get 401."""
    from playwright.sync_api import expect

    logging.getLogger("uitest").warning("only for the signed in")
    sign_in(page, f"{viewer_server.url}/observe/logs")
    expect(page.locator("#results tbody tr.line").first).to_be_visible(timeout=10_000)
    jar = [c for c in page.context.cookies() if c["name"] == "flask_observe_logs"]
    assert {c["path"] for c in jar} == {"/api/logs", "/observe/logs", "/observe/console"}
    assert all(c["httpOnly"] and c["sameSite"] == "Strict" and not c["secure"] for c in jar)
    page.click("form.signout button")
    expect(page.locator("#token")).to_be_visible()
    assert [c for c in page.context.cookies() if c["name"] == "flask_observe_logs"] == []
    page.context.add_cookies(jar)
    page.goto(f"{viewer_server.url}/observe/logs")
    expect(page.locator("#token")).to_be_visible()
    status = page.evaluate(
        "fetch('/api/logs/files', {credentials: 'same-origin'}).then(r => r.status)"
    )
    assert status == 401
