"""Where errors are caught — Flask's ``got_request_exception``, Celery's ``task_failure``, the
root logger — and the setup of one app's capture layer and its Sentry sink."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, got_request_exception

from .._internal import FailureLog, exit_flushes
from ..config import CoreSettings
from ..state import state_or_none
from . import handler as log_handler
from .capture import ErrorCapture
from .scrub import Scrubber
from .settings import ErrorsSettings, level_number

if TYPE_CHECKING:
    from ..feature import Wiring
    from .reporter import ErrorReporter

__all__ = ["current_capture", "setup_errors"]

logger = logging.getLogger("flask_observe.errors")

# Process-wide by nature, like Celery's signals and the root logger: the capture layers of
# the running apps, in order (outside any app context, the first one is used).
_live: list[ErrorCapture] = []
_reporters: dict[int, ErrorReporter] = {}
_live_lock = threading.Lock()
_CELERY_UID = "flask_observe.errors.task_failure"
_host_failures = FailureLog()
_host_processor_added = False


def current_capture() -> ErrorCapture | None:
    """The capture layer of the current app, else of the first running app, else ``None``."""
    state = state_or_none()
    if state is not None:
        found = state.get(ErrorCapture)
        if found is not None:
            return found
    live = _live
    return live[0] if live else None


def _request_hook(capture: ErrorCapture) -> Callable[..., None]:
    def on_exception(sender: Flask, exception: BaseException | None = None, **_: Any) -> None:
        if exception is None:
            return
        capture.capture_exception(
            (type(exception), exception, exception.__traceback__),
            mechanism="flask",
            handled=False,
        )

    return on_exception


# -- Celery ---------------------------------------------------------------------------------


def _on_task_failure(
    sender: Any = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    capture = current_capture()
    if capture is None or exception is None:
        return
    expected = getattr(sender, "throws", ())
    if expected and isinstance(exception, tuple(expected)):
        return  # declared by the task as an expected error (Celery logs it at INFO)
    traceback = getattr(einfo, "tb", None) or exception.__traceback__
    tags = {"celery.task_name": str(getattr(sender, "name", "")), "celery.task_id": str(task_id)}
    capture.capture_exception(
        (type(exception), exception, traceback), mechanism="celery", handled=False, tags=tags
    )


_task_bindings: dict[str, tuple[Any, Any]] = {}


def _first_reporter() -> ErrorReporter | None:
    capture = _live[0] if _live else None
    return _reporters.get(id(capture)) if capture is not None else None


def _on_task_prerun(task_id: str | None = None, **_: Any) -> None:
    """Bind the Sentry sink's scope for the task (its set_user, capture_exception…)."""
    reporter = _first_reporter()
    if reporter is None or task_id is None:
        return
    _task_bindings[task_id] = (reporter, reporter.bind())


def _on_task_postrun(task_id: str | None = None, **_: Any) -> None:
    bound = _task_bindings.pop(task_id, None) if task_id is not None else None
    if bound is not None:
        bound[0].unbind(bound[1])


def _connect_celery() -> None:
    """Capture task failures (idempotent; nothing to do without Celery)."""
    try:
        from celery import signals
    except ImportError:
        return
    signals.task_failure.connect(_on_task_failure, weak=False, dispatch_uid=_CELERY_UID)
    signals.task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid=_CELERY_UID)
    signals.task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid=_CELERY_UID)


def _disconnect_celery() -> None:
    try:
        from celery import signals
    except ImportError:
        return
    signals.task_failure.disconnect(_on_task_failure, dispatch_uid=_CELERY_UID)
    signals.task_prerun.disconnect(_on_task_prerun, dispatch_uid=_CELERY_UID)
    signals.task_postrun.disconnect(_on_task_postrun, dispatch_uid=_CELERY_UID)


# -- the host's own Sentry ------------------------------------------------------------------


def _add_spine(event: Any, hint: Any) -> Any:
    """Event processor for the host's own Sentry client: the spine's IDs as tags."""
    try:
        from .reporter import spine_tags

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


# -- setup ----------------------------------------------------------------------------------


