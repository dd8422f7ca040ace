"""Where errors are caught: Flask's ``got_request_exception``, Celery's ``task_failure``;
and the setup of one app's reporting."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, got_request_exception
from flask.globals import _cv_request

from .._internal import FailureLog, exit_flushes
from ..config import CoreSettings
from ..state import state_or_none
from .reporter import ErrorReporter, make_client
from .settings import ErrorsSettings
from .spine import spine_tags

if TYPE_CHECKING:
    from ..feature import Wiring

__all__ = ["setup_errors"]

logger = logging.getLogger("flask_observe.errors")


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
    state = state_or_none()
    if state is not None:
        return state.get(ErrorReporter)
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


def setup_errors(
    wiring: Wiring,
) -> tuple[ErrorReporter, list[Callable[[], object]]]:
    """Turn error reporting on for ``app``; returns the reporter and its undo steps."""
    import sentry_sdk

    app = wiring.app
    config = wiring.settings(ErrorsSettings)
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
                service=wiring.service_name,
                send_client_ip=config.sentry_send_client_ip,
                shutdown_timeout=config.sentry_shutdown_timeout,
            ),
            undo,
        )
    client = make_client(config, wiring.settings(CoreSettings), wiring.service_name)
    if client.transport is None:
        logger.warning(
            "flask_observe: Sentry error reporting is on but no DSN is set"
            " (OBSERVE_SENTRY_DSN or SENTRY_DSN): errors are not sent anywhere"
        )
    reporter = ErrorReporter(
        client,
        service=wiring.service_name,
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
