"""``flask observe`` commands."""

from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask


def test_config_command_prints_effective_settings_without_secrets(
    make_app: Callable[..., Flask],
) -> None:
    """``flask observe config`` shows every key's effective value; the token is hidden."""
    app = make_app(
        "cliapp", log_stdout=False, auth_token="very-QfGGLgIYoiXWvTvg3dyePZWB", log_level="debug"
    )
    result = app.test_cli_runner().invoke(args=["observe", "config"])
    assert result.exit_code == 0, result.output
    settings = json.loads(result.output)
    assert settings["OBSERVE_LOG_LEVEL"] == "DEBUG"
    assert settings["OBSERVE_AUTH_TOKEN"] == "<set>"
    assert "very-QfGGLgIYoiXWvTvg3dyePZWB" not in result.output


def test_disabled_extension_adds_no_commands(make_app: Callable[..., Flask]) -> None:
    """With OBSERVE_ENABLED=False there is no ``observe`` group."""
    app = make_app("off", enabled=False)
    result = app.test_cli_runner().invoke(args=["observe", "config"])
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_health_command_prints_the_report_and_exits_by_status(
    make_app: Callable[..., Flask],
) -> None:
    """``flask observe health`` prints the detailed health+json report; exit 0 on pass or
    warn, 1 on fail; ``--probe`` picks the group, ``--status-only`` prints the status alone."""
    from flask_observe import Observe
    from flask_observe.health import CheckFailed

    app = make_app("clihealth", log_stdout=False)
    observe = Observe()
    state = {"up": True}

    @observe.health_check("dep", app=app, cache_ttl=0)
    def dep() -> None:
        if not state["up"]:
            raise CheckFailed("dependency down")

    runner = app.test_cli_runner()
    result = runner.invoke(args=["observe", "health"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["status"] == "pass"
    assert {"dep:responseTime", "uptime", "score"} <= set(report["checks"])
    state["up"] = False
    result = runner.invoke(args=["observe", "health", "--probe", "ready"])
    assert result.exit_code == 1
    assert json.loads(result.output)["output"] == "dep: dependency down"
    live = runner.invoke(args=["observe", "health", "--probe", "live", "--status-only"])
    assert (live.exit_code, json.loads(live.output)) == (0, {"status": "pass"})


def test_a_command_of_a_feature_that_is_off_says_why(make_app: Callable[..., Flask]) -> None:
    """OBSERVE_HEALTH_ENABLED=False: ``flask observe health`` exists and says what is off and
    which setting turns it on, instead of "No such command"; likewise ``alerts test`` with no
    channel configured."""
    app = make_app("clinohealth", log_stdout=False, health_enabled=False)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["observe", "health"])
    assert result.exit_code != 0
    assert "No such command" not in result.output
    assert "health is off for this app: OBSERVE_HEALTH_ENABLED is false" in result.output
    result = runner.invoke(args=["observe", "alerts", "test"])
    assert result.exit_code != 0
    assert "alerting is off for this app" in result.output
    assert "OBSERVE_ALERT_CHANNELS" in result.output
