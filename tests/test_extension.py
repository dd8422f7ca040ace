"""The Observe extension: per-app state, init once, independence, shutdown."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from flask_observe import ConfigError, Observe, _optional, get_correlation_id
from flask_observe.correlation import CorrelationMiddleware
from flask_observe.state import current_state


def test_state_lives_in_app_extensions_not_on_the_extension(
    make_app: Callable[..., Flask],
) -> None:
    """init_app stores state in app.extensions['observe'] and keeps no app on the object."""
    ext = Observe()
    app = Flask("a")
    ext.init_app(app)
    try:
        assert current_state(app).service_name == "a"
        assert not any(isinstance(v, Flask) for v in vars(ext).values())
        assert isinstance(app.wsgi_app, CorrelationMiddleware)
    finally:
        ext.shutdown(app)


def test_second_init_app_raises() -> None:
    """A second init_app on the same app is refused with a sentence saying what to do."""
    app = Flask("twice")
    ext = Observe(app, log_stdout=False)
    try:
        with pytest.raises(RuntimeError, match="already been registered"):
            Observe(app)
        with pytest.raises(RuntimeError, match="Import and use that instance"):
            ext.init_app(app)
    finally:
        ext.shutdown(app)


def test_two_apps_in_one_process_are_independent(make_app: Callable[..., Flask]) -> None:
    """Two apps keep their own header name, service name and switches."""
    one = make_app("one", request_id_header="X-Trace-Token", log_stdout=False)
    two = make_app("two", correlation_enabled=False, log_stdout=False)

    @one.get("/")
    def one_view() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    @two.get("/")
    def two_view() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    r1 = one.test_client().get("/", headers={"X-Trace-Token": "token-1"})
    r2 = two.test_client().get("/", headers={"X-Request-ID": "token-2"})
    assert r1.headers["X-Trace-Token"] == "token-1"
    assert r1.json == {"id": "token-1"}
    assert "X-Request-ID" not in r2.headers
    assert r2.json == {"id": None}
    assert current_state(one).service_name == "one"
    assert current_state(two).service_name == "two"


def test_disabled_turns_everything_off(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_ENABLED=False installs no middleware and no handler."""
    before = list(logging.getLogger().handlers)
    app = make_app("off", enabled=False)
    assert not isinstance(app.wsgi_app, CorrelationMiddleware)
    assert logging.getLogger().handlers == before


def test_shutdown_undoes_init_app() -> None:
    """shutdown() unwraps the WSGI app, removes handlers and forgets the state."""
    before = list(logging.getLogger().handlers)
    app = Flask("undo")
    original = app.wsgi_app
    ext = Observe(app)
    assert logging.getLogger().handlers != before
    ext.shutdown(app)
    assert app.wsgi_app == original
    assert logging.getLogger().handlers == before
    assert "observe" not in app.extensions
    with pytest.raises(RuntimeError, match="not initialised"):
        current_state(app)


def test_failed_setup_leaves_nothing_behind(tmp_path: Path) -> None:
    """If a feature fails while it sets up, init_app removes what it had already installed."""
    before = list(logging.getLogger().handlers)
    app = Flask("broken")
    (tmp_path / "app.log").mkdir()  # the log file's path is taken by a directory
    app.config["OBSERVE_LOG_DIR"] = str(tmp_path)
    with pytest.raises(IsADirectoryError):
        Observe(app)
    assert logging.getLogger().handlers == before
    assert "observe" not in app.extensions


