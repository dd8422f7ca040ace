"""Circuit breakers: pybreaker's, named per app, their state changes logged and seen in health.

``observe.circuit_breaker("platform-api", fail_max=5, reset_timeout=30)`` returns a
``pybreaker.CircuitBreaker`` (use it as pybreaker documents: ``breaker.call(f, …)`` or as a
decorator). This module only wires it: a listener logs each state change and tells the
registry's listeners, and a :class:`BreakerCheck` shows its state in health.

pybreaker holds the breaker's lock for the whole guarded call, so calls through one breaker
run one at a time (upstream issue danielfm/pybreaker#55); keep guarded calls short, with
timeouts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import _optional
from ._internal import FailureLog
from .health.checks import READINESS, HealthCheck, Observation, Status

__all__ = ["BreakerCheck", "BreakerRegistry"]

logger = logging.getLogger("flask_observe.breakers")

#: ``listener(breaker_name, old_state, new_state)``; states are pybreaker's strings.
StateListener = Callable[[str, str, str], None]


class BreakerRegistry:
    """The circuit breakers of one app: ``Observe.state(app).breakers``.

    Other features read it: :meth:`all` for each breaker's state, :meth:`add_listener` to hear
    every state change of every breaker (present and future).
    """

    def __init__(self) -> None:
        self._breakers: dict[str, Any] = {}
        self._listeners: list[StateListener] = []
        self._lock = threading.Lock()
        self._failures = FailureLog()

    def create(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 60.0,
        exclude: Iterable[Any] = (),
        success_threshold: int = 1,
    ) -> Any:
        """The breaker called ``name``, made on first use (later calls return the same one).

        :raises MissingDependencyError: pybreaker is not installed.
        """
        pybreaker = _optional.require("pybreaker", "breakers", "observe.circuit_breaker")
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = pybreaker.CircuitBreaker(
                    fail_max=fail_max,
                    reset_timeout=reset_timeout,
                    exclude=list(exclude),
                    success_threshold=success_threshold,
                    name=name,
                    listeners=[_listener(self, pybreaker.CircuitBreakerListener)],
                )
                self._breakers[name] = breaker
            return breaker

    def get(self, name: str) -> Any | None:
        return self._breakers.get(name)

    def all(self) -> dict[str, Any]:
        """Every breaker of the app by name."""
        with self._lock:
            return dict(self._breakers)

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(name, old_state, new_state)`` on each state change."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _changed(self, breaker: Any, old: str, new: str) -> None:
        fields = {
            "breaker": breaker.name,
            "old_state": old,
            "new_state": new,
            "fail_counter": breaker.fail_counter,
            "fail_max": breaker.fail_max,
            "reset_timeout": breaker.reset_timeout,
        }
        level = logging.WARNING if new == "open" else logging.INFO
        logger.log(level, "circuit breaker %s: %s -> %s", breaker.name, old, new, extra=fields)
        for listener in list(self._listeners):
            try:
                listener(breaker.name, old, new)
            except Exception:
                self._failures("a circuit breaker listener")


def _listener(registry: BreakerRegistry, base: type) -> Any:
    """A pybreaker listener forwarding state changes to ``registry`` (pybreaker imported late)."""

    class StateChangeListener(base):  # type: ignore[misc]
        def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
            old = old_state.name if old_state is not None else "none"
            if old != new_state.name:
                registry._changed(cb, old, new_state.name)

    return StateChangeListener()


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


def breaker_check_name(name: str) -> str:
    """The health check name of breaker ``name`` (its entry is keyed by the breaker's name)."""
    return f"{name}-breaker"
