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
        "cliapp", log_stdout=False, auth_token="very-secret-token-123", log_level="debug"
    )
    result = app.test_cli_runner().invoke(args=["observe", "config"])
    assert result.exit_code == 0, result.output
    settings = json.loads(result.output)
    assert settings["OBSERVE_LOG_LEVEL"] == "DEBUG"
    assert settings["OBSERVE_AUTH_TOKEN"] == "<set>"
    assert "very-secret-token-123" not in result.output


def test_disabled_extension_adds_no_commands(make_app: Callable[..., Flask]) -> None:
    """With OBSERVE_ENABLED=False there is no ``observe`` group."""
    app = make_app("off", enabled=False)
    result = app.test_cli_runner().invoke(args=["observe", "config"])
    assert result.exit_code != 0
    assert "No such command" in result.output
