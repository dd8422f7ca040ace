"""docs/api.md lists the public API, and only it: kept in step with the code."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import flask_observe
from flask_observe import Observe

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()


def test_every_exported_name_is_documented() -> None:
    missing = [name for name in flask_observe.__all__ if f"`{name}" not in PAGE]
    assert missing == []


def test_every_public_observe_method_is_documented_and_every_documented_one_exists() -> None:
    public = {name for name, _ in inspect.getmembers(Observe) if not name.startswith("_")}
    documented = set(re.findall(r"`[Oo]bserve\.(\w+)", PAGE))
    assert public == documented


def test_every_documented_import_path_exists() -> None:
    """Each ``flask_observe.<module>.<Name>`` the page names can be imported."""
    paths = set(re.findall(r"`(flask_observe(?:\.\w+)+)`", PAGE))
    assert len(paths) > 10
    for path in paths:
        try:
            importlib.import_module(path)
            continue
        except ImportError:
            module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_the_state_object_is_not_public() -> None:
    """The wiring stays out of the public API."""
    assert "ObserveState" not in flask_observe.__all__
    assert not hasattr(flask_observe, "ObserveState")
    assert not hasattr(Observe, "state")
