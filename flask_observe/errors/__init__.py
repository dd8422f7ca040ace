"""Errors: one capture layer for every error of an app, and Sentry as one of its sinks.

The capture layer is on whenever ``Observe`` is and costs nothing on a successful request: it
is reached only through Flask's ``got_request_exception`` signal (an exception a view did not
handle), Celery's ``task_failure``, a handler on the root logger at the event level
(``OBSERVE_ERRORS_EVENT_LEVEL``, ERROR), and the capture API
(:func:`flask_observe.capture_exception`, :func:`flask_observe.capture_message`). Each error
becomes one :class:`CapturedError` — scrubbed, with its frames but never their variables,
fingerprinted, on the correlation spine — handed to the sinks and to the listeners added with
:meth:`ErrorCapture.add_listener`.

The Sentry sink (:class:`ErrorReporter`) is on when a DSN is set: the app's own
``sentry_sdk.Client`` with no integrations (nothing patched, no transaction; OpenTelemetry
does the tracing), bound to each request's and task's scope so the host's
``sentry_sdk.capture_exception``, ``set_user`` and ``add_breadcrumb`` work as they do under
``sentry_sdk.init``. Every event it sends goes through one ``before_send``: the IDs, the
request without its query string, the breadcrumbs (log lines below the event level), then
the scrubber. If the host initialised Sentry itself (``sentry_sdk.init``), its client and
integrations do the reporting; flask_observe adds the IDs to every event it sends.

Sentry's transport is a background thread with a bounded queue: an endpoint that is down or
hung never blocks a request, and shutdown waits at most ``OBSERVE_SENTRY_SHUTDOWN_TIMEOUT``.
See docs/errors.md for exactly what is sent on each path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .capture import CapturedError, ErrorCapture
from .spine import host_sentry_active, sentry_wanted

if TYPE_CHECKING:
    from .reporter import ErrorReporter

__all__ = ["CapturedError", "ErrorCapture", "ErrorReporter", "host_sentry_active", "sentry_wanted"]


def __getattr__(name: str) -> object:
    if name == "ErrorReporter":
        from .reporter import ErrorReporter

        return ErrorReporter
    raise AttributeError(name)
