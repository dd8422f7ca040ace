"""Circuit breakers (pybreaker's), named per app: ``observe.circuit_breaker("platform-api")``.

See :mod:`.registry` and docs/health.md#circuit-breakers.
"""

from __future__ import annotations

from .registry import BreakerRegistry

__all__ = ["BreakerRegistry"]
