"""Health: liveness, readiness and startup probes with real dependency checks.

``Observe(app)`` mounts the blueprint (``OBSERVE_HEALTH_*`` settings) and keeps a
:class:`HealthRunner` in ``Observe.state(app).health``. Register checks with
``observe.add_health_check(check)`` or ``@observe.health_check("name")``.
See docs/health.md.
"""

from __future__ import annotations

from .checks import (
    LIVENESS,
    READINESS,
    STARTUP,
    CheckFailed,
    CheckWarning,
    FunctionCheck,
    HealthCheck,
    Observation,
    Status,
)
from .datastores import DatabaseCheck, RedisCheck
from .report import MEDIA_TYPE, score
from .results import CheckResult, HealthReport, Trend
from .runner import HealthRunner
from .services import CeleryCheck, DependencyCheck, HttpCheck
from .system import DiskCheck, MemoryCheck

__all__ = [
    "LIVENESS",
    "MEDIA_TYPE",
    "READINESS",
    "STARTUP",
    "CeleryCheck",
    "CheckFailed",
    "CheckResult",
    "CheckWarning",
    "DatabaseCheck",
    "DependencyCheck",
    "DiskCheck",
    "FunctionCheck",
    "HealthCheck",
    "HealthReport",
    "HealthRunner",
    "HttpCheck",
    "MemoryCheck",
    "Observation",
    "RedisCheck",
    "Status",
    "Trend",
    "score",
]
