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

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flask import Flask, got_request_exception
from flask.globals import _cv_app, _cv_request

from ._internal import FailureLog, exit_flushes, run_with_deadline
from .correlation import get_correlation_id

if TYPE_CHECKING:
    from .config import ObserveConfig
    from .extension import ObserveState

__all__ = ["ErrorReporter", "errors_wanted", "host_sentry_active", "scrub_event", "spine_tags"]

logger = logging.getLogger("flask_observe.errors")

_REPORTED_ATTR = "__flask_observe_reported__"
_REQUEST_KEYS_DROPPED = ("query_string", "cookies", "data", "env", "headers")
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def errors_wanted(config: ObserveConfig, environ: Mapping[str, str]) -> bool:
    """``OBSERVE_SENTRY_ENABLED``, or (unset) whether a DSN is configured or the host
    initialised Sentry itself."""
    if config.sentry_enabled is not None:
        return config.sentry_enabled
    return bool(config.sentry_dsn or environ.get("SENTRY_DSN")) or host_sentry_active()


def host_sentry_active() -> bool:
    """Whether the host initialised Sentry itself (looked for, never imported)."""
    module = sys.modules.get("sentry_sdk")
    return module is not None and bool(module.get_client().is_active())


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


def scrub_event(event: dict[str, Any], send_client_ip: bool = False) -> dict[str, Any]:
    """Remove what must never leave: request bodies, headers, cookies, query strings,
    environment, local variables, breadcrumbs, extra data, and the client address unless
    allowed. Applied to every event our client sends (``before_send``)."""
    request = event.get("request")
    if isinstance(request, dict):
        for key in _REQUEST_KEYS_DROPPED:
            request.pop(key, None)
        url = request.get("url")
        if isinstance(url, str):
            request["url"] = url.split("?", 1)[0].split("#", 1)[0]
    user = event.get("user")
    if isinstance(user, dict) and not send_client_ip:
        user.pop("ip_address", None)
    for key in ("breadcrumbs", "extra"):
        event.pop(key, None)
    for container in (event.get("exception"), event.get("threads")):
        values = container.get("values") if isinstance(container, dict) else None
        for value in values or ():
            stacktrace = value.get("stacktrace") if isinstance(value, dict) else None
            for frame in (stacktrace or {}).get("frames") or ():
                if isinstance(frame, dict):
                    frame.pop("vars", None)
    return event


class ErrorReporter:
    """Sends one app's errors to Sentry (``Observe.state(app).errors``).

    :param client: our own ``sentry_sdk.Client``, or ``None`` when the host's Sentry setup
        does the reporting.
    """

    def __init__(
        self,
        client: Any,
        *,
        service: str,
        send_client_ip: bool,
        shutdown_timeout: float,
    ) -> None:
        self.client = client
        self.service = service
        self.send_client_ip = send_client_ip
        self.shutdown_timeout = shutdown_timeout
        self.captured = 0
        self._failures = FailureLog()
        self._closed = False
        self._lock = threading.Lock()

    def capture(
        self,
        exc_info: ExcInfo,
        *,
        mechanism: str,
        request: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        user_ip: str | None = None,
    ) -> str | None:
        """Report an unhandled exception; returns the event ID (``None`` if not sent).

        Never raises: a failure is logged (rate-limited) and the host goes on.
        """
        client = self.client
        error = exc_info[1]
        if client is None or getattr(error, _REPORTED_ATTR, False):
            return None
        try:
            # An exception type without a __dict__ cannot be marked: report it anyway.
            with contextlib.suppress(Exception):
                setattr(error, _REPORTED_ATTR, True)
            return self._capture(client, exc_info, mechanism, request, tags, user_ip)
        except Exception:
            self._failures("reporting an error to Sentry")
            return None

    def _capture(
        self,
        client: Any,
        exc_info: ExcInfo,
        mechanism: str,
        request: Mapping[str, Any] | None,
        tags: Mapping[str, str] | None,
        user_ip: str | None,
    ) -> str | None:
        import sentry_sdk
        from sentry_sdk.utils import event_from_exception

        event, hint = event_from_exception(
            exc_info, client_options=client.options, mechanism={"type": mechanism, "handled": False}
        )
        scope = sentry_sdk.Scope()
        spine = spine_tags()
        for key, value in spine.items():
            scope.set_tag(key, value)
        scope.set_tag("service", self.service)
        for key, value in (tags or {}).items():
            scope.set_tag(key, value)
        if "trace_id" in spine:
            # Sentry's own trace context, from OpenTelemetry's IDs: the issue links to the
            # trace in the tracing backend and to the log lines carrying the same trace_id.
            scope.set_context("trace", {"trace_id": spine["trace_id"], "span_id": spine["span_id"]})
        if request:
            event["request"] = dict(request)
            route = request.get("route")
            if route:
                event["transaction"] = route
                event["request"].pop("route")
        if user_ip and self.send_client_ip:
            event["user"] = {"ip_address": user_ip}
        event_id: str | None = client.capture_event(event, hint=hint, scope=scope)
        if event_id is not None:
            self.captured += 1
        return event_id

    def close(self) -> bool:
        """Send what is queued and stop, waiting at most ``shutdown_timeout`` seconds."""
        with self._lock:
            if self._closed or self.client is None:
                self._closed = True
                return True
            self._closed = True
        client = self.client
        return run_with_deadline(
            lambda: client.close(timeout=self.shutdown_timeout),
            self.shutdown_timeout + 0.25,
            "sentry-shutdown",
        )


