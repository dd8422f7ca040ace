"""The SLO feature: error budgets of the availability and latency objectives, from the RED
metrics, as a gauge and an entry of the full health report."""

from __future__ import annotations

from ..config import ConfigError
from ..feature import Feature, Plan, Wiring
from ..metrics.settings import MetricsSettings
from .settings import SloSettings

__all__ = ["FEATURE"]


def _wanted(plan: Plan) -> bool:
    settings = plan.settings(SloSettings)
    return "metrics" in plan.on and bool(settings.slo_availability or settings.slo_latency)


def _check(plan: Plan) -> None:
    settings = plan.settings(SloSettings)
    buckets = plan.settings(MetricsSettings).metrics_buckets
    if settings.slo_latency and settings.slo_latency_seconds not in buckets:
        raise ConfigError(
            f"OBSERVE_SLO_LATENCY_SECONDS: expected one of OBSERVE_METRICS_BUCKETS"
            f" {list(buckets)}, got {settings.slo_latency_seconds!r}"
        )


def _setup(wiring: Wiring) -> None:
    from ..health.runner import HealthRunner
    from ..metrics import Metrics
    from .budgets import ErrorBudgets, budget_check

    settings = wiring.settings(SloSettings)
    metrics = wiring.get(Metrics)
    assert metrics is not None  # wanted only with metrics on
    budgets = ErrorBudgets(
        metrics,
        settings.slo_availability,
        settings.slo_latency,
        settings.slo_latency_seconds,
        settings.slo_budget_warn,
        window=settings.slo_window_seconds,
        min_requests=settings.slo_min_requests,
    )
    wiring.provide(budgets)
    wiring.ticker.add("error budgets", budgets.update)
    runner = wiring.get(HealthRunner)
    if runner is not None:
        runner.add(budget_check(budgets))


FEATURE = Feature("slo", SloSettings, _setup, wanted=_wanted, check=_check)
