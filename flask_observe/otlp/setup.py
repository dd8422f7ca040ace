"""The OTLP feature: logs and metrics through the OpenTelemetry SDK's pipelines.

It comes after logging (its handler sits beside the logging feature's, with the same fields),
tracing (the same resource as the spans), metrics (the declared outbound hosts) and breakers
(their state), and before correlation, whose middleware runs its request hooks.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._internal import exit_flushes
from ..config import ConfigError, CoreSettings
from ..feature import Feature, Plan, Wiring, switch
from ..hooks import Stage
from .exporters import choose_exporter
from .settings import OtlpSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

    from .logs import OtlpLogHandler

__all__ = ["FEATURE"]

logger = logging.getLogger("flask_observe.otlp")

#: A collector address: ``scheme://host[:port][/path]`` or, for gRPC, ``host:port``.
_ENDPOINT = re.compile(r"(?:https?://[^\s/:]+(?::\d{1,5})?(?:/\S*)?|[A-Za-z0-9.-]+:\d{1,5})")


def exporter_of(signal: str, settings: OtlpSettings, environ: Mapping[str, str]) -> str:
    """The exporter ``signal`` uses (``none`` when it is off)."""
    enabled = getattr(settings, f"otlp_{signal}_enabled")
    if enabled is False:
        return "none"
    exporter = getattr(settings, f"otlp_{signal}_exporter")
    name = choose_exporter(signal, exporter, getattr(settings, f"otlp_{signal}_endpoint"), environ)
    named = environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower()
    if name == "none" and enabled and exporter is None and named != "none":
        # Asked for without saying where: the SDK's default collector (localhost:4317).
        name = choose_exporter(
            signal, None, None, {**environ, f"OTEL_{signal.upper()}_EXPORTER": "otlp"}
        )
    return name


def _signal_on(signal: str, plan: Plan) -> bool:
    settings = plan.settings(OtlpSettings)
    if exporter_of(signal, settings, plan.environ) == "none":
        return False
    return switch(
        getattr(settings, f"otlp_{signal}_enabled"),
        f"OBSERVE_OTLP_{signal.upper()}_ENABLED",
        "opentelemetry.sdk",
        "otlp",
        auto=f"an OTLP {signal} exporter is configured",
        what=f"OTLP {signal}",
    )


def _wanted(plan: Plan) -> bool:
    return _signal_on("logs", plan) or _signal_on("metrics", plan)


def _check(plan: Plan) -> None:
    settings = plan.settings(OtlpSettings)
    for signal in ("logs", "metrics"):
        if _signal_on(signal, plan):
            _require_sdk(signal)
    for signal in ("logs", "metrics"):
        endpoint = getattr(settings, f"otlp_{signal}_endpoint")
        if endpoint is not None and not _ENDPOINT.fullmatch(endpoint):
            raise ConfigError(
                f"OBSERVE_OTLP_{signal.upper()}_ENDPOINT: expected a collector address such as"
                f" 'http://127.0.0.1:4317' (or 'host:port' for gRPC), got {endpoint!r}"
            )
    _interval(settings, plan.environ)


def _require_sdk(signal: str) -> None:
    """The SDK's pipeline of ``signal`` as this package uses it (opentelemetry-sdk 1.39+)."""
    from .._optional import MissingDependencyError

    try:
        if signal == "logs":
            from opentelemetry.sdk._logs.export import LogRecordExporter  # noqa: F401
        else:
            from opentelemetry.sdk.metrics.export import MetricExporter  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"OTLP {signal} need opentelemetry-sdk 1.39 or later ({exc}):"
            ' pip install "flask-observe[otlp]"'
        ) from None


def _interval(settings: OtlpSettings, environ: Mapping[str, str]) -> float:
    if settings.otlp_metrics_interval_seconds is not None:
        return settings.otlp_metrics_interval_seconds
    raw = environ.get("OTEL_METRIC_EXPORT_INTERVAL")
    if not raw:
        return 60.0
    try:
        millis = float(raw)
    except ValueError:
        millis = 0.0
    if not millis > 0:
        raise ConfigError(f"OTEL_METRIC_EXPORT_INTERVAL: expected milliseconds > 0, got {raw!r}")
    return millis / 1000.0


def _resource(wiring: Wiring) -> Resource:
    """The spans' resource when tracing set up a provider of ours, else the same builder's."""
    from opentelemetry.sdk.trace import TracerProvider

    from ..tracing.conventions import detected_resource
    from ..tracing.handle import TracingSetup
    from ..tracing.pipeline import build_resource

    tracing = wiring.get(TracingSetup)
    if tracing is not None and isinstance(tracing.provider, TracerProvider):
        return tracing.provider.resource
    core = wiring.settings(CoreSettings)
    return build_resource(
        core.service_name,
        wiring.service_name,
        core.service_version,
        core.environment,
        detected_resource(wiring.environ),
    )


