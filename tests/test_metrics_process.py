"""``app_info``: what is deployed, one series per app whatever is set."""

from __future__ import annotations

import platform
from collections.abc import Callable
from importlib.metadata import version

from flask import Flask

import flask_observe
from flask_observe import Observe
from flask_observe.metrics import Metrics


def test_app_info_names_the_service_its_version_environment_and_the_stack(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app("billing", log_stdout=False, service_version="1.4.2", environment="prod")
    registry = Observe.handle(Metrics, app).registry
    (family,) = [f for f in registry.collect() if f.name == "app_info"]
    (sample,) = family.samples
    assert sample.value == 1
    assert sample.labels == {
        "service": "billing",
        "version": "1.4.2",
        "environment": "prod",
        "flask_observe_version": flask_observe.__version__,
        "flask_version": version("flask"),
        "python_version": platform.python_version(),
    }


def test_app_info_says_unknown_for_what_is_not_set(make_app: Callable[..., Flask]) -> None:
    app = make_app("plain", log_stdout=False)
    registry = Observe.handle(Metrics, app).registry
    (family,) = [f for f in registry.collect() if f.name == "app_info"]
    (sample,) = family.samples
    assert (sample.labels["version"], sample.labels["environment"]) == ("unknown", "unknown")
