"""Deployment pieces: gunicorn hooks, Prometheus rules, a Grafana dashboard.

- :mod:`flask_observe.contrib.gunicorn` — ``gunicorn -c python:flask_observe.contrib.gunicorn``
  or import its hooks into your ``gunicorn.conf.py``;
- ``prometheus/flask_observe_rules.yml`` — alert and recording rules (SLO burn rates);
- ``grafana/flask_observe_dashboard.json`` — RED, business metrics, SLOs, health.

:func:`path` gives the installed location of the data files.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["path"]


def path(name: str) -> Path:
    """The installed path of a shipped file, e.g. ``path("prometheus/flask_observe_rules.yml")``."""
    return Path(__file__).resolve().parent / name
