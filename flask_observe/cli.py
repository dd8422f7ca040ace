"""``flask observe …``: the command-line side of the extension.

The group is built per app in ``init_app`` from every feature's commands (``flask observe
config`` is the core's own). Every feature's commands are listed whether the feature is on or
not: a command of a feature that is off says why instead of being "No such command".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click
from flask.cli import AppGroup, with_appcontext

from .config import PREFIX
from .state import current_state

if TYPE_CHECKING:
    from .feature import Feature
    from .state import ObserveState

__all__ = ["build_cli", "effective_config"]


def build_cli(features: Iterable[Feature]) -> AppGroup:
    """The ``observe`` command group: ``config`` and each feature's commands."""
    group = AppGroup("observe", help="flask_observe: configuration, health, logs, alerts.")
    group.add_command(show_config)
    for feature in features:
        if feature.commands is not None:
            for command in feature.commands():
                group.add_command(command)
    return group


@click.command("config")
@with_appcontext
def show_config() -> None:
    """Print the effective OBSERVE_* settings as JSON (secrets hidden), and which features
    are on."""
    out = effective_config(current_state())
    click.echo(json.dumps(out, indent=2, default=str))


def effective_config(state: ObserveState) -> dict[str, Any]:
    """Every ``OBSERVE_*`` setting of an app by key, secrets shown as ``<set>``, callables by
    name; and ``features_on``: what ``flask observe config`` prints."""
    config = state.config
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("secret") and value not in (None, ()):
            value = "<set>"
        elif callable(value):
            value = f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', value)}"
        out[PREFIX + f.name.upper()] = value
    out["features_on"] = list(state.features)
    return out


def feature_off(what: str, why: str) -> click.ClickException:
    """The error of a command whose feature is off: what is off, and the setting that would
    turn it on."""
    return click.ClickException(f"{what} is off for this app: {why}")
