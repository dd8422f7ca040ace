"""The task message headers flask_observe adds on publish and reads in the worker (shared by
the correlation feature, which sets them, and the Celery metrics, which read them)."""

from __future__ import annotations

from typing import Any

from .context import MAX_REQUEST_ID_LENGTH_LIMIT, id_validator

__all__ = ["HEADER", "PUBLISHED_AT", "header_value", "incoming_id"]

#: Name of the task message header carrying the correlation ID.
HEADER = "observe_correlation_id"
#: Name of the task message header carrying the publish time (Unix seconds).
PUBLISHED_AT = "observe_published_at"
#: The receivers serve every app of the process: accept what any app may have accepted (its
#: OBSERVE_REQUEST_ID_MAX_LENGTH is at most this), same characters.
_is_valid = id_validator(MAX_REQUEST_ID_LENGTH_LIMIT)


def header_value(request: Any, name: str) -> object:
    """The custom message header ``name`` of a task's request (Celery exposes custom headers
    as attributes of the request, older protocols in ``request.headers``)."""
    value = getattr(request, name, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(name) if isinstance(headers, dict) else None
    return value


def incoming_id(task: Any) -> str | None:
    """The valid correlation ID a task's message carries, if any."""
    request = getattr(task, "request", None)
    if request is None:
        return None
    value = header_value(request, HEADER)
    if isinstance(value, str) and _is_valid(value):
        return value
    return None
