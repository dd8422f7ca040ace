"""Docs tell the truth: every config key is documented; CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

from flask_observe.config import config_keys

ROOT = Path(__file__).resolve().parent.parent


def test_every_config_key_is_documented_with_env_form() -> None:
    """docs/configuration.md has a row for each key with its FLASK_ env form."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    for key in config_keys():
        assert f"`{key}`" in text, key
        assert f"FLASK_{key}" in text, key


def test_documented_keys_exist() -> None:
    """No documented key is stale."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(OBSERVE_[A-Z_]+)`", text, re.MULTILINE))
    assert documented == set(config_keys())


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the exact test command the README gives a newcomer."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()
