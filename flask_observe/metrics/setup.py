"""Turning metrics on for an app: registry, RED metrics, the background sampler, SQL and
memory diagnostics, and component gauges (called by :class:`~flask_observe.Observe`)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from .. import _optional

if TYPE_CHECKING:
    from flask import Flask

    from ..config import ObserveConfig
    from ..state import ObserveState

__all__ = ["export_components", "metrics_wanted", "setup_metrics", "setup_sql_diagnostics"]


def metrics_wanted(config: ObserveConfig) -> bool:
    if config.metrics_enabled is False:
        return False
    if config.metrics_enabled:
        _optional.require("prometheus_client", "metrics", "OBSERVE_METRICS_ENABLED")
        return True
    return _optional.detect("prometheus_client", "metrics") is not None


def setup_metrics(app: Flask, state: ObserveState) -> None:
    from .._ticker import Ticker
    from ..metrics import Metrics
    from ..metrics.view import register
    from ..slo import ErrorBudgets

    config = state.config
    metrics = Metrics(
        buckets=config.metrics_buckets,
        excluded=state.excluded,
        exemplars=config.metrics_exemplars,
    )
    state.metrics = metrics
    state._start_hooks.append(metrics.http.on_start)
    state._finish_hooks.append(metrics.http.on_finish)
    register(app, state)
    state.ticker = ticker = Ticker(config.sample_interval_seconds)
    if config.slo_availability or config.slo_latency:
        state.budgets = ErrorBudgets(
            metrics,
            config.slo_availability,
            config.slo_latency,
            config.slo_latency_seconds,
            config.slo_budget_warn,
        )
        ticker.add("error budgets", state.budgets.update)
    setup_sql_diagnostics(state)
    if config.alert_disk_path:
        disk = metrics.gauge(
            "flask_observe_disk_free_ratio",
            "Free share of the file system holding OBSERVE_ALERT_DISK_PATH.",
            ["path"],
            multiprocess_mode="livemin",
        ).labels(config.alert_disk_path)

        def sample_disk() -> None:
            usage = shutil.disk_usage(config.alert_disk_path)
            disk.set(usage.free / usage.total if usage.total else 1.0)

        ticker.add("disk", sample_disk)
    if config.diagnostics_memory is not False:
        if config.diagnostics_memory:
            _optional.require("psutil", "metrics", "OBSERVE_DIAGNOSTICS_MEMORY")
        if _optional.detect("psutil", "memory diagnostics") is not None:
            from ..diagnostics import MemoryWatch

            state.memory = MemoryWatch(
                metrics,
                config.memory_window_seconds,
                config.memory_growth_mb_per_hour,
                config.memory_tracemalloc,
                config.memory_tracemalloc_top,
            )
            ticker.add("memory", state.memory.sample)
            state._closers.append(state.memory.close)


def export_components(state: ObserveState) -> None:
    """Health check results and circuit breaker states as gauges (the shipped Prometheus rules
    and Grafana dashboard read them)."""
    from ..metrics.components import export_breakers, export_health

    assert state.metrics is not None
    if state.health is not None:
        state._closers.append(export_health(state.metrics, state.health))
    undo, sample = export_breakers(state.metrics, state.breakers)
    state._closers.append(undo)
    if state.ticker is not None:
        state.ticker.add("circuit breakers", sample)


def setup_sql_diagnostics(state: ObserveState) -> None:
    config = state.config
    if config.diagnostics_sql is False or state.metrics is None:
        return
    if config.diagnostics_sql:
        _optional.require("sqlalchemy", "sqlalchemy", "OBSERVE_DIAGNOSTICS_SQL")
    elif _optional.detect("sqlalchemy", "SQL diagnostics") is None:
        return
    from ..diagnostics import QueryDiagnostics, queries

    state.queries = QueryDiagnostics(state.metrics, config.slow_query_ms / 1000.0)
    # Before the access log, which reads the db_queries field.
    state._finish_hooks.append(state.queries.on_finish)
    queries.install()
    state._closers.append(queries.uninstall)