def test_a_log_dir_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    """A log directory whose path is a file is refused with the key's name, before anything
    is installed."""
    before = list(logging.getLogger().handlers)
    app = Flask("broken")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    app.config["OBSERVE_LOG_DIR"] = str(blocker)
    with pytest.raises(ConfigError, match=r"OBSERVE_LOG_DIR: .* is not a directory"):
        Observe(app)
    assert logging.getLogger().handlers == before
    assert "observe" not in app.extensions


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # the log viewer (late in FEATURES) without a way to sign in
        ({"OBSERVE_LOGVIEWER_ENABLED": True}, "OBSERVE_LOGVIEWER_ENABLED: the log viewer is never"),
        # the correlation feature (the last) with a URL where a host pattern belongs
        ({"OBSERVE_PROPAGATE_HOSTS": ["http://api.internal/"]}, "write 'api.internal'"),
        # alerting with a channel that cannot be built
        ({"OBSERVE_ALERT_CHANNELS": [{"type": "pager"}]}, "OBSERVE_ALERT_CHANNELS: channel 0"),
        # a cross-field rule of the SLO feature
        ({"OBSERVE_SLO_LATENCY_SECONDS": 0.3}, "OBSERVE_SLO_LATENCY_SECONDS: expected one of"),
        # values that were accepted and then never matched, or failed with a library's error
        ({"OBSERVE_TRACING_ENDPOINT": "not a url"}, "OBSERVE_TRACING_ENDPOINT: expected a"),
        (
            {"OBSERVE_ALERT_ALLOW_HOSTS": ["10.0.0.0/33"]},
            "OBSERVE_ALERT_ALLOW_HOSTS: '10.0.0.0/33'",
        ),
        (
            {
                "OBSERVE_ALERT_CHANNELS": [
                    {"type": "webhook", "url": "https://hooks.example.com/x", "severity": "x"}
                ]
            },
            "unknown field(s) 'severity'",
        ),
        ({"OBSERVE_ALERT_REDIS_URL": "localhost:6379"}, "OBSERVE_ALERT_REDIS_URL: expected a"),
        ({"OBSERVE_LOG_RETENTION_DAYS": "inf"}, "OBSERVE_LOG_RETENTION_DAYS: expected a finite"),
    ],
)
def test_a_late_features_bad_setting_is_refused_before_anything_is_installed(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    """Every feature's settings are checked before the first one is set up: a bad key of a
    late feature leaves no handler, middleware, route, patch or state behind."""
    from requests.adapters import HTTPAdapter

    app = Flask("late")
    app.config.update(OBSERVE_LOG_DIR=str(tmp_path / "logs"), **settings)
    handlers, send, wsgi = list(logging.getLogger().handlers), HTTPAdapter.send, app.wsgi_app
    rules = list(app.url_map.iter_rules())
    with pytest.raises(ConfigError, match=re.escape(message)):
        Observe(app)
    assert logging.getLogger().handlers == handlers
    assert HTTPAdapter.send is send
    assert app.wsgi_app == wsgi
    assert list(app.url_map.iter_rules()) == rules
    assert app.blueprints == {}
    assert "observe" not in app.extensions
    assert not (tmp_path / "logs").exists()  # not even the log directory was made


def test_a_missing_extra_the_environment_asks_for_is_a_warning_naming_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SENTRY_DSN and an OTLP endpoint set, sentry-sdk and the OpenTelemetry SDK not
    importable: the app starts with both off, and says so once each at WARNING, naming the
    extra to install (not only at DEBUG)."""
    monkeypatch.setenv("SENTRY_DSN", "https://key@sentry.example/1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    # None in sys.modules makes `import x` raise ImportError, as a missing package does.
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    monkeypatch.setattr(_optional, "_warned", set())
    caplog.set_level(logging.DEBUG, "flask_observe")
    apps = []
    for name in ("first", "second"):
        app = Flask(name)
        ext = Observe(app, log_stdout=False)
        apps.append((ext, app))
    try:
        assert "tracing" not in current_state(apps[0][1]).features
        # The capture layer is always on; its Sentry sink is what stays off.
        from flask_observe.errors.reporter import ErrorReporter

        assert current_state(apps[0][1]).get(ErrorReporter) is None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert [w for w in warnings if "flask-observe[sentry]" in w] == [
            "flask_observe: Sentry error reporting (a Sentry DSN is set) is off: the"
            " 'sentry_sdk' package is not installed: pip install \"flask-observe[sentry]\""
        ]
        assert len([w for w in warnings if 'pip install "flask-observe[tracing]"' in w]) == 1
    finally:
        for ext, app in apps:
            ext.shutdown(app)


def test_a_health_check_whose_driver_is_missing_fails_start_up_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RedisCheck without redis-py: registering it (on a running app, or before init_app for
    every app) raises MissingDependencyError with the extra, instead of the check answering
    "unknown error" at every probe."""
    from flask_observe import MissingDependencyError
    from flask_observe.health import RedisCheck

    monkeypatch.setitem(sys.modules, "redis", None)
    app = Flask("nodriver")
    observe = Observe(app, log_stdout=False)
    try:
        with pytest.raises(MissingDependencyError, match=r'pip install "flask-observe\[redis\]"'):
            observe.add_health_check(RedisCheck("cache", url="redis://127.0.0.1:6379/0"), app=app)
    finally:
        observe.shutdown(app)
    early = Observe()
    early.add_health_check(RedisCheck("cache", url="redis://127.0.0.1:6379/0"))
    later = Flask("later")
    with pytest.raises(MissingDependencyError, match="RedisCheck 'cache' needs the 'redis'"):
        early.init_app(later)
    assert "observe" not in later.extensions


def test_a_multiprocess_dir_that_does_not_exist_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROMETHEUS_MULTIPROC_DIR naming a missing directory: a ConfigError naming it, before
    anything is installed (it was prometheus_client's own error, mid-setup)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    app = Flask("multiproc")
    with pytest.raises(ConfigError, match=r"PROMETHEUS_MULTIPROC_DIR: .* is not a directory"):
        Observe(app, log_stdout=False)
    assert "observe" not in app.extensions
