"""Turning alerting on for an app: channels, the router and its store, in-process rules
(called by :class:`~flask_observe.Observe`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _optional

if TYPE_CHECKING:
    from ..state import ObserveState

__all__ = ["failing_checks", "setup_alerting"]


def setup_alerting(state: ObserveState) -> None:
    from .._ticker import Ticker
    from ..alerting import AlertRouter, MemoryStore, RedisStore, RuleEngine, UrlPolicy
    from ..alerting import rules as r
    from ..alerting.channels import build_channels
    from ..config import ConfigError

    config = state.config
    policy = UrlPolicy(config.alert_allow_http, config.alert_allow_hosts)
    try:
        channels = build_channels(config.alert_channels, policy, config.alert_timeout_seconds)
    except ValueError as exc:
        raise ConfigError(f"OBSERVE_ALERT_CHANNELS: {exc}") from None
    store: MemoryStore | RedisStore
    if config.alert_redis_url:
        _optional.require("redis", "redis", "OBSERVE_ALERT_REDIS_URL")
        store = RedisStore(config.alert_redis_url, config.alert_redis_prefix)
        state._closers.append(store.close)
    else:
        store = MemoryStore()
    router = AlertRouter(
        channels,
        store,
        service=state.service_name,
        dedup=config.alert_dedup_seconds,
        cooldown=config.alert_cooldown_seconds,
        queue_size=config.alert_queue_size,
    )
    state.alerts = router
    state._closers.append(router.close)
    # A process exiting normally (gunicorn's graceful stop) sends what is queued first.
    from .._internal import exit_flushes

    exit_key = exit_flushes.add(router.flush_at_exit, router.EXIT_TIMEOUT)
    state._closers.append(lambda: exit_flushes.remove(exit_key))
    if not config.alert_rules_enabled:
        return
    engine = RuleEngine(router, config.alert_rules_consecutive, state.service_name)
    state.rules = engine
    window = None
    if state.metrics is not None:
        window = r.HttpWindow(state.metrics.http, config.alert_error_rate_window_seconds)
        engine.add(r.ErrorRateRule(window, config.alert_error_rate))
        if config.alert_latency_seconds:
            engine.add(r.LatencyRule(window, config.alert_latency_seconds))
    memory = state.memory
    if memory is not None and (config.alert_memory_mb or config.memory_growth_mb_per_hour):
        engine.add(
            r.MemoryRule(
                memory.rss,
                memory.growth_mb_per_hour,
                config.alert_memory_mb,
                config.memory_growth_mb_per_hour,
            )
        )
    if config.alert_disk_free:
        engine.add(r.DiskRule(config.alert_disk_path, config.alert_disk_free))
    # The app's circuit breakers (observe.circuit_breaker) and health checks (set up after
    # this; read when the rules run).
    breakers = state.breakers
    engine.add(
        r.BreakerRule(lambda: [(n, str(b.current_state)) for n, b in breakers.all().items()])
    )
    if config.health_enabled:
        engine.add(r.HealthRule(lambda: failing_checks(state)))
    if state.ticker is None:
        state.ticker = Ticker(config.sample_interval_seconds)

    def evaluate_rules() -> None:
        if window is not None:
            window.sample()
        engine.evaluate()

    state.ticker.add("alert rules", evaluate_rules)


def failing_checks(state: ObserveState) -> dict[str, bool | str]:
    """``{check: True or why it fails}`` for the in-process ``HealthRule`` (cached runs)."""
    from ..health.checks import Status

    runner = state.health
    if runner is None:
        return {}
    report = runner.run()
    return {
        result.name: True if result.status != Status.FAIL else (result.output or "fail")
        for result in report.results
    }
