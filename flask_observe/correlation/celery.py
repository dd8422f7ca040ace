"""Celery: tasks published during a request carry its correlation ID; workers bind it.

On publish, the current ID goes into the task message's headers
(``observe_correlation_id``; Celery's own ``correlation_id`` is the task ID), with the time of
publishing (``observe_published_at``, Unix seconds: the worker's queue-wait metric). In the
worker, ``task_prerun`` binds it (validated like an incoming HTTP header; a task without a
valid one gets a fresh ID) together with ``task_id`` and ``task_name`` as structlog context
variables, so every log line the task writes carries them; ``task_postrun`` unbinds them.

The signal receivers are process-wide (Celery's signals are), connected once whatever the
number of apps, and disconnected when the last app that connected them shuts down.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import structlog

from .._celery import HEADER, PUBLISHED_AT, header_value, incoming_id
from ..context import (
    get_correlation_id,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)

__all__ = ["HEADER", "PUBLISHED_AT", "connect", "disconnect", "header_value", "incoming_id"]

logger = logging.getLogger("flask_observe")

_STATE_ATTR = "_flask_observe_bound"
#: Apps using the receivers (all of them, and the one on ``setup_logging``): Celery's signals
#: are process-wide, so is this count.
_users = {"tasks": 0, "logging": 0}
_lock = threading.Lock()
_UID = __name__ + "."


def connect(keep_logging: bool) -> None:
    """Connect the receivers (once per process) and count one more user of them.

    :param keep_logging: stop Celery's worker from replacing the root logger's handlers, so
        task logs keep flowing through flask_observe's pipeline.
    """
    from celery import signals

    with _lock:
        _users["tasks"] += 1
        signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid=_UID + "pub")
        signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid=_UID + "prerun")
        signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid=_UID + "postrun")
        if keep_logging:
            _users["logging"] += 1
            # With any receiver on setup_logging, Celery leaves logging configuration alone.
            signals.setup_logging.connect(_keep_logging, weak=False, dispatch_uid=_UID + "log")


def disconnect(keep_logging: bool) -> None:
    """Release one user (as :func:`connect` counted it); the last one disconnects."""
    from celery import signals

    with _lock:
        _users["tasks"] -= 1
        if keep_logging:
            _users["logging"] -= 1
            if _users["logging"] <= 0:
                signals.setup_logging.disconnect(dispatch_uid=_UID + "log")
        if _users["tasks"] <= 0:
            signals.before_task_publish.disconnect(dispatch_uid=_UID + "pub")
            signals.task_prerun.disconnect(dispatch_uid=_UID + "prerun")
            signals.task_postrun.disconnect(dispatch_uid=_UID + "postrun")


def _keep_logging(**_: Any) -> None:
    logger.debug("celery worker keeps the logging set up by flask_observe")


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    if PUBLISHED_AT not in headers:
        headers[PUBLISHED_AT] = time.time()
    correlation_id = get_correlation_id()
    if correlation_id is not None and HEADER not in headers:
        headers[HEADER] = correlation_id


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    try:
        # An eagerly run task executes inside the publishing request: keep its ID.
        correlation_id = incoming_id(task) or get_correlation_id() or new_correlation_id()
        token = set_correlation_id(correlation_id)
        tokens = structlog.contextvars.bind_contextvars(
            task_id=task_id, task_name=getattr(task, "name", None)
        )
        if task is not None and getattr(task, "request", None) is not None:
            setattr(task.request, _STATE_ATTR, (token, tokens))
    except Exception:
        logger.exception("flask_observe: binding the correlation ID to a task failed")


def _on_postrun(task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    state = getattr(request, _STATE_ATTR, None) if request is not None else None
    if state is None:
        return
    token, tokens = state
    setattr(request, _STATE_ATTR, None)
    structlog.contextvars.reset_contextvars(**tokens)
    reset_correlation_id(token)
