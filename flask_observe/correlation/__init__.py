"""Correlation IDs: one ID per request, validated or generated at the WSGI level, given to
allowed hosts on outgoing calls and to Celery tasks (docs/correlation.md).

- :mod:`flask_observe.context` (core) — the ID of the current request or task;
- :mod:`.middleware` — the one request middleware;
- :mod:`.outbound` — the ID (and trace context) on outgoing ``requests`` calls;
- :mod:`.celery` — the ID in task messages, bound in the worker;
- :mod:`.setup` — the feature.
"""

from __future__ import annotations

from ..context import bind_correlation_id, get_correlation_id, new_correlation_id
from .middleware import CorrelationMiddleware

__all__ = [
    "CorrelationMiddleware",
    "bind_correlation_id",
    "get_correlation_id",
    "new_correlation_id",
]
