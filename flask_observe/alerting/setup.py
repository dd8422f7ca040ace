"""The alerting feature: channels, the router and its store, in-process rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .. import _optional
from ..config import ConfigError
from ..feature import Feature, Plan, Wiring
from .settings import AlertingSettings

if TYPE_CHECKING:
    from ..health.runner import HealthRunner
    from .channels import Channel

__all__ = ["FEATURE", "failing_checks"]


def _wanted(plan: Plan) -> bool:
    return bool(plan.settings(AlertingSettings).alert_channels)


def _channels(settings: AlertingSettings) -> list[Channel]:
    from .channels import build_channels
    from .urls import UrlPolicy

    policy = UrlPolicy(settings.alert_allow_http, settings.alert_allow_hosts)
    try:
        return build_channels(settings.alert_channels, policy, settings.alert_timeout_seconds)
    except ValueError as exc:
        raise ConfigError(f"OBSERVE_ALERT_CHANNELS: {exc}") from None


def _check(plan: Plan) -> None:
    settings = plan.settings(AlertingSettings)
    _channels(settings)
    if settings.alert_redis_url:
        _optional.require("redis", "redis", "OBSERVE_ALERT_REDIS_URL")


def _alert_counters(metrics: Any) -> Any:
    """``flask_observe_alerts_{fired,sent,failed,dropped}_total``: what the router did."""
    if metrics is None:
        return None
    fired = metrics.counter(
        "flask_observe_alerts_fired_total", "Alerts raised firing, by severity.", ["severity"]
    )
    by_channel = {
        event: metrics.counter(
            f"flask_observe_alerts_{event}_total",
            f"Alert notifications {text}, by channel.",
            ["channel"],
        )
        for event, text in (
            ("sent", "delivered"),
            ("failed", "not delivered (attempts used up, or the channel broke)"),
            ("dropped", "dropped (queue full: channel <queue>; a throttled channel's hold full)"),
        )
    }

    def count(event: str, alert: Any, channel: str) -> None:
        if event == "fired":
            fired.labels(alert.severity).inc()
        else:
            by_channel[event].labels(channel).inc()

    return count


def _setup(wiring: Wiring) -> None:
    from ..breakers.registry import BreakerRegistry
    from ..diagnostics.memory import MemoryWatch
    from ..diagnostics.settings import DiagnosticsSettings
    from ..health.runner import HealthRunner
    from ..metrics import Metrics
    from . import rules as r
    from .router import AlertRouter
    from .store import MemoryStore, RedisStore

    settings = wiring.settings(AlertingSettings)
    store: MemoryStore | RedisStore
    if settings.alert_redis_url:
        store = RedisStore(
            settings.alert_redis_url,
            settings.alert_redis_prefix,
            retry_interval=settings.alert_redis_retry_seconds,
        )
        wiring.on_close(store.close)
    else:
        store = MemoryStore()
    router = AlertRouter(
        _channels(settings),
        store,
        service=wiring.service_name,
        dedup=settings.alert_dedup_seconds,
        cooldown=settings.alert_cooldown_seconds,
        queue_size=settings.alert_queue_size,
        hold_size=settings.alert_hold_size,
        on_event=_alert_counters(wiring.get(Metrics)),
    )
    wiring.provide(router)
    wiring.on_close(router.close)
    # A process exiting normally (gunicorn's graceful stop) sends what is queued first.
    wiring.at_exit(router.flush_at_exit, router.EXIT_TIMEOUT)
    if not settings.alert_rules_enabled:
        return
    engine = r.RuleEngine(
        router,
        settings.alert_rules_consecutive,
        wiring.service_name,
        resolve_after=settings.alert_resolve_after_seconds,
    )
    wiring.provide(engine)
    window = None
    metrics = wiring.get(Metrics)
    if metrics is not None:
        window = r.HttpWindow(metrics.http, settings.alert_error_rate_window_seconds)
        engine.add(r.ErrorRateRule(window, settings.alert_error_rate))
        if settings.alert_latency_seconds:
            engine.add(r.LatencyRule(window, settings.alert_latency_seconds))
    memory = wiring.get(MemoryWatch)
    diagnostics = wiring.settings(DiagnosticsSettings)
    if memory is not None and (settings.alert_memory_mb or diagnostics.memory_growth_mb_per_hour):
        engine.add(
            r.MemoryRule(
                memory.rss,
                memory.growth_mb_per_hour,
                settings.alert_memory_mb,
                diagnostics.memory_growth_mb_per_hour,
            )
        )
    if settings.alert_disk_free:
        engine.add(r.DiskRule(diagnostics.alert_disk_path, settings.alert_disk_free))
    breakers = wiring.get(BreakerRegistry)
    if breakers is not None:
        engine.add(
            r.BreakerRule(lambda: [(n, str(b.current_state)) for n, b in breakers.all().items()])
        )
    runner = wiring.get(HealthRunner)
    if runner is not None:
        engine.add(r.HealthRule(lambda: failing_checks(runner)))

    def evaluate_rules() -> None:
        if window is not None:
            window.sample()
        engine.evaluate()

    wiring.ticker.add("alert rules", evaluate_rules)


def failing_checks(runner: HealthRunner) -> dict[str, bool | str]:
    """``{check: True or why it fails}`` for the in-process ``HealthRule`` (cached runs)."""
    from ..health.checks import Status

    report = runner.run()
    return {
        result.name: True if result.status != Status.FAIL else (result.output or "fail")
        for result in report.results
    }


def _commands() -> list[click.Command]:
    from .cli import alerts

    return [alerts]


FEATURE = Feature(
    "alerting", AlertingSettings, _setup, wanted=_wanted, check=_check, commands=_commands
)
