"""Each circuit breaker's state as a health entry (``<breaker>:circuitBreaker``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..breakers.registry import BreakerRegistry, breaker_check_name
from .checks import READINESS, HealthCheck, Observation, Status
from .runner import HealthRunner

__all__ = ["BreakerCheck", "show_breakers"]


@dataclass
class BreakerCheck(HealthCheck):
    """A circuit breaker's state as a health entry, ``<breaker>:circuitBreaker``.

    ``closed``: pass. ``half-open``: warn. ``open``: warn, or fail when ``critical`` — but only
    until ``reset_timeout`` has passed: from then on the next call is let through, so the
    entry warns again. (Otherwise a pod made unready by an open breaker would get no traffic
    to close it, and stay unready for ever.)
    """

    critical: bool = False
    breaker: Any = field(default=None, repr=False)
    groups: tuple[str, ...] = (READINESS,)
    cache_ttl: float | None = 0.0

    inline = True

    def run(self) -> Observation:
        breaker = self.breaker
        state = breaker.current_state
        extra: dict[str, Any] = {
            "failCounter": breaker.fail_counter,
            "failMax": breaker.fail_max,
            "resetTimeoutS": breaker.reset_timeout,
        }
        status, output = Status.PASS, None
        if state == "open":
            # pybreaker keeps the opening time in its storage only.
            opened = getattr(getattr(breaker, "_state_storage", None), "opened_at", None)
            retry_in = breaker.reset_timeout
            if isinstance(opened, datetime):
                elapsed = (datetime.now(timezone.utc) - opened).total_seconds()
                retry_in = max(0.0, breaker.reset_timeout - elapsed)
            extra["retryInS"] = round(retry_in, 3)
            status = Status.FAIL if self.critical and retry_in > 0 else Status.WARN
            output = (
                f"circuit open after {breaker.fail_counter} failures;"
                f" next trial call in {retry_in:.1f}s"
            )
        elif state == "half-open":
            status, output = Status.WARN, "circuit half-open: trial calls decide"
        return Observation(
            "circuitBreaker",
            state,
            None,
            status,
            output=output,
            component=breaker.name,
            extra=extra,
        )


def show_breakers(registry: BreakerRegistry, runner: HealthRunner) -> None:
    """Add a :class:`BreakerCheck` to ``runner`` for every breaker made with ``health=True``,
    now and later."""

    def made(breaker: Any, options: dict[str, Any]) -> None:
        if not options.get("health", True):
            return
        name = breaker_check_name(breaker.name)
        if runner.get(name) is None:
            runner.add(BreakerCheck(name, critical=bool(options.get("critical")), breaker=breaker))

    registry.on_create(made)
