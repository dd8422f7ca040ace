"""Error budgets of the configured SLOs, computed from the RED metrics.

- availability: share of requests not answered 5xx, target ``OBSERVE_SLO_AVAILABILITY``;
- latency: share of requests served within ``OBSERVE_SLO_LATENCY_SECONDS`` (a histogram
  bucket bound, so the count is exact), target ``OBSERVE_SLO_LATENCY``.

The remaining budget is ``1 - bad_ratio / (1 - target)``: 1 untouched, 0 spent, negative
overspent. This in-process gauge (``slo_error_budget_remaining_ratio``) covers this process's
requests since it started; the shipped Prometheus rules compute the fleet-wide budget over
30 days and alert on burn rates (docs/slo.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..metrics import Metrics

__all__ = ["ErrorBudgets"]


class ErrorBudgets:
    """Computes and exports the remaining error budgets.

    :param metrics: the app's metrics (RED metrics are read, the gauge is written).
    :param availability: target share of non-5xx requests (0: no availability SLO).
    :param latency: target share of requests within ``latency_seconds`` (0: none).
    :param warn: :meth:`health` warns when less than this share of a budget is left.
    """

    def __init__(
        self,
        metrics: Metrics,
        availability: float,
        latency: float,
        latency_seconds: float,
        warn: float,
    ) -> None:
        self.metrics = metrics
        self.targets = {"availability": availability, "latency": latency}
        self.latency_seconds = latency_seconds
        self.warn = warn
        self.gauge = metrics.gauge(
            "slo_error_budget_remaining_ratio",
            "Share of the SLO's error budget left (1 untouched, 0 spent; this process).",
            ["slo"],
            multiprocess_mode="livemin",
        )
        self._remaining: dict[str, float | None] = {}

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

    def update(self) -> dict[str, float | None]:
        """Recompute the budgets and set the gauge; returns ``{slo: remaining or None}``."""
        total, errors, fast = self._totals()
        bad = {"availability": errors, "latency": total - fast}
        remaining: dict[str, float | None] = {}
        for slo, target in self.targets.items():
            if not target:
                continue
            if total == 0:
                remaining[slo] = None
                continue
            value = 1.0 - (bad[slo] / total) / (1.0 - target)
            remaining[slo] = value
            self.gauge.labels(slo).set(value)
        self._remaining = remaining
        return remaining

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
            for slo, remaining in self.budgets.update().items():
                low = remaining is not None and remaining < self.budgets.warn
                out.append(
                    Observation(
                        measurement="errorBudgetRemaining",
                        value=None if remaining is None else round(remaining, 4),
                        unit="ratio",
                        status=Status.WARN if low else Status.PASS,
                        output=f"under {self.budgets.warn:.0%} of the {slo} error budget left"
                        if low
                        else None,
                        component=f"slo-{slo}",
                    )
                )
            return out

    return ErrorBudgetCheck(name, budgets=budgets)
