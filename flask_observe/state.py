"""What :class:`~flask_observe.Observe` set up for one app (``app.extensions["observe"]``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .auth import Authorizer
from .breakers import BreakerRegistry
from .config import ObserveConfig
from .correlation import CorrelationMiddleware

if TYPE_CHECKING:
    from ._ticker import Ticker
    from .access_log import AccessLog
    from .alerting import AlertRouter, RuleEngine
    from .correlation import RequestRecord
    from .diagnostics import MemoryWatch, QueryDiagnostics
    from .errors.reporter import ErrorReporter
    from .health.report import Identity
    from .health.runner import HealthRunner
    from .log_setup import LoggingSetup
    from .logviewer.viewer import LogViewer
    from .metrics import Metrics
    from .outbound import OutboundRules
    from .slo import ErrorBudgets
    from .tracing import TracingSetup

Hook = Callable[["RequestRecord"], None]

__all__ = ["EXTENSION_KEY", "ObserveState"]

#: Where the state lives in ``app.extensions``.
EXTENSION_KEY = "observe"


@dataclass
class ObserveState:
    """What ``Observe`` set up for one app; lives in ``app.extensions["observe"]``."""

    config: ObserveConfig
    service_name: str
    #: Grants access to the sensitive endpoints (health details, log viewer, …).
    auth: Authorizer
    #: ``service`` (and ``version``/``environment``) fields of this app's log lines.
    log_identity: Mapping[str, Any] = field(default_factory=dict)
    middleware: CorrelationMiddleware | None = None
    logging: LoggingSetup | None = None
    access_log: AccessLog | None = None
    excluded: Callable[[str], bool] | None = None
    outbound: OutboundRules | None = None
    #: OpenTelemetry tracing (docs/tracing.md); ``None`` when off.
    tracing: TracingSetup | None = None
    #: Sentry error reporting (docs/errors.md); ``None`` when off.
    errors: ErrorReporter | None = None
    #: Prometheus registry, RED metrics and the business-metric API (``None`` when off).
    metrics: Metrics | None = None
    queries: QueryDiagnostics | None = None
    memory: MemoryWatch | None = None
    budgets: ErrorBudgets | None = None
    #: Alert router (``None`` when no channel is configured) and in-process rules.
    alerts: AlertRouter | None = None
    rules: RuleEngine | None = None
    #: Background sampler (memory, error budgets, rules), started by the first request.
    ticker: Ticker | None = None
    _start_hooks: list[Hook] = field(default_factory=list, repr=False)
    _finish_hooks: list[Hook] = field(default_factory=list, repr=False)
    #: The health checks and the machinery running them (``None`` when health is off).
    health: HealthRunner | None = None
    #: ``serviceId``, ``version``… of the health document.
    health_identity: Identity | None = None
    #: The app's circuit breakers (``observe.circuit_breaker``).
    breakers: BreakerRegistry = field(default_factory=BreakerRegistry)
    #: The log viewer (API, page) when ``OBSERVE_LOGVIEWER_ENABLED``.
    logviewer: LogViewer | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Undo what was set up, last first; safe to call twice."""
        while self._closers:
            self._closers.pop()()
