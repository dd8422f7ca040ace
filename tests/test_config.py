"""Config: defaults in one place, env values, validation errors that name the key."""

from __future__ import annotations

import dataclasses

import pytest
from flask import Flask

from flask_observe import ConfigError, Observe, ObserveConfig
from flask_observe.config import config_keys, load_config
from flask_observe.state import current_state


def test_every_field_has_a_key_and_default() -> None:
    """config_keys(ObserveConfig) lists OBSERVE_<FIELD> for every field of ObserveConfig."""
    keys = config_keys(ObserveConfig)
    assert set(keys) == {f"OBSERVE_{f.name.upper()}" for f in dataclasses.fields(ObserveConfig)}
    assert keys["OBSERVE_REQUEST_ID_HEADER"] == "X-Request-ID"
    assert keys["OBSERVE_ACCESS_LOG_REMOTE_ADDR"] is False


def test_config_is_frozen() -> None:
    """The validated config cannot be changed after init_app."""
    config = load_config(ObserveConfig, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.log_level = "DEBUG"  # type: ignore[misc]


def test_environment_variables_through_from_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """FLASK_OBSERVE_* variables reach the config through app.config.from_prefixed_env()."""
    monkeypatch.setenv("FLASK_OBSERVE_LOG_LEVEL", "debug")
    monkeypatch.setenv("FLASK_OBSERVE_LOG_STDOUT", "false")
    monkeypatch.setenv("FLASK_OBSERVE_LOG_ROTATE_BYTES", "2048")
    monkeypatch.setenv("FLASK_OBSERVE_PROPAGATE_HOSTS", "api.example.com, *.internal:8443")
    monkeypatch.setenv("FLASK_OBSERVE_LOG_LEVELS", "sqlalchemy.engine=WARNING,urllib3=ERROR")
    monkeypatch.setenv("FLASK_OBSERVE_EXCLUDED_PATHS", '["^/ping$"]')
    app = Flask("envapp")
    app.config.from_prefixed_env()
    ext = Observe(app)
    try:
        config = current_state(app).config
        assert config.log_level == "DEBUG"
        assert config.log_stdout is False
        assert config.log_rotate_bytes == 2048
        assert config.propagate_hosts == ("api.example.com", "*.internal:8443")
        assert dict(config.log_levels) == {"sqlalchemy.engine": "WARNING", "urllib3": "ERROR"}
        assert config.excluded_paths == ("^/ping$",)
    finally:
        ext.shutdown(app)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("OBSERVE_LOG_FORMAT", "xml", "expected one of 'auto', 'json', 'console'"),
        ("OBSERVE_LOG_LEVEL", "LOUD", "expected a log level name"),
        ("OBSERVE_LOG_ROTATE_BYTES", -1, "expected an integer >= 0"),
        ("OBSERVE_REQUEST_ID_MAX_LENGTH", 5000, "<= 1024"),
        ("OBSERVE_ENABLED", "maybe", "expected a boolean"),
        ("OBSERVE_REQUEST_ID_HEADER", "X Request\nID", "expected an HTTP header name"),
        ("OBSERVE_LOG_FILE_NAME", "../app.log", "plain file name"),
        ("OBSERVE_EXCLUDED_PATHS", ["("], "invalid regular expression"),
        ("OBSERVE_LOG_ROTATE_INTERVAL", "weekly", "'hourly', 'daily'"),
        ("OBSERVE_LOG_RETENTION_DAYS", "soon", "expected a number"),
        ("OBSERVE_LOG_STDUOT", True, "unknown flask_observe setting"),
        ("OBSERVE_LOGVIEWER_API_PREFIX", "api/logs", "expected a URL path"),
        ("OBSERVE_LOGVIEWER_UI_PATH", "/observe logs", "expected a URL path"),
        ("OBSERVE_LOGVIEWER_TRACE_URL", "javascript:alert(1)//{trace_id}", "http(s) URL"),
        ("OBSERVE_LOGVIEWER_TRACE_URL", "http://jaeger/trace/", "'{trace_id}'"),
        ("OBSERVE_LOGVIEWER_FILES", ["../etc/passwd"], "plain file name"),
        ("OBSERVE_LOGVIEWER_REDACT_PATTERNS", ["(unclosed"], "invalid regular expression"),
        ("OBSERVE_LOGVIEWER_MAX_RESPONSE_BYTES", 1000, ">= 65536"),
        ("OBSERVE_LOGVIEWER_SESSION_SECONDS", 5, ">= 60"),
    ],
)
def test_invalid_values_fail_at_start_naming_the_key(
    key: str, value: object, expected: str
) -> None:
    """A wrong value stops init_app with a message naming the key and what it expects."""
    app = Flask("badconfig")
    app.config[key] = value
    with pytest.raises(ConfigError) as info:
        Observe(app)
    assert str(info.value).startswith(key + ":")
    assert expected in str(info.value)
    assert "observe" not in app.extensions


def test_options_are_defaults_that_app_config_overrides() -> None:
    """Observe(**options) fills keys the app did not set; app.config wins where set."""
    app = Flask("opts")
    app.config["OBSERVE_LOG_LEVEL"] = "ERROR"
    ext = Observe(app, log_level="DEBUG", log_format="console", log_stdout=False)
    try:
        config = current_state(app).config
        assert config.log_level == "ERROR"
        assert config.log_format == "console"
    finally:
        ext.shutdown(app)


def test_unknown_option_is_a_type_error() -> None:
    """A typo in a keyword option is caught when Observe() is created."""
    with pytest.raises(TypeError, match="log_levle"):
        Observe(log_levle="DEBUG")


@pytest.mark.parametrize(
    ("settings", "excluded", "kept"),
    [
        ({}, ["/health", "/health/live", "/health/ready/", "/metrics"], ["/healthz", "/health/x"]),
        (
            {"OBSERVE_HEALTH_URL_PREFIX": "/_ops/health", "OBSERVE_METRICS_PATH": "/_ops/metrics"},
            ["/_ops/health", "/_ops/health/startup", "/_ops/metrics"],
            ["/health", "/health/live", "/metrics"],
        ),
        ({"OBSERVE_EXCLUDED_PATHS": ["^/ping$"]}, ["/ping"], ["/health", "/health/live"]),
    ],
)
def test_default_exclusions_follow_the_health_prefix_and_metrics_path(
    settings: dict[str, object], excluded: list[str], kept: list[str]
) -> None:
    """Unset, OBSERVE_EXCLUDED_PATHS covers the health endpoints (the full report included:
    a 503 report must not count against the SLO) and /metrics wherever they are mounted; a
    list set by hand replaces it."""
    app = Flask("exclusions")
    app.config.update(settings)
    ext = Observe(app, log_stdout=False)
    try:
        matches = current_state(app).excluded
    finally:
        ext.shutdown(app)
    assert matches is not None
    assert [p for p in excluded if not matches(p)] == []
    assert [p for p in kept if matches(p)] == []
