"""The console over HTTP: every route behind the log viewer's one sign-in (bearer token or
its session cookie, now also scoped to the console), the viewer's CSP on every page, pages
registered through :class:`~flask_observe.console.Console`, same-site posts only."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_observe import ConfigError, Observe
from flask_observe.console import Console, Page
from flask_observe.logviewer.session import COOKIE_NAME

TOKEN = "console-nc4wYYxi2uxLGs9du5oF_uNr"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONSOLE = "/observe/console"


@pytest.fixture
def console_app(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        settings: dict[str, Any] = {
            "log_stdout": False,
            "log_dir": str(tmp_path / "logs"),
            "logviewer_enabled": True,
            "auth_token": TOKEN,
        }
        settings.update(config)
        return make_app("consoleapp", **settings)

    return factory


def sign_in(client: Any, next_path: str = CONSOLE) -> Any:
    return client.post(
        "/observe/logs/login",
        data={"token": TOKEN, "next": next_path},
        headers={"Sec-Fetch-Site": "same-origin"},
    )


def test_console_is_on_with_the_log_viewer_and_off_without_it(
    console_app: Callable[..., Flask], make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    app = console_app()
    assert Observe.find(Console, app) is not None
    assert Observe.urls(app)["console"] == CONSOLE
    plain = make_app("plain", log_stdout=False, log_dir=str(tmp_path / "other"))
    assert Observe.find(Console, plain) is None
    with pytest.raises(ConfigError, match="OBSERVE_CONSOLE_ENABLED"):
        make_app("asked", log_stdout=False, console_enabled=True)


def test_every_console_route_needs_the_sign_in(console_app: Callable[..., Flask]) -> None:
    app = console_app()
    client = app.test_client()
    paths = [CONSOLE, f"{CONSOLE}/info", f"{CONSOLE}/info/config.json", f"{CONSOLE}/nope"]
    for path in paths:
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert b"Access token" in answer.data  # the sign-in form, not the page
        assert b"OBSERVE_SERVICE_VERSION" not in answer.data
    assert client.get(f"{CONSOLE}/static/console.css").status_code == 401
    assert client.post(f"{CONSOLE}/info").status_code == 401
    assert (
        client.get(f"{CONSOLE}/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    assert client.get(f"{CONSOLE}/info", headers=AUTH).status_code == 200


def test_the_viewers_sign_in_lets_the_console_in_and_comes_back(
    console_app: Callable[..., Flask],
) -> None:
    app = console_app()
    client = app.test_client()
    form = client.get(f"{CONSOLE}/info")
    assert re.search(rb'name="next" value="/observe/console/info"', form.data)
    answer = sign_in(client, f"{CONSOLE}/info")
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"{CONSOLE}/info"
    paths = {c.split("Path=")[1].split(";")[0] for c in answer.headers.getlist("Set-Cookie")}
    assert paths == {"/api/logs", "/observe/logs", CONSOLE}
    page = client.get(f"{CONSOLE}/info")
    assert page.status_code == 200
    assert page.headers["Content-Security-Policy"].startswith(
        "default-src 'none'; script-src 'self';"
    )
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    # Sign-out ends the session for the console too.
    out = client.post("/observe/logs/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert out.status_code == 303
    cookie = answer.headers.getlist("Set-Cookie")[0].split(";")[0].split("=", 1)[1]
    client.set_cookie(COOKIE_NAME, cookie, path=CONSOLE)
    assert client.get(f"{CONSOLE}/info").status_code == 401


def test_sign_in_never_sends_the_browser_elsewhere(console_app: Callable[..., Flask]) -> None:
    app = console_app()
    for target in ("https://evil.example/", "//evil.example/x", "/elsewhere", "/observe/consolex"):
        answer = sign_in(app.test_client(), target)
        assert answer.headers["Location"] == "/observe/logs", target


def test_the_console_leads_to_the_first_page_and_pages_can_be_added(
    console_app: Callable[..., Flask],
) -> None:
    app = console_app()
    console = Observe.handle(Console, app)
    client = app.test_client()
    assert client.get(CONSOLE, headers=AUTH).headers["Location"] == f"{CONSOLE}/overview"
    seen: list[str] = []

    def first(rest: str) -> Any:
        seen.append(rest)
        return console.render("observe_console/error.html", page="first", description="hi <b>")

    console.add_page(Page("first", "First", first, order=-1, methods=("GET", "POST")))
    assert client.get(CONSOLE, headers=AUTH).headers["Location"] == f"{CONSOLE}/first"
    page = client.get(f"{CONSOLE}/first/a/b", headers=AUTH)
    assert seen == ["a/b"]
    assert b"hi &lt;b&gt;" in page.data
    assert b'aria-current="page">First</a>' in page.data
    nav = page.data.index(b">First<"), page.data.index(b">Info<")
    assert nav[0] < nav[1]
    # A cross-site post is refused before the page sees it.
    cross = client.post(f"{CONSOLE}/first", headers={**AUTH, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert seen == ["a/b"]
    with pytest.raises(ValueError, match="already"):
        console.add_page(Page("first", "Again", first))
    with pytest.raises(ValueError, match="slug"):
        Page("bad/slug", "Bad", first)


def test_info_shows_versions_and_the_settings_with_secrets_masked(
    console_app: Callable[..., Flask],
) -> None:
    app = console_app(
        sentry_dsn="https://abcdef0123456789@o1.ingest.sentry.io/42",
        sentry_enabled=False,
        logviewer_trace_url="http://ops:pw-canary-77@jaeger:16686/trace/{trace_id}",
    )
    client = app.test_client()
    page = client.get(f"{CONSOLE}/info", headers=AUTH)
    assert page.status_code == 200
    assert b"flask-observe" in page.data
    assert b"OBSERVE_LOGVIEWER_ENABLED" in page.data
    assert TOKEN.encode() not in page.data
    assert b"abcdef0123456789" not in page.data
    config = client.get(f"{CONSOLE}/info/config.json", headers=AUTH).get_json()
    assert config["OBSERVE_AUTH_TOKEN"] == "<set>"
    assert config["OBSERVE_SENTRY_DSN"] == "<set>"
    assert config["OBSERVE_LOGVIEWER_TRACE_URL"] == "http://ops:<set>@jaeger:16686/trace/{trace_id}"
    assert b"pw-canary-77" not in page.data
    assert "console" in config["features_on"]
