"""Health check results as Prometheus gauges, for the shipped rules and dashboard.

- ``flask_observe_health_check_status{check, critical}``: the check's last result, ``0`` pass,
  ``1`` warn, ``2`` fail; ``flask_observe_health_check_duration_seconds{check}``: how long it
  took. Set by a listener of the health runner on each new result (probes, the in-process
  rules), never by a scrape; under gunicorn the most recently set value of any worker wins.
- ``flask_observe_health_check_transitions_total{check, from_status, to_status}``: changes of a
  check's status (the runner logs each one too); a first result counts from ``none`` unless
  it passes. Bounded: checks are the app's own, statuses three.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..metrics import Metrics
    from .results import CheckResult
    from .runner import HealthRunner

__all__ = ["export_health"]

_STATUS_VALUES = {"pass": 0.0, "warn": 1.0, "fail": 2.0}


def export_health(metrics: Metrics, runner: HealthRunner) -> Callable[[], None]:
    """Keep the health gauges current; returns the undo step."""
    status = metrics.gauge(
        "flask_observe_health_check_status",
        "Last result of each health check: 0 pass, 1 warn, 2 fail.",
        ["check", "critical"],
        multiprocess_mode="livemostrecent",
    )
    duration = metrics.gauge(
        "flask_observe_health_check_duration_seconds",
        "How long the last run of each health check took (its deadline when it timed out).",
        ["check"],
        multiprocess_mode="livemostrecent",
    )

    transitions = metrics.counter(
        "flask_observe_health_check_transitions_total",
        "Changes of each health check's status (from none: its first result, when not pass).",
        ["check", "from_status", "to_status"],
    )

    def record(result: CheckResult, previous: CheckResult | None) -> None:
        critical = "true" if result.critical else "false"
        status.labels(result.name, critical).set(_STATUS_VALUES[result.status.value])
        duration.labels(result.name).set(result.duration)
        before = previous.status.value if previous is not None else "none"
        if before != result.status.value and not (
            before == "none" and result.status.value == "pass"
        ):
            transitions.labels(result.name, before, result.status.value).inc()

    runner.add_listener(record)
    return lambda: runner.remove_listener(record)