# -- hooks --------------------------------------------------------------------------------


def _request_details() -> tuple[dict[str, Any], str | None]:
    """Method, URL without query string and route of the current request; client address."""
    ctx = _cv_request.get(None)
    if ctx is None:
        return {}, None
    request = ctx.request
    rule = request.url_rule
    details: dict[str, Any] = {"method": request.method, "url": request.base_url}
    if rule is not None:
        details["route"] = rule.rule
    return details, request.remote_addr


def _request_hook(reporter: ErrorReporter) -> Callable[..., None]:
    def on_exception(sender: Flask, exception: BaseException | None = None, **_: Any) -> None:
        if exception is None:
            return
        details, address = _request_details()
        reporter.capture(
            (type(exception), exception, exception.__traceback__),
            mechanism="flask",
            request=details,
            user_ip=address,
        )

    return on_exception


# Process-wide by nature, like Celery's signals: reporters of the running apps, in order.
_live: list[ErrorReporter] = []
_live_lock = threading.Lock()
_CELERY_UID = "flask_observe.errors.task_failure"
_host_failures = FailureLog()
_host_processor_added = False


def _current_reporter() -> ErrorReporter | None:
    from .extension import EXTENSION_KEY

    ctx = _cv_app.get(None)
    if ctx is not None:
        state = ctx.app.extensions.get(EXTENSION_KEY)
        if state is not None:
            return state.errors  # type: ignore[no-any-return]
    return _live[0] if _live else None


def _on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    reporter = _current_reporter()
    if reporter is None or exception is None:
        return
    expected = getattr(sender, "throws", ())
    if expected and isinstance(exception, tuple(expected)):
        return  # declared by the task as an expected error (Celery logs it at INFO)
    traceback = getattr(einfo, "tb", None) or exception.__traceback__
    tags = {"celery.task_name": str(getattr(sender, "name", "")), "celery.task_id": str(task_id)}
    reporter.capture((type(exception), exception, traceback), mechanism="celery", tags=tags)


def _connect_celery() -> None:
    """Report task failures (idempotent; nothing to do without Celery)."""
    try:
        from celery import signals
    except ImportError:
        return
    signals.task_failure.connect(_on_task_failure, weak=False, dispatch_uid=_CELERY_UID)


def _disconnect_celery() -> None:
    try:
        from celery import signals
    except ImportError:
        return
    signals.task_failure.disconnect(_on_task_failure, dispatch_uid=_CELERY_UID)


