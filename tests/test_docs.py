"""Docs tell the truth: every config key is documented; CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask

from flask_observe import ObserveConfig
from flask_observe.config import config_keys, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_every_config_key_is_documented_with_env_form() -> None:
    """docs/configuration.md has a row for each key with its FLASK_ env form."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    for key in config_keys(ObserveConfig):
        assert f"`{key}`" in text, key
        assert f"FLASK_{key}" in text, key


def test_documented_keys_exist() -> None:
    """No documented key is stale."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(OBSERVE_[A-Z_]+)`", text, re.MULTILINE))
    assert documented == set(config_keys(ObserveConfig))


_ROW = re.compile(r"^\| `(OBSERVE_[A-Z_]+)` \| (.*?) \| `FLASK_(OBSERVE_[A-Z_]+)=(.*?)` \|", re.M)
#: Placeholders of the examples, and what a shell would put there.
_SHELL = {"$(openssl rand -hex 24)": "9c41f07e2ab85d36e1f4c09b7a2d58e3", "$GIT_SHA": "4f2a9c1"}


def test_every_env_example_is_accepted_with_the_other_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each row's ``FLASK_OBSERVE_…=value`` example, read by ``from_prefixed_env()`` as a
    newcomer's shell would pass it, starts up on its own (no example that fails validation)."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = _ROW.findall(text)
    assert {key for key, *_ in rows} == set(config_keys(ObserveConfig))
    for key, _default, env_key, example in rows:
        assert env_key == key
        if key == "OBSERVE_AUTH_CALLBACK":  # names the reader's own module
            example = "flask_observe.auth:bearer_token"
        value = example[1:-1] if example[:1] == example[-1:] == "'" else example
        for placeholder, shell in _SHELL.items():
            value = value.replace(placeholder, shell)
        monkeypatch.setenv(f"FLASK_{key}", value)
        app = Flask("docs")
        app.config.from_prefixed_env()
        monkeypatch.delenv(f"FLASK_{key}")
        load_config(ObserveConfig, app.config)


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs the exact test command the README gives a newcomer."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_instance_methods_are_not_written_as_class_calls() -> None:
    """``observe.shutdown(app)``, not ``Observe.shutdown(app)``: the docs call each method of
    ``Observe`` the way it is called (``Observe.handle(kind)`` is a static method and stays)."""
    import inspect

    from flask_observe import Observe

    instance_only = sorted(
        name
        for name, member in inspect.getmembers(Observe)
        if not name.startswith("_")
        and not isinstance(inspect.getattr_static(Observe, name), staticmethod | classmethod)
    )
    assert "shutdown" in instance_only
    assert "handle" not in instance_only
    pattern = re.compile(rf"\bObserve\.({'|'.join(instance_only)})\b")
    pages = [ROOT / "README.md", ROOT / "CHANGES.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [
        f"{page.relative_to(ROOT)}:{number}: {match.group(0)}"
        for page in pages
        for number, line in enumerate(page.read_text().splitlines(), 1)
        for match in pattern.finditer(line)
    ]
    assert not found, found
