"""Log records into the capture layer: at or above the event level, an error; below it,
inside a request or task that Sentry watches, a breadcrumb (one append, rendered only if an
event is sent).

One handler on the root logger for the process (like the root's other handlers), shared by
every app and removed when the last one leaves; each record goes to the app whose context
is current, else to the first running app.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._internal import FailureLog
from ..logging.formatter import ObserveFormatter

if TYPE_CHECKING:
    from .capture import ErrorCapture

__all__ = ["CaptureHandler", "crumbs", "install", "record_fields"]

#: Attributes every LogRecord has; anything else on a record is an extra field of the caller.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
#: Loggers whose records are never errors: our own reporting, Sentry's, and the access log
#: (a 5xx line is a summary of a request whose error, if any, was captured on its own).
_IGNORED = ("flask_observe.errors", "flask_observe.access", "sentry_sdk")


#: The log records of the current request or task below the event level, newest last, at
#: most the app's OBSERVE_SENTRY_MAX_BREADCRUMBS (bound by the Sentry sink), or ``None``. The
#: handler keeps what the lowest breadcrumb level of the process's apps lets through; each
#: app's own level is applied when an event is sent.
crumbs: contextvars.ContextVar[collections.deque[logging.LogRecord] | None] = (
    contextvars.ContextVar("flask_observe_breadcrumbs", default=None)
)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The extra fields of ``record`` (``logger.error(..., extra={...})``)."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")
    }


class CaptureHandler(logging.Handler):
    """Sends records to the capture layer; its level is the lowest any app needs.

    :param lookup: the :class:`ErrorCapture` of the current app (or the first running one).
    """

    def __init__(self, lookup: Callable[[], ErrorCapture | None]) -> None:
        super().__init__()
        self._lookup = lookup
        # The access log writes its line straight to the root's handlers when each of them
        # is one of flask_observe's (a `write_line` and an ObserveFormatter), rendering it
        # once per formatter: this handler takes part so the fast path stays open, with the
        # formatter of a handler already there (nothing rendered for it), and takes nothing
        # from it (write_line below).
        self.formatter = ObserveFormatter("flask_observe")
        #: Records at or above it may be errors (the lowest event level of the apps).
        self.event_level = logging.ERROR
        self._failures = FailureLog()

    def handle(self, record: logging.LogRecord) -> bool:
        # The hot path: one comparison and, inside a watched request, one append. No lock, no
        # filter, no formatting (the logging module has already checked our level).
        if record.levelno < self.event_level:
            found = crumbs.get()
            if found is not None:
                found.append(record)
            return True
        self.emit(record)
        return True

    def write_line(self, line: str, created: float) -> None:
        """An access line, already formatted: never an error, never a breadcrumb."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_IGNORED):
            return
        try:
            capture = self._lookup()
            if capture is None:
                return
            level = capture.event_level
            if level is None or record.levelno < level:
                found = crumbs.get()
                if found is not None:
                    found.append(record)
                return
            capture.capture_record(record, record_fields(record))
        except Exception:
            self._failures("capturing a logged error")


class _Installed:
    def __init__(self) -> None:
        self.handler: CaptureHandler | None = None
        #: (event level or None, breadcrumb level or None) of each app using the handler.
        self.levels: dict[int, tuple[int | None, int | None]] = {}


_installed = _Installed()
_lock = threading.Lock()


def install(
    key: int,
    lookup: Callable[[], ErrorCapture | None],
    event_level: int | None,
    breadcrumb_level: int | None,
) -> Callable[[], None]:
    """Put the process's handler on the root logger (once) for one more app; returns the
    function that takes the app off again (the last one removes the handler)."""
    with _lock:
        handler = _installed.handler
        root = logging.getLogger()
        if handler is None:
            handler = _installed.handler = CaptureHandler(lookup)
            root.addHandler(handler)
        shared = next(
            (
                h.formatter
                for h in root.handlers
                if h is not handler and isinstance(h.formatter, ObserveFormatter)
            ),
            None,
        )
        if shared is not None:
            handler.formatter = shared
        _installed.levels[key] = (event_level, breadcrumb_level)
        _apply(handler)

    def uninstall() -> None:
        with _lock:
            _installed.levels.pop(key, None)
            handler = _installed.handler
            if handler is None:
                return
            if not _installed.levels:
                logging.getLogger().removeHandler(handler)
                _installed.handler = None
            else:
                _apply(handler)

    return uninstall


def _apply(handler: CaptureHandler) -> None:
    events = [e for e, _ in _installed.levels.values() if e is not None]
    lowest = [x for pair in _installed.levels.values() for x in pair if x is not None]
    handler.event_level = min(events) if events else logging.CRITICAL + 1
    handler.setLevel(min(lowest) if lowest else logging.CRITICAL + 1)
