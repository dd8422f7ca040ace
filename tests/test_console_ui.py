"""The console's pages in a real browser: headless Chromium (Debian's) under Playwright, as
the log viewer's are. Sign-in through the viewer's form lands on the console; each page is
used with the keyboard; the CSP holds (no inline script or style is refused: the page's
error listener fails the test); markup planted in span attributes, error messages and logger
names stays text and runs nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from opentelemetry import trace

from flask_observe import Observe, capture_exception
from flask_observe.console import Console

from .conftest import LiveServer
from .test_logviewer_ui import browser, page, screenshot  # noqa: F401 - fixtures

pytestmark = pytest.mark.services

TOKEN = "console-ui-E3vmbeJbG21OBoymwMjJsl_o"
CONSOLE = "/observe/console"
#: Each would set window.__xss (or open a dialog) if it ever became markup.
XSS = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>window.__xss=2</script>"
XSS_LOGGER = "console_ui.<svg onload=window.__xss=3>"


@pytest.fixture
def console_server(make_app: Any, tmp_path: Path) -> Iterator[LiveServer]:
    app: Flask = make_app(
        "consoleui",
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        logviewer_enabled=True,
        logviewer_trace_url="http://127.0.0.1:16686/trace/{trace_id}",
        auth_token=TOKEN,
        tracing_enabled=True,
        tracing_exporter="none",
    )
    logging.getLogger(XSS_LOGGER).setLevel(logging.INFO)
    logging.getLogger("console_ui.scraper").setLevel(logging.INFO)

    @app.get("/scrape/<name>")
    def scrape(name: str) -> str:
        span = trace.get_current_span()
        span.set_attribute("scraper.account", XSS)
        span.add_event("fetched", {"note": XSS_SCRIPT})
        logging.getLogger("console_ui.scraper").warning("scraping %s", name)
        if name == "broken":
            raise RuntimeError(f"platform answered 503 {XSS_SCRIPT}")
        return "ok"

    @app.get("/handled")
    def handled() -> str:
        try:
            raise ValueError(XSS)
        except ValueError as exc:
            capture_exception(exc)
        return "handled"

    with LiveServer(app) as server:
        for path in ("/scrape/nasa", "/scrape/broken", "/scrape/broken", "/handled"):
            requests.get(
                server.url + path,
                headers={"X-Request-ID": f"ui{path.replace('/', '-')}"},
                timeout=10,
            )
        console = Observe.handle(Console, app)
        assert console.flusher is not None
        console.flusher.run_once()
        server.app = app  # type: ignore[attr-defined]
        yield server
    logging.getLogger(XSS_LOGGER).setLevel(logging.NOTSET)
    logging.getLogger("console_ui.scraper").setLevel(logging.NOTSET)


def no_xss(tab: Any) -> None:
    assert tab.evaluate("window.__xss === undefined")
    assert tab.locator("img[src=x]").count() == 0
    assert tab.locator("main script").count() == 0


def sign_in(tab: Any, url: str) -> None:
    tab.goto(url)
    tab.fill("#token", TOKEN)
    tab.keyboard.press("Enter")


def test_sign_in_lands_on_the_console_and_the_traces_pages_work_by_keyboard(
    console_server: LiveServer, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    answer = page.goto(f"{console_server.url}{CONSOLE}")
    assert answer.status == 401
    sign_in(page, f"{console_server.url}{CONSOLE}")
    landing = Observe.handle(Console, console_server.app).landing  # type: ignore[attr-defined]
    assert landing is not None
    expect(page).to_have_url(f"{console_server.url}{CONSOLE}/{landing.slug}")
    page.goto(f"{console_server.url}{CONSOLE}/traces")
    # The workload's four requests (and the sign-in's own: the viewer's page is traced).
    expect(page.locator("#traces tbody tr", has_text="GET /scrape/<name>")).to_have_count(3)
    expect(page.locator("#traces tbody tr", has_text="GET /handled")).to_have_count(1)
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Traces")
    screenshot(page, tmp_path, "console-traces")
    page.click("text=Failed")
    expect(page.locator("#traces tbody tr")).to_have_count(2)
    # Keyboard: the skip link, then into the table's first trace.
    page.keyboard.press("Tab")
    expect(page.locator("a.skip")).to_be_focused()
    page.locator("#traces tbody tr a").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("ol.waterfall li.span")).not_to_have_count(0)
    bar = page.locator(".waterfall .bar").first
    assert "%" in (bar.get_attribute("style") or "")  # placed by console.js, CSP-safe
    first = page.locator(".waterfall summary").first
    first.focus()
    page.keyboard.press("Enter")
    attributes = page.locator(".waterfall details[open] table").first
    expect(attributes).to_contain_text("scraper.account")
    expect(attributes).to_contain_text(XSS)  # shown as text
    expect(page.locator(".waterfall details[open]").first).to_contain_text(XSS_SCRIPT)
    expect(page.locator("#logs-link")).to_have_attribute(
        "href", "/observe/logs#correlation_id=ui-scrape-broken"
    )
    expect(page.locator("#jaeger-link")).to_have_attribute(
        "href",
        page.url.replace(f"{console_server.url}{CONSOLE}/traces/", "http://127.0.0.1:16686/trace/"),
    )
    screenshot(page, tmp_path, "console-trace")
    no_xss(page)
    # The link to the log lines opens the viewer on that request's lines.
    page.click("#logs-link")
    expect(page.locator("#results tbody tr.line").first).to_be_visible(timeout=10_000)
    expect(page.locator("#results")).to_contain_text("scraping broken")
    assert dialogs == []


def test_the_errors_pages_group_count_and_stay_text(
    console_server: LiveServer, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    sign_in(page, f"{console_server.url}{CONSOLE}/errors")
    expect(page).to_have_url(f"{console_server.url}{CONSOLE}/errors")
    rows = page.locator("#error-groups tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#error-groups")).to_contain_text("RuntimeError")
    screenshot(page, tmp_path, "console-errors")
    no_xss(page)
    page.locator("#error-groups a", has_text="RuntimeError").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#error-count")).to_have_text("2")
    expect(page.locator("#error-message")).to_contain_text(XSS_SCRIPT)
    expect(page.locator("pre.stack")).to_contain_text("scrape")
    expect(page.locator("a.trace-link")).to_have_count(2)
    screenshot(page, tmp_path, "console-error-group")
    no_xss(page)
    page.locator("a.trace-link").first.click()
    expect(page.locator("ol.waterfall li.span")).not_to_have_count(0)


def test_the_loggers_page_changes_a_level_by_keyboard_and_names_stay_text(
    console_server: LiveServer, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    sign_in(page, f"{console_server.url}{CONSOLE}/loggers")
    expect(page.locator("#loggers")).to_contain_text(XSS_LOGGER)
    no_xss(page)
    page.fill("input[name=q]", "console_ui")
    page.keyboard.press("Enter")
    row = page.locator("#loggers tbody tr", has_text="console_ui.scraper")
    row.locator("select").select_option("DEBUG")
    row.locator("button").focus()
    page.keyboard.press("Enter")
    expect(page.locator("p.notice")).to_contain_text("console_ui.scraper set")
    expect(page.locator("#changes")).to_contain_text("DEBUG")
    assert logging.getLogger("console_ui.scraper").level == logging.DEBUG
    screenshot(page, tmp_path, "console-loggers")
    page.locator("#changes button").first.click()
    expect(page.locator("p.notice")).to_contain_text("reset console_ui.scraper")
    assert logging.getLogger("console_ui.scraper").level == logging.INFO
    no_xss(page)


def test_the_info_page_masks_secrets(console_server: LiveServer, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    sign_in(page, f"{console_server.url}{CONSOLE}/info")
    expect(page.locator("main")).to_contain_text("flask-observe")
    expect(page.locator("main")).to_contain_text("OBSERVE_AUTH_TOKEN")
    assert TOKEN not in page.content()
    screenshot(page, tmp_path, "console-info")
