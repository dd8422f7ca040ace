"""flask_observe's paths and the host's own routes: a clash is refused at init_app, or warned
about where the host defines it later; never silently one of the two lost."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Blueprint, Flask

from flask_observe import ConfigError, Observe
from flask_observe.console.settings import ConsoleSettings
from flask_observe.console.setup import claim as console_claim
from flask_observe.health.settings import HealthSettings
from flask_observe.health.setup import _claim as health_claim
from flask_observe.logviewer.settings import LogViewerSettings
from flask_observe.logviewer.setup import _claims as logviewer_claims
from flask_observe.metrics.settings import MetricsSettings
from flask_observe.metrics.setup import _claim as metrics_claim

TOKEN = "k3Jv9QmZt1XwPq7LrB2sYd"


def host_app(name: str = "host") -> Flask:
    app = Flask(name)
    app.config["OBSERVE_LOG_STDOUT"] = False
    return app


@pytest.mark.parametrize(
    ("path", "methods", "key"),
    [
        ("/health", ["GET"], "OBSERVE_HEALTH_URL_PREFIX"),
        ("/health/ready", ["GET"], "OBSERVE_HEALTH_URL_PREFIX"),
        ("/health/", ["GET"], "OBSERVE_HEALTH_URL_PREFIX"),
        ("/metrics", ["GET", "POST"], "OBSERVE_METRICS_PATH"),
        ("/observe/logs", ["GET"], "OBSERVE_LOGVIEWER_UI_PATH"),
        ("/observe/logs/login", ["POST"], "OBSERVE_LOGVIEWER_UI_PATH"),
        ("/api/logs/search", ["GET"], "OBSERVE_LOGVIEWER_API_PREFIX"),
    ],
)
def test_a_host_route_at_one_of_our_paths_is_refused_at_init_app(
    tmp_path: Path, path: str, methods: list[str], key: str
) -> None:
    """The host's route exists first: init_app raises a ConfigError naming the route, the
    setting that moves ours and an example, and installs nothing (the host's route stays the
    only one at that path)."""
    app = host_app()
    app.config.update(
        OBSERVE_AUTH_TOKEN=TOKEN,
        OBSERVE_LOG_DIR=str(tmp_path / "logs"),
        OBSERVE_LOGVIEWER_ENABLED=True,
        OBSERVE_AUTH_STATE_DIR=str(tmp_path / "auth"),
    )
    app.add_url_rule(path, "mine", lambda: "the host's own", methods=methods)
    before = {rule.rule for rule in app.url_map.iter_rules()}
    with pytest.raises(ConfigError) as info:
        Observe(app)
    message = str(info.value)
    assert message.startswith(f"{key}: the app already has a route at {path!r}")
    assert "endpoint 'mine'" in message
    assert f"Move ours with {key} (e.g. {key}='/_observe/" in message
    assert "observe" not in app.extensions
    assert {rule.rule for rule in app.url_map.iter_rules()} == before
    assert app.test_client().open(path, method=methods[0]).text == "the host's own"


def test_another_method_or_a_moved_prefix_is_no_clash(make_app: Callable[..., Flask]) -> None:
    """``POST /health`` of the host beside our ``GET /health``; with
    ``OBSERVE_HEALTH_URL_PREFIX`` moved, the host keeps ``GET /health`` and ours answers at
    the new prefix."""
    app = make_app("moved", observe=False, log_stdout=False, health_url_prefix="/_observe/health")
    app.add_url_rule("/health", "mine", lambda: "the host's own")
    app.add_url_rule("/metrics", "push", lambda: "pushed", methods=["POST"])
    observe = Observe(app)
    try:
        client = app.test_client()
        assert client.get("/health").text == "the host's own"
        assert client.get("/_observe/health").json == {"status": "pass"}
        assert client.post("/metrics").text == "pushed"
        assert client.get("/metrics").text.startswith("# HELP")
    finally:
        observe.shutdown(app)


def test_a_route_added_later_that_ours_hides_is_warned_once_where_it_is_defined(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """``@app.get("/health")`` after ``Observe(app)``: werkzeug serves ours (added first), so
    the host's view is never reached; a warning says so once, with the file and line of the
    definition and the setting that moves ours. A route elsewhere is not warned about."""
    app = make_app("later", log_stdout=False)
    with caplog.at_level(logging.WARNING, logger="flask_observe"):

        @app.get("/health")
        def mine() -> str:
            return "the host's own"

        decorator = mine.__code__.co_firstlineno
        app.add_url_rule("/elsewhere", "elsewhere", lambda: "fine")
    (warning,) = [r for r in caplog.records if "is hidden" in r.getMessage()]
    message = warning.getMessage()
    assert message.startswith("flask_observe: the route '/health' (endpoint 'mine', GET)")
    where = re.search(r" added at (.+):(\d+) is hidden", message)
    assert where is not None
    assert where[1] == __file__
    assert int(where[2]) in (decorator, decorator + 1)  # the decorator's line, or the def's
    assert "OBSERVE_HEALTH_URL_PREFIX" in message
    assert warning.levelno == logging.WARNING
    # what the warning says is true: the host's view never answers
    assert app.test_client().get("/health").json == {"status": "pass"}
    assert app.test_client().get("/elsewhere").text == "fine"


def test_a_blueprint_registered_later_is_checked_too(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """Routes that arrive with a blueprint go through the same check."""
    app = make_app("bp", log_stdout=False)
    ops = Blueprint("ops", __name__)
    ops.add_url_rule("/metrics", "scrape", lambda: "mine")
    with caplog.at_level(logging.WARNING, logger="flask_observe"):
        app.register_blueprint(ops)
    (warning,) = [r for r in caplog.records if "is hidden" in r.getMessage()]
    assert "'/metrics' (endpoint 'ops.scrape', GET)" in warning.getMessage()
    assert "OBSERVE_METRICS_PATH" in warning.getMessage()


def test_the_watch_goes_with_shutdown(make_app: Callable[..., Flask]) -> None:
    """After ``observe.shutdown(app)`` the URL map's own ``add`` is back."""
    app = host_app("watched")
    observe = Observe(app)
    assert "add" in vars(app.url_map)
    observe.shutdown(app)
    assert "add" not in vars(app.url_map)


def test_the_claims_name_every_route_we_add(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """What the checks compare is exactly what the features register: every rule of
    flask_observe's endpoints (all features on) is in a claim, and every claimed path is
    served."""
    app = make_app(
        "all",
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        auth_token=TOKEN,
        logviewer_enabled=True,
    )
    config = app.extensions["observe"].config  # one dataclass holding every feature's keys
    assert isinstance(config, (HealthSettings, MetricsSettings, LogViewerSettings))
    assert isinstance(config, ConsoleSettings)
    claims = [
        health_claim(config),
        metrics_claim(config),
        *logviewer_claims(config),
        console_claim(config),
    ]
    claimed = {(path, methods) for claim in claims for path, methods in claim.routes}
    ours = {
        (rule.rule, frozenset(rule.methods or ()) - {"HEAD", "OPTIONS"})
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert {(path.rstrip("/") or "/", m) for path, m in claimed} == {
        (path.rstrip("/") or "/", m) for path, m in ours
    }
