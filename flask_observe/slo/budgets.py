"""Error budgets of the configured SLOs, computed from the RED metrics.

- availability: share of requests not answered 5xx, target ``OBSERVE_SLO_AVAILABILITY``;
- latency: share of requests served within ``OBSERVE_SLO_LATENCY_SECONDS`` (a histogram
  bucket bound, so the count is exact), target ``OBSERVE_SLO_LATENCY``.

The remaining budget is ``1 - bad_ratio / (1 - target)``: 1 untouched, 0 spent, negative
overspent. This in-process gauge (``slo_error_budget_remaining_ratio``) covers this process's
requests of the last ``OBSERVE_SLO_WINDOW_SECONDS`` (an hour), and judges only once the window
holds enough requests: at least ``OBSERVE_SLO_MIN_REQUESTS``, and enough that the budget
allows one whole bad request (1,000 for 99.9 %). Until then the budget is "not judged"
(``None``; the gauge says 1, untouched, so the ``min`` over gunicorn workers is the judged
workers'). One 500 among two requests of a fresh process spends nothing. The shipped
Prometheus rules compute the fleet-wide budget over 30 days and alert on burn rates
(docs/slo.md).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from .._clock import SYSTEM, Clock

if TYPE_CHECKING:
    from ..metrics import Metrics

__all__ = ["ErrorBudgets"]


class ErrorBudgets:
    """Computes and exports the remaining error budgets over a sliding window.

    :param metrics: the app's metrics (RED metrics are read, the gauge is written).
    :param availability: target share of non-5xx requests (0: no availability SLO).
    :param latency: target share of requests within ``latency_seconds`` (0: none).
    :param warn: :meth:`health` warns when less than this share of a budget is left.
    :param window: seconds of requests a budget is judged on.
    :param min_requests: fewer requests in the window: not judged.
    :param clock: what the window is measured with.
    """

    def __init__(
        self,
        metrics: Metrics,
        availability: float,
        latency: float,
        latency_seconds: float,
        warn: float,
        *,
        window: float = 3600.0,
        min_requests: int = 100,
        clock: Clock = SYSTEM,
    ) -> None:
        self.metrics = metrics
        self.targets = {"availability": availability, "latency": latency}
        self.latency_seconds = latency_seconds
        self.warn = warn
        self.window = window
        self.min_requests = min_requests
        self._clock = clock
        self.gauge = metrics.gauge(
            "slo_error_budget_remaining_ratio",
            "Share of the SLO's error budget left over the window (1 untouched or not judged"
            " yet, 0 spent; this process).",
            ["slo"],
            multiprocess_mode="livemin",
        )
        #: ``(time, total, errors, fast)`` counter readings, oldest first; the first one at
        #: or before the window's start is the baseline. Bounded by window / sample period.
        self._readings: deque[tuple[float, float, float, float]] = deque()
        self._lock = threading.Lock()
        self._remaining: dict[str, float | None] = {}
        #: Requests in the window at the last update.
        self.requests_in_window = 0.0

    def needed(self, slo: str) -> int:
        """Requests the window must hold before ``slo``'s budget is judged: the minimum, or
        as many as it takes for the budget to allow one whole bad request."""
        target = self.targets[slo]
        return max(self.min_requests, math.ceil(1.0 / (1.0 - target) - 1e-9))

    def _totals(self) -> tuple[float, float, float]:
        total = errors = 0.0
        for family in self.metrics.http.requests.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    total += sample.value
                    if sample.labels.get("status", "").startswith("5"):
                        errors += sample.value
        fast = 0.0
        for family in self.metrics.http.duration.collect():
            for sample in family.samples:
                if (
                    sample.name.endswith("_bucket")
                    and float(sample.labels["le"]) == self.latency_seconds
                ):
                    fast += sample.value
        return total, errors, fast

    def _in_window(self) -> tuple[float, float, float]:
        """Requests, errors and fast requests of the window (now minus the baseline)."""
        now = self._clock.monotonic()
        reading = (now, *self._totals())
        with self._lock:
            readings = self._readings
            if not readings:
                # The process's first reading: its requests so far are the first window's.
                readings.append((now - self.window, 0.0, 0.0, 0.0))
            readings.append(reading)
            start = now - self.window
            while len(readings) > 2 and readings[1][0] <= start:
                readings.popleft()
            base = readings[0]
        return reading[1] - base[1], reading[2] - base[2], reading[3] - base[3]

    def update(self) -> dict[str, float | None]:
        """Recompute the budgets and set the gauge; returns ``{slo: remaining, or None when
        the window holds too few requests to judge}``."""
        total, errors, fast = self._in_window()
        self.requests_in_window = total
        bad = {"availability": errors, "latency": total - fast}
        remaining: dict[str, float | None] = {}
        for slo, target in self.targets.items():
            if not target:
                continue
            if total < self.needed(slo):
                remaining[slo] = None
                self.gauge.labels(slo).set(1.0)
                continue
            value = 1.0 - (bad[slo] / total) / (1.0 - target)
            remaining[slo] = value
            self.gauge.labels(slo).set(value)
        self._remaining = remaining
        return remaining

    @property
    def remaining(self) -> dict[str, float | None]:
        """The budgets of the last :meth:`update`, without reading the metrics again
        (``None``: not judged yet)."""
        return dict(self._remaining)

    def health(self) -> tuple[str, dict[str, Any]]:
        """``("warn", details)`` when a budget is nearly spent, else ``("ok", details)``.

        The shape a health check needs; plug it into the health registry where there is one.
        """
        remaining = self.update()
        low = {
            slo: value
            for slo, value in remaining.items()
            if value is not None and value < self.warn
        }
        details = {"remaining": remaining, "warn_below": self.warn}
        return ("warn" if low else "ok"), details


def budget_check(budgets: ErrorBudgets, name: str = "slo") -> Any:
    """A health check (flask_observe.health) reporting each SLO's remaining error budget:
    ``warn`` when less than ``OBSERVE_SLO_BUDGET_WARN`` is left. Not critical, in no probe
    group: it shows in the full report (``/health``), never fails readiness."""
    from dataclasses import dataclass, field
    from typing import ClassVar

    from ..health.checks import HealthCheck, Observation, Status

    @dataclass
    class ErrorBudgetCheck(HealthCheck):
        budgets: Any = field(default=None, repr=False)
        critical: bool = False
        groups: tuple[str, ...] = ()
        cache_ttl: float | None = 0.0  # cheap: always current
        component_type: ClassVar[str] = "component"
        inline: ClassVar[bool] = True  # reads counters in memory

        def run(self) -> list[Observation]:
            out: list[Observation] = []
            budgets = self.budgets
            for slo, remaining in budgets.update().items():
                low = remaining is not None and remaining < budgets.warn
                extra: dict[str, Any] = {
                    "requestsInWindow": int(budgets.requests_in_window),
                    "windowS": budgets.window,
                }
                output = None
                if remaining is None:
                    extra["requestsNeeded"] = budgets.needed(slo)
                    output = "not judged yet: too few requests in the window"
                elif low:
                    output = f"under {budgets.warn:.0%} of the {slo} error budget left"
                out.append(
                    Observation(
                        measurement="errorBudgetRemaining",
                        value=None if remaining is None else round(remaining, 4),
                        unit="ratio",
                        status=Status.WARN if low else Status.PASS,
                        output=output,
                        component=f"slo-{slo}",
                        extra=extra,
                    )
                )
            return out

    return ErrorBudgetCheck(name, budgets=budgets)
