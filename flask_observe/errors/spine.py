"""When error reporting is wanted, and the IDs (the spine) every event carries."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..context import get_correlation_id

if TYPE_CHECKING:
    from .settings import ErrorsSettings

__all__ = ["errors_wanted", "host_sentry_active", "spine_tags"]


def errors_wanted(config: ErrorsSettings, environ: Mapping[str, str]) -> bool:
    """``OBSERVE_SENTRY_ENABLED``, or (unset) whether a DSN is configured or the host
    initialised Sentry itself."""
    if config.sentry_enabled is not None:
        return config.sentry_enabled
    return bool(config.sentry_dsn or environ.get("SENTRY_DSN")) or host_sentry_active()


def host_sentry_active() -> bool:
    """Whether the host initialised Sentry itself (looked for, never imported; a sentry-sdk
    older than 2.0, which flask_observe does not use, does not count)."""
    get_client = getattr(sys.modules.get("sentry_sdk"), "get_client", None)
    return get_client is not None and bool(get_client().is_active())


def spine_tags() -> dict[str, str]:
    """``correlation_id``, ``trace_id`` and ``span_id`` of the current request or task."""
    tags: dict[str, str] = {}
    correlation_id = get_correlation_id()
    if correlation_id is not None:
        tags["correlation_id"] = correlation_id
    try:
        from opentelemetry.trace import get_current_span
    except ImportError:
        return tags
    context = get_current_span().get_span_context()
    if context.is_valid:
        tags["trace_id"] = f"{context.trace_id:032x}"
        tags["span_id"] = f"{context.span_id:016x}"
    return tags
