"""The console's error groups: unhandled errors and those captured by hand, grouped by
fingerprint across requests, counted, first and last seen, one stack trace scrubbed as the
Sentry path scrubs (no locals, no bodies, no cookies), linked to the trace and log lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from flask_observe import Observe, capture_exception
from flask_observe.console import Console
from flask_observe.console.errors import sentry_issues_url
from flask_observe.errors.scrub import MAX_TEXT

TOKEN = "console-nc4wYYxi2uxLGs9du5oF_uNr"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONSOLE = "/observe/console"
#: Secrets a careless app lets near an error: none may reach the console's pages or store.
CANARIES = {
    "local": "local-canary-5b1f0c",
    "body": "body-canary-a8e2d1",
    "cookie": "cookie-canary-77c3e9",
    "query": "query-canary-3d9b44",
    "password": "hunter2-canary-19af",
}


class PlatformError(Exception):
    pass


@pytest.fixture
def error_app(make_app: Callable[..., Flask], tmp_path: Path) -> Callable[..., Flask]:
    def factory(**config: Any) -> Flask:
        settings: dict[str, Any] = {
            "log_stdout": False,
            "log_dir": str(tmp_path / "logs"),
            "logviewer_enabled": True,
            "auth_token": TOKEN,
            "tracing_enabled": True,
            "tracing_exporter": "none",
        }
        settings.update(config)
        app = make_app("errorapp", **settings)

        @app.post("/scrape/<platform>")
        def scrape(platform: str) -> str:
            secret_local = CANARIES["local"]  # noqa: F841 - a local a frame must not carry
            _ = request.get_data()
            raise PlatformError(
                f"{platform} refused us: password={CANARIES['password']}"
                f" url=https://api.example/x?key={CANARIES['query']}"
            )

        @app.get("/handled")
        def handled() -> str:
            try:
                {}["missing"]
            except KeyError as exc:
                capture_exception(exc, job="nightly")
            return "handled"

        return app

    return factory


def flush(app: Flask) -> Console:
    console = Observe.handle(Console, app)
    assert console.flusher is not None
    console.flusher.run_once()
    return console


def test_each_failure_is_counted_in_its_group_with_first_and_last_seen(
    error_app: Callable[..., Flask],
) -> None:
    app = error_app()
    client = app.test_client()
    for i in range(3):
        answer = client.post(
            "/scrape/twitter",
            data=CANARIES["body"],
            headers={"X-Request-ID": f"fail-{i}", "Cookie": f"sid={CANARIES['cookie']}"},
        )
        assert answer.status_code == 500
    client.get("/handled")
    client.get("/handled")
    console = flush(app)
    assert console.errors is not None
    groups = {g.exc_type: g for g in console.errors.groups()}
    failure = groups[f"{__name__}.PlatformError"]
    assert failure.count == 3
    assert not failure.handled
    assert failure.first_seen <= failure.last_seen
    assert failure.route == "/scrape/<platform>"
    assert groups["KeyError"].count == 2
    assert groups["KeyError"].handled
    events = console.errors.events(failure.fingerprint)
    assert [e["correlation_id"] for e in events] == ["fail-2", "fail-1", "fail-0"]
    assert all(e["trace_id"] and len(e["trace_id"]) == 32 for e in events)

    page = client.get(f"{CONSOLE}/errors/{failure.fingerprint}", headers=AUTH)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<dd id="error-count">3</dd>' in html
    assert "in error_app.&lt;locals&gt;.factory.&lt;locals&gt;.scrape" in html  # the frame
    assert 'href="/observe/logs#correlation_id=fail-2"' in html
    assert f'href="{CONSOLE}/traces/{events[0]["trace_id"]}"' in html
    listing = client.get(f"{CONSOLE}/errors", headers=AUTH).get_data(as_text=True)
    assert f'href="{CONSOLE}/errors/{failure.fingerprint}"' in listing
    assert "unhandled" in listing


def test_no_secret_reaches_the_pages_or_the_store(error_app: Callable[..., Flask]) -> None:
    app = error_app()
    client = app.test_client()
    client.post(
        "/scrape/twitter", data=CANARIES["body"], headers={"Cookie": f"sid={CANARIES['cookie']}"}
    )
    console = flush(app)
    assert console.errors is not None
    (group,) = console.errors.groups()
    pages = [
        client.get(f"{CONSOLE}/errors", headers=AUTH).get_data(as_text=True),
        client.get(f"{CONSOLE}/errors/{group.fingerprint}", headers=AUTH).get_data(as_text=True),
        client.get(f"{CONSOLE}/errors?format=json", headers=AUTH).get_data(as_text=True),
    ]
    assert console.db is not None
    stored = console.db.path.read_bytes().decode("latin-1")
    for name, canary in CANARIES.items():
        for text in [*pages, stored]:
            assert canary not in text, name
    assert "twitter refused us: password=[Filtered]" in pages[1]


def test_errors_need_the_sign_in(error_app: Callable[..., Flask]) -> None:
    app = error_app()
    client = app.test_client()
    client.get("/handled")
    console = flush(app)
    assert console.errors is not None
    fingerprint = console.errors.groups()[0].fingerprint
    for path in ("errors", f"errors/{fingerprint}", "errors?format=json"):
        assert client.get(f"{CONSOLE}/{path}").status_code == 401, path
    assert client.get(f"{CONSOLE}/errors/{'f' * 16}", headers=AUTH).status_code == 404
    assert client.get(f"{CONSOLE}/errors/<script>", headers=AUTH).status_code == 404


def test_the_groups_are_bounded(error_app: Callable[..., Flask]) -> None:
    app = error_app(console_errors_max_groups=10)
    console = Observe.handle(Console, app)
    assert console.errors is not None
    with app.test_request_context():
        for i in range(25):
            try:
                raise type(f"Kind{i}", (Exception,), {})("boom")
            except Exception as exc:
                capture_exception(exc)
    flush(app)
    groups = console.errors.groups()
    assert len(groups) == 10
    assert groups[0].exc_type is not None
    assert groups[0].exc_type.endswith("Kind24")


@pytest.mark.parametrize(
    ("dsn", "url"),
    [
        ("https://abc123@o447951.ingest.sentry.io/5678", "https://sentry.io/issues/?project=5678"),
        ("https://abc@o1.ingest.us.sentry.io/42", "https://sentry.io/issues/?project=42"),
        ("http://key@sentry.internal:9000/3", "http://sentry.internal:9000/issues/?project=3"),
        ("not a dsn", None),
        ("https://key@host/not-a-number", None),
        (None, None),
    ],
)
def test_the_sentry_link_names_the_project_never_the_key(dsn: str | None, url: str | None) -> None:
    assert sentry_issues_url(dsn) == url


def test_a_huge_message_is_kept_capped(error_app: Callable[..., Flask]) -> None:
    """An exception's text may carry what a client sent: the group keeps what the scrubber
    keeps of it (its first 4 KiB, errors.scrub.MAX_TEXT), as the Sentry path does."""
    app = error_app()

    @app.get("/echo")
    def echo() -> str:
        try:
            raise ValueError("bad id " + request.args["id"])
        except ValueError as exc:
            capture_exception(exc)
        return "handled"

    assert app.test_client().get("/echo", query_string={"id": "x" * 100_000}).status_code == 200
    console = flush(app)
    assert console.errors is not None
    (group,) = [g for g in console.errors.groups() if g.exc_type == "ValueError"]
    assert group.message.startswith("bad id xxx")
    assert len(group.message) <= MAX_TEXT + 1  # and the ellipsis
