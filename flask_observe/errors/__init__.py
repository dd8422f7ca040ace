"""Error reporting to Sentry: errors only, on the correlation spine, private data kept home.

Each app gets its own ``sentry_sdk.Client`` with no integrations: nothing is patched, no
transaction is started (OpenTelemetry does the tracing), and a successful request costs
nothing — the client is only reached through Flask's ``got_request_exception`` signal (an
unhandled exception in a view) and Celery's ``task_failure``. The event is built here from
the exception and a fresh scope holding only what docs/errors.md lists: the correlation ID,
the trace and span IDs (tags and the ``trace`` context, so Sentry links to the trace), the
service, the route, the method and the URL without its query string. No request body, no
headers or cookies, no query string, no local variables, no client address unless
``OBSERVE_SENTRY_SEND_CLIENT_IP``; a ``before_send`` scrubber removes them again should
anything else put them in.

If the host initialised Sentry itself (``sentry_sdk.init``), its client and integrations are
left to do the reporting; flask_observe only adds the IDs to every event it sends.

Sentry's transport is a background thread with a bounded queue: an endpoint that is down or
hung never blocks a request, and shutdown waits at most ``OBSERVE_SENTRY_SHUTDOWN_TIMEOUT``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..correlation import get_correlation_id

if TYPE_CHECKING:
    from ..config import ObserveConfig
    from .reporter import ErrorReporter

__all__ = ["ErrorReporter", "errors_wanted", "host_sentry_active", "spine_tags"]


def errors_wanted(config: ObserveConfig, environ: Mapping[str, str]) -> bool:
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


def __getattr__(name: str) -> object:
    if name == "ErrorReporter":
        from .reporter import ErrorReporter

        return ErrorReporter
    raise AttributeError(name)
