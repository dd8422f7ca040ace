"""Health checks and circuit breakers as gauges: what the shipped rules and dashboard read."""

from __future__ import annotations

import time
from collections.abc import Callable

import pybreaker
import pytest
from flask import Flask

from flask_observe import Observe
from flask_observe.breakers import BreakerRegistry
from flask_observe.health import CheckFailed, CheckWarning, FunctionCheck
from flask_observe.metrics import Metrics
from flask_observe.state import current_state

from .test_metrics import sample_value


@pytest.mark.realtime
def test_each_health_result_sets_the_check_status_and_duration(
    make_app: Callable[..., Flask],
) -> None:
    """pass → 0, warn → 1, fail → 2, labelled with the check and whether it is critical; the
    duration of the last run beside it; a probe without credentials updates them too."""
    app = make_app("hc", log_stdout=False, health_cache_ttl=0)
    mode = {"now": "pass"}

    def dependency() -> None:
        time.sleep(0.02)
        if mode["now"] == "warn":
            raise CheckWarning("slow")
        if mode["now"] == "fail":
            raise CheckFailed("down")

    observe = Observe()
    observe.add_health_check(FunctionCheck("search", func=dependency), app=app)
    observe.add_health_check(FunctionCheck("cache", critical=False, func=lambda: False), app=app)
    client = app.test_client()
    status = "flask_observe_health_check_status"
    registry = current_state(app).get(Metrics).registry  # type: ignore[union-attr]
    labels = {"check": "search", "critical": "true"}
    assert registry.get_sample_value(status, labels) is None  # nothing before the first run
    client.get("/health/ready")
    assert registry.get_sample_value(status, labels) == 0.0
    assert sample_value(app, status, check="cache", critical="false") == 2.0
    duration = sample_value(app, "flask_observe_health_check_duration_seconds", check="search")
    assert 0.02 <= duration < 1.0
    mode["now"] = "warn"
    client.get("/health/ready")
    assert sample_value(app, status, check="search", critical="true") == 1.0
    mode["now"] = "fail"
    assert client.get("/health/ready").status_code == 503
    assert sample_value(app, status, check="search", critical="true") == 2.0
    body = client.get("/metrics").get_data(as_text=True)
    assert 'flask_observe_health_check_status{check="search",critical="true"} 2.0' in body


@pytest.mark.realtime
def test_breaker_state_gauge_follows_every_change(make_app: Callable[..., Flask]) -> None:
    """closed 0 (from the sampler, before any change), open 2 at once when it trips,
    half-open 1 on the trial call, closed 0 again after it succeeds."""
    app = make_app("brkgauge", log_stdout=False)
    breaker = Observe().circuit_breaker("billing", app=app, fail_max=2, reset_timeout=0.3)
    state = current_state(app)
    name = "flask_observe_circuit_breaker_state"
    assert state.get(Metrics) is not None
    assert state.get(Metrics).registry.get_sample_value(name, {"breaker": "billing"}) is None
    assert state.ticker is not None
    state.ticker.run_once()
    assert sample_value(app, name, breaker="billing") == 0.0

    def down() -> None:
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
            breaker.call(down)
    assert sample_value(app, name, breaker="billing") == 2.0
    time.sleep(0.35)
    seen: list[float] = []

    def trial() -> str:
        seen.append(sample_value(app, name, breaker="billing"))
        return "ok"

    assert breaker.call(trial) == "ok"
    assert seen == [1.0]
    assert sample_value(app, name, breaker="billing") == 0.0


def test_breaker_listener_removed_at_shutdown(make_app: Callable[..., Flask]) -> None:
    """Observe.shutdown(app) removes the listener it added to the app's breakers: a breaker
    still used afterwards no longer touches the app's metrics."""
    app = make_app("undo", log_stdout=False)
    observe = Observe()
    breaker = observe.circuit_breaker("x", app=app, fail_max=1, reset_timeout=60)
    state = current_state(app)
    assert len(state.get(BreakerRegistry)._listeners) == 1
    observe.shutdown(app)
    assert state.get(BreakerRegistry)._listeners == []

    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises((ConnectionError, pybreaker.CircuitBreakerError)):
        breaker.call(down)
    assert state.get(Metrics) is not None
    assert (
        state.get(Metrics).registry.get_sample_value(
            "flask_observe_circuit_breaker_state", {"breaker": "x"}
        )
        is None
    )
