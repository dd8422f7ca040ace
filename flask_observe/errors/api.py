"""The capture API: errors and messages captured by hand, as the unhandled ones are."""

from __future__ import annotations

from typing import Any

from .capture import CapturedError, ExcInfo
from .hooks import current_capture

__all__ = ["capture_exception", "capture_message"]


def capture_exception(
    exc: BaseException | ExcInfo | None = None, **tags: Any
) -> CapturedError | None:
    """Capture an exception the code handled (default: the one being handled now), with
    ``tags``: to Sentry when it is on, and to every listener — with the request's
    correlation, trace and span IDs and through the same scrubber as unhandled errors.

    >>> try:
    ...     charge(order)
    ... except PaymentDeclined as exc:
    ...     capture_exception(exc, order_id=order.id)

    :returns: the captured error, or ``None`` (no exception, captured already, or no app
        with flask_observe in this process).
    """
    capture = current_capture()
    if capture is None:
        return None
    return capture.capture_exception(exc, tags=tags)


def capture_message(message: str, level: str = "info", **tags: Any) -> CapturedError | None:
    """Capture a message that is not an exception (``level``: ``fatal``, ``error``,
    ``warning``, ``info`` or ``debug``), with ``tags``, as :func:`capture_exception` does."""
    capture = current_capture()
    if capture is None:
        return None
    return capture.capture_message(message, level=level, tags=tags)
