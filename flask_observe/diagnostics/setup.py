"""The diagnostics feature: slow SQL queries and queries per request, memory growth, free disk
space, as metrics (so it needs the metrics feature)."""

from __future__ import annotations

import shutil

import click

from ..config import ConfigError
from ..feature import Feature, Plan, Wiring, switch
from ..hooks import Stage
from .settings import DiagnosticsSettings

__all__ = ["FEATURE"]


def _sql_wanted(settings: DiagnosticsSettings) -> bool:
    return switch(
        settings.diagnostics_sql,
        "OBSERVE_DIAGNOSTICS_SQL",
        "sqlalchemy",
        "sqlalchemy",
        what="SQL diagnostics",
    )


def _memory_wanted(settings: DiagnosticsSettings) -> bool:
    return switch(
        settings.diagnostics_memory,
        "OBSERVE_DIAGNOSTICS_MEMORY",
        "psutil",
        "metrics",
        what="memory diagnostics",
    )


def _wanted(plan: Plan) -> bool:
    # Figures go into the metrics: nothing to do without them.
    if "metrics" in plan.on:
        return True
    settings = plan.settings(DiagnosticsSettings)
    for key, value in (
        ("OBSERVE_DIAGNOSTICS_SQL", settings.diagnostics_sql),
        ("OBSERVE_DIAGNOSTICS_MEMORY", settings.diagnostics_memory),
    ):
        if value:
            raise ConfigError(
                f"{key}: diagnostics are recorded as metrics, and metrics are off for this app"
                " (OBSERVE_METRICS_ENABLED, or prometheus_client is not installed)"
            )
    return False


def _check(plan: Plan) -> None:
    settings = plan.settings(DiagnosticsSettings)
    # An explicit True without the package is refused here, before anything is set up.
    _sql_wanted(settings)
    _memory_wanted(settings)


def _setup(wiring: Wiring) -> None:
    from ..metrics import Metrics

    settings = wiring.settings(DiagnosticsSettings)
    metrics = wiring.get(Metrics)
    assert metrics is not None  # wanted only with metrics on
    if _sql_wanted(settings):
        from . import queries

        diagnostics = queries.QueryDiagnostics(metrics, settings.slow_query_ms / 1000.0)
        wiring.provide(diagnostics)
        # MEASURE: before the access line, which writes the db_queries field.
        wiring.request_hook(Stage.MEASURE, diagnostics.on_finish)
        queries.install()
        wiring.on_close(queries.uninstall)
        wiring.ticker.add("connection pools", diagnostics.sample_pools)
    if settings.alert_disk_path:
        path = settings.alert_disk_path
        disk = metrics.gauge(
            "flask_observe_disk_free_ratio",
            "Free share of the file system holding OBSERVE_ALERT_DISK_PATH.",
            ["path"],
            multiprocess_mode="livemin",
        ).labels(path)

        def sample_disk() -> None:
            usage = shutil.disk_usage(path)
            disk.set(usage.free / usage.total if usage.total else 1.0)

        wiring.ticker.add("disk", sample_disk)
    if _memory_wanted(settings):
        from .memory import MemoryWatch

        memory = MemoryWatch(
            metrics,
            settings.memory_window_seconds,
            settings.memory_growth_mb_per_hour,
            settings.memory_tracemalloc,
            settings.memory_tracemalloc_top,
        )
        wiring.provide(memory)
        wiring.ticker.add("memory", memory.sample)
        wiring.on_close(memory.close)


def _commands() -> list[click.Command]:
    from .cli import db

    return [db]


FEATURE = Feature(
    "diagnostics", DiagnosticsSettings, _setup, wanted=_wanted, check=_check, commands=_commands
)