def _setup(wiring: Wiring) -> None:
    settings = wiring.settings(OtlpSettings)
    plan_environ = wiring.environ
    resource = _resource(wiring)
    logs = exporter_of("logs", settings, plan_environ)
    metrics = exporter_of("metrics", settings, plan_environ)
    if logs != "none" and _switch_on(settings.otlp_logs_enabled):
        _setup_logs(wiring, settings, resource, logs)
    if metrics != "none" and _switch_on(settings.otlp_metrics_enabled):
        _setup_metrics(wiring, settings, resource, metrics)


def _switch_on(enabled: bool | None) -> bool:
    if enabled is not None:
        return enabled
    from .. import _optional

    return _optional.detect("opentelemetry.sdk", "OTLP logs and metrics") is not None


# -- logs: one handler per process, shared by the apps that ask for it -----------------------


class _Shared:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handler: OtlpLogHandler | None = None
        self.key: tuple[Any, ...] = ()
        self.users = 0
        self.exit_key = 0
        self.level_undo: list[Any] = []


_SHARED = _Shared()


def _setup_logs(wiring: Wiring, settings: OtlpSettings, resource: Resource, name: str) -> None:
    from ..logging.formatter import ObserveFormatter, share_fields
    from ..logging.settings import LoggingSettings
    from ..state import state_or_none
    from . import OtlpLogs
    from .exporters import log_exporter_factory
    from .logs import LogsPipeline, OtlpLogHandler

    level_name = settings.otlp_logs_level or wiring.settings(LoggingSettings).log_level
    level = logging.getLevelName(level_name)
    key = (name, settings.otlp_logs_endpoint, level)
    root = logging.getLogger()
    with _SHARED.lock:
        handler = _SHARED.handler
        if handler is None:
            factory = log_exporter_factory(name, settings.otlp_logs_endpoint)
            assert factory is not None
            pipeline = LogsPipeline(
                resource,
                factory,
                queue_size=settings.otlp_logs_queue_size,
                shutdown_timeout=settings.otlp_shutdown_timeout,
                identity=tuple(wiring.state.log_identity),
            )
            identity = wiring.state.log_identity

            def lookup() -> Mapping[str, Any] | None:
                state = state_or_none()
                return state.log_identity if state is not None else None

            static = {k: v for k, v in identity.items() if k != "service"}
            formatter = ObserveFormatter(identity["service"], "json", static, lookup)
            handler = OtlpLogHandler(pipeline, formatter, level)
            root.addHandler(handler)
            share_fields(True)
            if root.level == logging.NOTSET or root.level > level:
                before = root.level
                root.setLevel(level)
                _SHARED.level_undo.append(lambda: root.setLevel(before))
            _SHARED.handler, _SHARED.key = handler, key
            _SHARED.exit_key = exit_flushes.add(pipeline.shutdown, settings.otlp_shutdown_timeout)
        elif _SHARED.key != key:
            logger.warning(
                "flask_observe: OTLP logs are already exported by another app of this process;"
                " this app's OBSERVE_OTLP_LOGS_* settings differ and are not applied (the first"
                " app's stand)"
            )
        _SHARED.users += 1
    wiring.provide(OtlpLogs(handler.pipeline, name))
    wiring.on_close(_release_logs)


def _release_logs() -> None:
    from ..logging.formatter import share_fields

    with _SHARED.lock:
        _SHARED.users -= 1
        if _SHARED.users > 0 or _SHARED.handler is None:
            return
        handler, _SHARED.handler = _SHARED.handler, None
        exit_flushes.remove(_SHARED.exit_key)
        undo, _SHARED.level_undo = _SHARED.level_undo, []
    logging.getLogger().removeHandler(handler)
    share_fields(False)
    handler.pipeline.shutdown()
    for step in reversed(undo):
        step()


# -- metrics: one pipeline per app ------------------------------------------------------------


def _setup_metrics(wiring: Wiring, settings: OtlpSettings, resource: Resource, name: str) -> None:
    from .. import _optional
    from ..breakers.registry import BreakerRegistry
    from ..metrics.settings import MetricsSettings
    from .exporters import metric_exporter_factory
    from .metrics import MetricsPipeline, OtlpMetrics, QueryListener

    factory = metric_exporter_factory(name, settings.otlp_metrics_endpoint)
    assert factory is not None
    registry = wiring.get(BreakerRegistry)
    pipeline = MetricsPipeline(
        resource,
        factory,
        wiring.environ,
        interval=_interval(settings, wiring.environ),
        excluded=wiring.state.excluded,
        hosts=wiring.settings(MetricsSettings).metrics_outbound_hosts,
        breakers=registry.all if registry is not None else None,
        shutdown_timeout=settings.otlp_shutdown_timeout,
    )
    wiring.provide(OtlpMetrics(pipeline, name))
    wiring.on_close(pipeline.shutdown)
    wiring.at_exit(pipeline.shutdown, settings.otlp_shutdown_timeout)
    wiring.request_hook(Stage.START, pipeline.on_start)
    wiring.request_hook(Stage.MEASURE, pipeline.on_finish)
    wiring.outbound_hook(pipeline.on_outbound)
    if _optional.detect("sqlalchemy", "OTLP database metrics") is not None:
        wiring.on_close(QueryListener.add(pipeline))


FEATURE = Feature("otlp", OtlpSettings, _setup, wanted=_wanted, check=_check)
