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

from typing import TYPE_CHECKING

from .spine import errors_wanted, host_sentry_active, spine_tags

if TYPE_CHECKING:
    from .reporter import ErrorReporter

__all__ = ["ErrorReporter", "errors_wanted", "host_sentry_active", "spine_tags"]


def __getattr__(name: str) -> object:
    if name == "ErrorReporter":
        from .reporter import ErrorReporter

        return ErrorReporter
    raise AttributeError(name)
