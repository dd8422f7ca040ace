"""One access mechanism for sensitive endpoints: bearer token or host callback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask, Request

from flask_observe import ConfigError, Observe
from flask_observe.state import current_state

TOKEN = "s3cret-token-0123456789"


def guarded_app(make_app: Callable[..., Flask], **config: object) -> Flask:
    app = make_app("authapp", log_stdout=False, **config)
    auth = current_state(app).auth

    @app.get("/secret")
    @auth.require
    def secret() -> str:
        return "the details"

    return app


def test_token_grants_access_and_absence_is_401(make_app: Callable[..., Flask]) -> None:
    """No credentials: 401 with a Bearer challenge; right token: 200; wrong token: 403."""
    client = guarded_app(make_app, auth_token=TOKEN).test_client()
    anonymous = client.get("/secret")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"the details" not in anonymous.data
    assert (
        client.get("/secret", headers={"Authorization": f"Bearer {TOKEN}"}).data == b"the details"
    )
    wrong = client.get("/secret", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 403
    assert client.get("/secret", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401


def test_nothing_configured_means_nobody_gets_in(make_app: Callable[..., Flask]) -> None:
    """With no token and no callback, even an empty bearer token is refused."""
    client = guarded_app(make_app).test_client()
    assert client.get("/secret").status_code == 401
    assert client.get("/secret", headers={"Authorization": "Bearer "}).status_code == 401
    assert not current_state(client.application).auth.configured


def test_callback_decides_and_a_raising_callback_refuses(make_app: Callable[..., Flask]) -> None:
    """The host callback is asked instead of the token; if it raises, access is refused."""

    def only_admins(request: Request) -> bool:
        if request.headers.get("X-Role") == "boom":
            raise RuntimeError("auth backend down")
        return request.headers.get("X-Role") == "admin"

    client = guarded_app(make_app, auth_callback=only_admins, auth_token=TOKEN).test_client()
    assert client.get("/secret", headers={"X-Role": "admin"}).status_code == 200
    assert client.get("/secret", headers={"X-Role": "user"}).status_code == 403
    assert client.get("/secret", headers={"X-Role": "boom"}).status_code == 403
    # The token is not a way around the host's decision.
    assert client.get("/secret", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 403


def test_callback_from_an_import_string(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_AUTH_CALLBACK accepts 'module:attr' (so it can come from the environment)."""
    client = guarded_app(make_app, auth_callback="tests.test_auth:allow_all").test_client()
    assert client.get("/secret").status_code == 200


def allow_all(request: Request) -> bool:
    return True


@pytest.mark.parametrize("value", ["short", 12345678901234567890])
def test_weak_token_fails_start_up_without_echoing_it(value: object) -> None:
    """A token under 16 characters stops init_app; the message never shows the value."""
    app = Flask("weak")
    app.config["OBSERVE_AUTH_TOKEN"] = value
    with pytest.raises(ConfigError) as info:
        Observe(app)
    assert str(info.value).startswith("OBSERVE_AUTH_TOKEN:")
    assert str(value) not in str(info.value)


def test_token_is_not_in_the_config_repr() -> None:
    """repr(config) (tracebacks, debug output) does not show the token."""
    app = Flask("repr")
    app.config.update(OBSERVE_AUTH_TOKEN=TOKEN, OBSERVE_LOGGING_ENABLED=False)
    ext = Observe(app)
    try:
        assert TOKEN not in repr(current_state(app).config)
        assert TOKEN not in repr(current_state(app))
    finally:
        ext.shutdown(app)


#: Routes anyone may call; they answer the status and nothing else without credentials.
PUBLIC_STATUS = {"/health/live", "/health/ready", "/health/startup", "/health"}


def test_route_table_every_route_observe_adds_needs_credentials_or_shows_only_a_status(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """With every feature on, each route flask_observe registers (health, /metrics behind
    auth, the log viewer's API, page, assets and sign-in/out) answers 401/403 to no and to
    wrong credentials, except the probes, which show ``{"status": …}`` only. A route a feature
    adds later without auth fails here."""
    app = make_app(
        "routes",
        log_stdout=False,
        log_dir=str(tmp_path),
        auth_token=TOKEN,
        metrics_auth=True,
        logviewer_enabled=True,
        alert_channels=[{"type": "webhook", "url": "https://hooks.example.com/x"}],
    )
    logging.getLogger("routes").warning("a line only the authorised may read")
    routes = [
        (method, rule.rule.replace("<file_name>", "app.log").replace("<name>", "logviewer.js"))
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    ]
    assert {url for _, url in routes} >= PUBLIC_STATUS | {"/metrics", "/api/logs/search"}
    client = app.test_client()
    for method, url in routes:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}-wrong"}):
            with client.open(url, method=method, headers=headers) as response:
                if url in PUBLIC_STATUS:
                    assert set(response.json or {}) == {"status"}, (url, response.data)
                else:
                    assert response.status_code in (401, 403), (method, url, headers)
                assert b"only the authorised" not in response.data
    # The same routes do open with the token (the refusals above are not vacuous).
    authorised = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/metrics", headers=authorised).status_code == 200
    assert len(client.get("/health", headers=authorised).json) > 1
    found = client.get("/api/logs/search?text=authorised", headers=authorised).json
    assert [r["record"]["message"] for r in found["results"]] == [
        "a line only the authorised may read"
    ]