def setup_errors(wiring: Wiring, sentry: bool, host_sentry: bool) -> list[Callable[[], object]]:
    """Turn the capture layer on for the app (and its Sentry sink when ``sentry``); returns
    the undo steps, in the order to run them."""
    app = wiring.app
    config = wiring.settings(ErrorsSettings)
    undo: list[Callable[[], object]] = []
    scrubber = Scrubber(send_pii=config.sentry_send_pii)
    event_level = level_number(config.errors_event_level)
    capture = ErrorCapture(scrubber, event_level)
    wiring.provide(capture)
    reporter = None
    if sentry:
        reporter = _sentry_sink(wiring, host_sentry, scrubber)
        wiring.provide(reporter)
        reporter.capture = capture
        capture.add_sink(reporter.send)
        if reporter.client is not None:
            undo.append(_bind_per_request(wiring, reporter))
            exit_key = exit_flushes.add(reporter.close, reporter.shutdown_timeout)
            undo.append(lambda: exit_flushes.remove(exit_key))
            undo.append(reporter.close)

    hook = _request_hook(capture)
    got_request_exception.connect(hook, app, weak=False)
    undo.append(lambda: got_request_exception.disconnect(hook, app))
    breadcrumbs = (
        level_number(config.sentry_breadcrumb_level)
        if reporter is not None and reporter.client is not None
        else None
    )
    with _live_lock:
        _live.append(capture)
        if reporter is not None:
            _reporters[id(capture)] = reporter
        _connect_celery()
    undo.append(log_handler.install(id(capture), current_capture, event_level, breadcrumbs))

    def leave() -> None:
        with _live_lock:
            if capture in _live:
                _live.remove(capture)
            _reporters.pop(id(capture), None)
            if not _live:
                _disconnect_celery()

    undo.append(leave)
    undo.reverse()
    return undo


def _sentry_sink(wiring: Wiring, host_sentry: bool, scrubber: Scrubber) -> ErrorReporter:
    from .reporter import ErrorReporter, make_client

    config = wiring.settings(ErrorsSettings)
    common: dict[str, Any] = {
        "service": wiring.service_name,
        "scrubber": scrubber,
        "send_client_ip": config.sentry_send_client_ip or config.sentry_send_pii,
        "shutdown_timeout": config.sentry_shutdown_timeout,
    }
    if host_sentry:
        logger.info(
            "flask_observe: Sentry was initialised by the host; its client reports errors,"
            " flask_observe adds correlation_id, trace_id and span_id to its events"
        )
        _add_host_processor()
        return ErrorReporter(None, **common)
    holder: list[ErrorReporter] = []
    client = make_client(
        config,
        wiring.settings(CoreSettings),
        wiring.service_name,
        lambda event, hint: holder[0].before_send(event, hint),
    )
    if client.transport is None:
        logger.warning(
            "flask_observe: Sentry error reporting is on but no DSN is set"
            " (OBSERVE_SENTRY_DSN or SENTRY_DSN): errors are not sent anywhere"
        )
    reporter = ErrorReporter(
        client,
        breadcrumb_level=level_number(config.sentry_breadcrumb_level),
        max_breadcrumbs=config.sentry_max_breadcrumbs,
        trace_url=_trace_url(wiring),
        **common,
    )
    holder.append(reporter)
    return reporter


def _trace_url(wiring: Wiring) -> str | None:
    """The tracing UI's link template: ``OBSERVE_TRACING_TRACE_URL``, else the log viewer's
    ``OBSERVE_LOGVIEWER_TRACE_URL`` (read by name: that feature comes later)."""
    config = wiring.config
    found = getattr(config, "tracing_trace_url", None) or getattr(
        config, "logviewer_trace_url", None
    )
    return str(found) if found else None


def _bind_per_request(wiring: Wiring, reporter: ErrorReporter) -> Callable[[], None]:
    """The Sentry sink's scope and breadcrumbs for each request: bound around the app's WSGI
    call (inside the request middleware, around tracing's server span), unbound when the app
    returns, so a response the caller has not read yet leaves nothing bound behind it, as
    the correlation ID is; returns the undo."""
    app = wiring.app
    original = app.wsgi_app
    scoped = SentryScope(original, reporter)
    app.wsgi_app = scoped  # type: ignore[method-assign]

    def undo() -> None:
        if app.wsgi_app is scoped:
            app.wsgi_app = original  # type: ignore[method-assign]

    return undo


class SentryScope:
    """WSGI wrapper binding one app's Sentry client and breadcrumbs to the request."""

    __slots__ = ("_bind", "_unbind", "wrapped")

    def __init__(self, wrapped: Any, reporter: ErrorReporter) -> None:
        self.wrapped = wrapped
        self._bind = reporter.bind
        self._unbind = reporter.unbind

    def __call__(self, environ: Any, start_response: Any) -> Any:
        tokens = self._bind()
        try:
            return self.wrapped(environ, start_response)
        finally:
            self._unbind(tokens)
