"""Health checks and circuit breakers as Prometheus gauges, for the shipped rules and dashboard.

- ``flask_observe_health_check_status{check, critical}``: the check's last result, ``0`` pass,
  ``1`` warn, ``2`` fail; ``flask_observe_health_check_duration_seconds{check}``: how long it
  took. Set by a listener of the health runner on each new result (probes, the in-process
  rules), never by a scrape; under gunicorn the most recently set value of any worker wins.
- ``flask_observe_circuit_breaker_state{breaker}``: ``0`` closed, ``1`` half-open, ``2`` open.
  Set on each state change and by the background sampler (breakers made later included); under
  gunicorn, the worst worker's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..breakers import BreakerRegistry
    from ..health.results import CheckResult
    from ..health.runner import HealthRunner
    from . import Metrics

__all__ = ["BREAKER_STATES", "export_breakers", "export_health"]

#: ``flask_observe_circuit_breaker_state`` values by pybreaker state.
BREAKER_STATES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
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

    def record(result: CheckResult, previous: CheckResult | None) -> None:
        critical = "true" if result.critical else "false"
        status.labels(result.name, critical).set(_STATUS_VALUES[result.status.value])
        duration.labels(result.name).set(result.duration)

    runner.add_listener(record)
    return lambda: runner.remove_listener(record)


def export_breakers(metrics: Metrics, registry: BreakerRegistry) -> tuple[Callable[[], None], Any]:
    """Keep the breaker gauge current: on each state change, and from ``sample()`` (the
    background sampler's task), which also covers breakers that never changed state.

    :returns: the undo step and the ``sample`` task.
    """
    gauge = metrics.gauge(
        "flask_observe_circuit_breaker_state",
        "State of each circuit breaker: 0 closed, 1 half-open, 2 open.",
        ["breaker"],
        multiprocess_mode="livemax",
    )

    def changed(name: str, old: str, new: str) -> None:
        gauge.labels(name).set(BREAKER_STATES.get(new, 2.0))

    def sample() -> None:
        for name, breaker in registry.all().items():
            gauge.labels(name).set(BREAKER_STATES.get(str(breaker.current_state), 2.0))

    registry.add_listener(changed)
    return (lambda: registry.remove_listener(changed)), sample
