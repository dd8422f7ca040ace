"""The breakers feature: the app's circuit breakers, and their states as a gauge."""

from __future__ import annotations

from ..feature import Feature, NoSettings, Wiring
from .registry import BreakerRegistry

__all__ = ["BREAKER_STATES", "FEATURE"]

#: ``flask_observe_circuit_breaker_state`` values by pybreaker state.
BREAKER_STATES = {"closed": 0.0, "half-open": 1.0, "open": 2.0}


def _setup(wiring: Wiring) -> None:
    from ..metrics import Metrics

    registry = BreakerRegistry()
    wiring.provide(registry)
    metrics = wiring.get(Metrics)
    if metrics is None:
        return
    # Set on each state change and by the background sampler (breakers made later, and
    # those that never changed state, included); under gunicorn, the worst worker's.
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
    wiring.on_close(lambda: registry.remove_listener(changed))
    wiring.ticker.add("circuit breakers", sample)


FEATURE = Feature("breakers", NoSettings, _setup)