def _add_spine(event: Any, hint: Any) -> Any:
    """Event processor for the host's own Sentry client: the spine's IDs as tags."""
    try:
        event.setdefault("tags", {}).update(spine_tags())
    except Exception:  # never lose the host's event over our tags
        _host_failures("adding correlation and trace IDs to a Sentry event")
    return event


def _add_host_processor() -> None:
    """Tag every event of the host's Sentry client with the spine (once per process)."""
    import sentry_sdk

    global _host_processor_added
    with _live_lock:
        if not _host_processor_added:
            sentry_sdk.get_global_scope().add_event_processor(_add_spine)
            _host_processor_added = True


def _make_client(config: ObserveConfig, service: str) -> Any:
    import sentry_sdk

    send_client_ip = config.sentry_send_client_ip

    def before_send(event: Any, hint: Any) -> Any:
        return scrub_event(event, send_client_ip)

    release = f"{service}@{config.service_version}" if config.service_version else None
    extra: dict[str, Any] = {}
    if send_client_ip:
        from sentry_sdk.scrubber import DEFAULT_PII_DENYLIST, EventScrubber

        # Sentry's scrubber removes user.ip_address along with other personal keys; keep it.
        denylist = [key for key in DEFAULT_PII_DENYLIST if key != "ip_address"]
        extra["event_scrubber"] = EventScrubber(pii_denylist=denylist)
    # None for dsn/environment/release: Sentry reads SENTRY_DSN, SENTRY_ENVIRONMENT and
    # SENTRY_RELEASE itself.
    return sentry_sdk.Client(
        dsn=config.sentry_dsn,
        environment=config.environment,
        release=release,
        # Errors only, nothing patched: no integrations, no tracing, no sessions.
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[],
        traces_sample_rate=None,
        auto_session_tracking=False,
        # Private data stays home (send_default_pii is off by default: not passed, as newer
        # releases deprecate the option).
        include_local_variables=False,
        max_request_body_size="never",
        max_breadcrumbs=0,
        before_send=before_send,
        # Bounded and quiet: the transport's queue holds 100 events; no extra threads.
        shutdown_timeout=config.sentry_shutdown_timeout,
        enable_backpressure_handling=False,
        send_client_reports=False,
        **extra,
    )


def setup_errors(
    app: Flask, state: ObserveState, environ: Mapping[str, str]
) -> tuple[ErrorReporter, list[Callable[[], object]]]:
    """Turn error reporting on for ``app``; returns the reporter and its undo steps."""
    import sentry_sdk

    config = state.config
    undo: list[Callable[[], object]] = []
    if sentry_sdk.get_client().is_active():
        logger.info(
            "flask_observe: Sentry was initialised by the host; its client reports errors,"
            " flask_observe adds correlation_id, trace_id and span_id to its events"
        )
        _add_host_processor()
        return (
            ErrorReporter(
                None,
                service=state.service_name,
                send_client_ip=config.sentry_send_client_ip,
                shutdown_timeout=config.sentry_shutdown_timeout,
            ),
            undo,
        )
    client = _make_client(config, state.service_name)
    if client.transport is None:
        logger.warning(
            "flask_observe: Sentry error reporting is on but no DSN is set"
            " (OBSERVE_SENTRY_DSN or SENTRY_DSN): errors are not sent anywhere"
        )
    reporter = ErrorReporter(
        client,
        service=state.service_name,
        send_client_ip=config.sentry_send_client_ip,
        shutdown_timeout=config.sentry_shutdown_timeout,
    )
    hook = _request_hook(reporter)
    got_request_exception.connect(hook, app, weak=False)
    undo.append(lambda: got_request_exception.disconnect(hook, app))
    with _live_lock:
        _live.append(reporter)
        _connect_celery()

    def leave() -> None:
        with _live_lock:
            if reporter in _live:
                _live.remove(reporter)
            if not _live:
                _disconnect_celery()

    undo.append(leave)
    exit_key = exit_flushes.add(reporter.close, reporter.shutdown_timeout)
    undo.append(lambda: exit_flushes.remove(exit_key))
    undo.append(reporter.close)
    return reporter, undo
