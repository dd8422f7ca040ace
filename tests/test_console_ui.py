"""The console's pages in a real browser: headless Chromium (Debian's) under Playwright, as
the log viewer's are. Sign-in through the viewer's form lands on the console; each page is
used with the keyboard; the CSP holds (no inline script or style is refused: the page's
error listener fails the test); markup planted in span attributes, error messages and logger
names stays text and runs nothing."""

from __future__ import annotations

import logging
import re
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


@pytest.fixture
def tab(page: Any) -> Any:  # noqa: F811 - the viewer's page fixture
    """A browser tab whose script errors and CSP refusals fail the test."""
    return page


def sign_in(tab: Any, url: str) -> None:
    tab.goto(url)
    tab.fill("#token", TOKEN)
    tab.keyboard.press("Enter")


def test_sign_in_lands_on_the_console_and_the_traces_pages_work_by_keyboard(
    console_server: LiveServer, tab: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    dialogs: list[str] = []
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    answer = tab.goto(f"{console_server.url}{CONSOLE}")
    assert answer.status == 401
    sign_in(tab, f"{console_server.url}{CONSOLE}")
    landing = Observe.handle(Console, console_server.app).landing  # type: ignore[attr-defined]
    assert landing is not None
    expect(tab).to_have_url(f"{console_server.url}{CONSOLE}/{landing.slug}")
    tab.goto(f"{console_server.url}{CONSOLE}/traces")
    # The workload's four requests (and the sign-in's own: the viewer's page is traced).
    expect(tab.locator("#traces tbody tr", has_text="GET /scrape/<name>")).to_have_count(3)
    expect(tab.locator("#traces tbody tr", has_text="GET /handled")).to_have_count(1)
    expect(tab.locator("nav a[aria-current=page]")).to_have_text("Traces")
    screenshot(tab, tmp_path, "console-traces")
    tab.click("text=Failed")
    expect(tab.locator("#traces tbody tr")).to_have_count(2)
    # Keyboard: the skip link, then into the table's first trace.
    tab.keyboard.press("Tab")
    expect(tab.locator("a.skip")).to_be_focused()
    tab.locator("#traces tbody tr a").first.focus()
    tab.keyboard.press("Enter")
    expect(tab.locator("ol.waterfall li.span")).not_to_have_count(0)
    bar = tab.locator(".waterfall .bar").first
    # Placed by console.js (CSP-safe) once it has run: waited for, as a loaded machine may
    # still be running it when the list is there.
    expect(bar).to_have_attribute("style", re.compile("%"))
    first = tab.locator(".waterfall summary").first
    first.focus()
    tab.keyboard.press("Enter")
    attributes = tab.locator(".waterfall details[open] table").first
    expect(attributes).to_contain_text("scraper.account")
    expect(attributes).to_contain_text(XSS)  # shown as text
    expect(tab.locator(".waterfall details[open]").first).to_contain_text(XSS_SCRIPT)
    expect(tab.locator("#logs-link")).to_have_attribute(
        "href", "/observe/logs#correlation_id=ui-scrape-broken"
    )
    expect(tab.locator("#jaeger-link")).to_have_attribute(
        "href",
        tab.url.replace(f"{console_server.url}{CONSOLE}/traces/", "http://127.0.0.1:16686/trace/"),
    )
    screenshot(tab, tmp_path, "console-trace")
    no_xss(tab)
    # The link to the log lines opens the viewer on that request's lines.
    tab.click("#logs-link")
    expect(tab.locator("#results tbody tr.line").first).to_be_visible(timeout=10_000)
    expect(tab.locator("#results")).to_contain_text("scraping broken")
    assert dialogs == []


def test_the_errors_pages_group_count_and_stay_text(
    console_server: LiveServer, tab: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    sign_in(tab, f"{console_server.url}{CONSOLE}/errors")
    expect(tab).to_have_url(f"{console_server.url}{CONSOLE}/errors")
    rows = tab.locator("#error-groups tbody tr")
    expect(rows).to_have_count(2)
    expect(tab.locator("#error-groups")).to_contain_text("RuntimeError")
    screenshot(tab, tmp_path, "console-errors")
    no_xss(tab)
    tab.locator("#error-groups a", has_text="RuntimeError").focus()
    tab.keyboard.press("Enter")
    expect(tab.locator("#error-count")).to_have_text("2")
    expect(tab.locator("#error-message")).to_contain_text(XSS_SCRIPT)
    expect(tab.locator("pre.stack")).to_contain_text("scrape")
    expect(tab.locator("a.trace-link")).to_have_count(2)
    screenshot(tab, tmp_path, "console-error-group")
    no_xss(tab)
    tab.locator("a.trace-link").first.click()
    expect(tab.locator("ol.waterfall li.span")).not_to_have_count(0)


def test_the_loggers_page_changes_a_level_by_keyboard_and_names_stay_text(
    console_server: LiveServer, tab: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    sign_in(tab, f"{console_server.url}{CONSOLE}/loggers")
    expect(tab.locator("#loggers")).to_contain_text(XSS_LOGGER)
    no_xss(tab)
    tab.fill("input[name=q]", "console_ui")
    tab.keyboard.press("Enter")
    row = tab.locator("#loggers tbody tr", has_text="console_ui.scraper")
    row.locator("select").select_option("DEBUG")
    row.locator("button").focus()
    tab.keyboard.press("Enter")
    expect(tab.locator("p.notice")).to_contain_text("console_ui.scraper set")
    expect(tab.locator("#changes")).to_contain_text("DEBUG")
    assert logging.getLogger("console_ui.scraper").level == logging.DEBUG
    screenshot(tab, tmp_path, "console-loggers")
    tab.locator("#changes button").first.click()
    expect(tab.locator("p.notice")).to_contain_text("reset console_ui.scraper")
    assert logging.getLogger("console_ui.scraper").level == logging.INFO
    no_xss(tab)


def test_the_info_page_masks_secrets(console_server: LiveServer, tab: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    sign_in(tab, f"{console_server.url}{CONSOLE}/info")
    expect(tab.locator("main")).to_contain_text("flask-observe")
    expect(tab.locator("main")).to_contain_text("OBSERVE_AUTH_TOKEN")
    assert TOKEN not in tab.content()
    screenshot(tab, tmp_path, "console-info")
