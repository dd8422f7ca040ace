"""The capture layer: every error of an app, once, as a :class:`CapturedError`, to every sink.

Errors come in four ways (the ``mechanism``): ``flask`` (an exception a view did not handle,
Flask's ``got_request_exception``), ``celery`` (a task that raised, ``task_failure``),
``logging`` (a record at or above ``OBSERVE_ERRORS_EVENT_LEVEL``), ``manual``
(:func:`flask_observe.capture_exception` / :func:`flask_observe.capture_message`). Nothing here
runs on a successful request.

Each error is built once — scrubbed message, frames without locals, a fingerprint to group
it by, the request's IDs — and handed to the sinks (Sentry, when it is on) and to the
listeners other features and the host add (:meth:`ErrorCapture.add_listener`). The same
exception is captured once, however many ways it is seen (logged, then unhandled).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from flask.globals import _cv_request

from .._internal import FailureLog
from ..context import get_correlation_id
from .scrub import Scrubber

__all__ = ["CapturedError", "ErrorCapture", "Listener", "Occurrence", "qualified_name"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
#: A listener: called with each captured error, on the thread that captured it.
Listener = Callable[["CapturedError"], object]

#: Longest traceback kept, in frames (the innermost ones).
MAX_FRAMES = 100
_REPORTED_ATTR = "__flask_observe_captured__"
#: Sentry's level names, by logging level.
_LEVELS = {
    logging.CRITICAL: "fatal",
    logging.ERROR: "error",
    logging.WARNING: "warning",
    logging.INFO: "info",
    logging.DEBUG: "debug",
}
# A capture that logs (a failing listener, a sink's transport) is not captured again.
_busy: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "flask_observe_capturing", default=False
)


def level_name(levelno: int) -> str:
    """Sentry's name for a logging level (``ERROR`` → ``error``, ``CRITICAL`` → ``fatal``)."""
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if levelno >= threshold:
            return _LEVELS[threshold]
    return "debug"


def qualified_name(kind: type) -> str:
    """``module.QualName`` of a class; builtins by their bare name (``ValueError``)."""
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", None) or kind.__name__
    if not module or module == "builtins":
        return name
    return f"{module}.{name}"


@dataclass(frozen=True)
class CapturedError:
    """One error as every sink and listener sees it. Nothing here is a local variable, a
    request body, a header or a query string; the message went through the scrubber.

    :param exc_type: the exception's qualified name (``sample_app.scraper.PlatformError``,
        ``ValueError``); ``None`` for a message (``capture_message``, a log line without an
        exception).
    :param message: the exception's message or the log line, scrubbed, at most 4096 characters.
    :param frames: ``(module or file name, function, line number)`` from the outermost frame to
        the innermost (at most 100, the innermost kept); empty for a message.
    :param fingerprint: 16 hex digits grouping the same error: a hash of the type and the
        frames' modules and functions (line numbers left out, so an edit elsewhere in a file
        does not split a group); for a message, of the logger and the message's template.
    :param correlation_id: the request's or task's correlation ID.
    :param trace_id: the current span's trace ID (32 hex digits), with tracing on.
    :param span_id: the current span's ID (16 hex digits).
    :param route: the matched route (``/orders/<int:order_id>``), inside a request.
    :param method: the request's method, inside a request.
    :param mechanism: ``flask``, ``celery``, ``logging`` or ``manual``.
    :param handled: ``False`` for an exception nothing caught (``flask``, ``celery``).
    :param level: ``fatal``, ``error``, ``warning``, ``info`` or ``debug``.
    :param logger: the logger's name (``logging``), else ``None``.
    :param timestamp: seconds since the epoch (the log record's time for ``logging``).
    :param user_id: the user's ID when one was set (``sentry_sdk.set_user({"id": …})``).
    :param tags: ``(name, value)`` pairs given to the capture (``celery.task_name``, the
        keyword arguments of ``capture_exception``), scrubbed.
    """

    exc_type: str | None
    message: str
    frames: tuple[tuple[str, str, int], ...]
    fingerprint: str
    correlation_id: str | None
    trace_id: str | None
    span_id: str | None
    route: str | None
    method: str | None
    mechanism: str
    handled: bool
    level: str
    logger: str | None
    timestamp: float
    user_id: str | None
    tags: tuple[tuple[str, str], ...] = ()


@dataclass
class Occurrence:
    """What a sink gets beside the :class:`CapturedError`: the raw material (for Sentry's own
    event: the traceback with its source lines, the log record), never given to listeners."""

    exc_info: ExcInfo | None
    mechanism: str
    handled: bool
    level: str
    tags: dict[str, str] = field(default_factory=dict)
    #: Extra fields of a log record (unscrubbed: the sink scrubs what it sends).
    fields: dict[str, Any] = field(default_factory=dict)
    #: Method, URL without its query string, route of the current request.
    request: dict[str, Any] = field(default_factory=dict)
    #: The client's address (personal data: a sink sends it only when allowed).
    client_address: str | None = None
    record: logging.LogRecord | None = None


Sink = Callable[[CapturedError, Occurrence], object]


def request_details() -> tuple[dict[str, Any], str | None]:
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


def current_ids() -> tuple[str | None, str | None]:
    """Trace and span ID of the current OpenTelemetry span, or ``(None, None)``."""
    trace_module = sys.modules.get("opentelemetry.trace")
    if trace_module is None:
        return None, None
    context = trace_module.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _frames(tb: TracebackType | None) -> tuple[tuple[str, str, int], ...]:
    frames = []
    for frame, lineno in traceback.walk_tb(tb):
        module = frame.f_globals.get("__name__")
        code = frame.f_code
        name = getattr(code, "co_qualname", code.co_name)
        frames.append((str(module) if module else code.co_filename, str(name), int(lineno or 0)))
    return tuple(frames[-MAX_FRAMES:])


def _fingerprint(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8", "replace"), digest_size=8).hexdigest()


def _user_id() -> str | None:
    """The user ID set with ``sentry_sdk.set_user`` in the current request or task, if any
    (looked for, never created: sentry-sdk may not even be imported)."""
    scope_module = sys.modules.get("sentry_sdk.scope")
    holder = getattr(scope_module, "_isolation_scope", None)
    scope = holder.get() if holder is not None else None
    user = getattr(scope, "_user", None)
    if isinstance(user, Mapping) and user.get("id") is not None:
        return str(user["id"])[:200]
    return None


def already_captured(error: BaseException | None) -> bool:
    return error is not None and bool(getattr(error, _REPORTED_ATTR, False))


class ErrorCapture:
    """The capture layer of one app: ``Observe.handle(ErrorCapture)``.

    >>> capture = Observe.handle(ErrorCapture)
    >>> capture.add_listener(lambda error: counts.update([error.fingerprint]))

    :param scrubber: applied to every message and tag.
    :param event_level: log records at or above it become errors (``None``: none do).
    """

    def __init__(self, scrubber: Scrubber, event_level: int | None = logging.ERROR) -> None:
        self.scrubber = scrubber
        self.event_level = event_level
        #: Errors captured so far (each once).
        self.captured = 0
        self._listeners: tuple[Listener, ...] = ()
        self._sinks: tuple[Sink, ...] = ()
        self._lock = threading.Lock()
        self._failures = FailureLog()

    # -- listeners and sinks ------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Listener:
        """Call ``listener(error)`` for each :class:`CapturedError` from now on.

        It runs on the thread that captured the error (a request's, a task's), after the
        sinks: keep it short and never block. An exception it raises is logged (at most once
        a minute) and the others still run. Returns ``listener`` (usable as a decorator).
        """
        with self._lock:
            if listener not in self._listeners:
                self._listeners = (*self._listeners, listener)
        return listener

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; nothing happens if it was not added."""
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x != listener)

    def add_sink(self, sink: Sink) -> None:
        """A sink of flask_observe's own (Sentry): also given the :class:`Occurrence`."""
        with self._lock:
            self._sinks = (*self._sinks, sink)

    def remove_sink(self, sink: Sink) -> None:
        with self._lock:
            self._sinks = tuple(x for x in self._sinks if x != sink)

    # -- the four ways in -------------------------------------------------------------------

    def capture_exception(
        self,
        exc: BaseException | ExcInfo | None = None,
        *,
        mechanism: str = "manual",
        handled: bool = True,
        level: str = "error",
        tags: Mapping[str, Any] | None = None,
    ) -> CapturedError | None:
        """Capture ``exc`` (default: the exception being handled). Returns what was sent to
        the sinks and listeners, or ``None`` when there is no exception, it was captured
        already, or a capture is under way on this thread. Never raises."""
        try:
            exc_info = _exc_info(exc)
            if exc_info is None:
                return None
            return self._capture(Occurrence(exc_info, mechanism, handled, level, _tags(tags)))
        except Exception:
            self._failures("capturing an error")
            return None

    def capture_message(
        self, message: str, *, level: str = "info", tags: Mapping[str, Any] | None = None
    ) -> CapturedError | None:
        """Capture a message that is not an exception (``level``: Sentry's names)."""
        try:
            return self._capture(Occurrence(None, "manual", True, level, _tags(tags)), message)
        except Exception:
            self._failures("capturing a message")
            return None

    def capture_record(self, record: logging.LogRecord, fields: dict[str, Any]) -> None:
        """Capture a log record at or above the event level (the logging handler's path)."""
        exc_info = record.exc_info if record.exc_info and record.exc_info[1] else None
        occurrence = Occurrence(
            exc_info,
            "logging",
            True,
            level_name(record.levelno),
            fields=fields,
            record=record,
        )
        self._capture(occurrence)

    def seen_by_sentry(self, exc_info: ExcInfo | None, message: str, level: str) -> None:
        """An event the host sent with ``sentry_sdk`` itself (our client's ``before_send``):
        to the listeners, not to the sinks (it is on its way to Sentry already)."""
        try:
            self._capture(Occurrence(exc_info, "manual", True, level), message, sinks=False)
        except Exception:
            self._failures("capturing an error sent with sentry_sdk")

    # -- the one path ---------------------------------------------------------------------

    def _capture(
        self, occurrence: Occurrence, message: str | None = None, sinks: bool = True
    ) -> CapturedError | None:
        if _busy.get():
            return None
        error = occurrence.exc_info[1] if occurrence.exc_info else None
        if already_captured(error):
            return None
        if error is not None:
            # An exception type without a __dict__ cannot be marked: captured every time.
            with contextlib.suppress(Exception):
                setattr(error, _REPORTED_ATTR, True)
        token = _busy.set(True)
        try:
            captured = self._build(occurrence, message)
            self.captured += 1
            for sink in self._sinks if sinks else ():
                try:
                    sink(captured, occurrence)
                except Exception:
                    self._failures(f"error sink {getattr(sink, '__qualname__', sink)}")
            for listener in self._listeners:
                try:
                    listener(captured)
                except Exception:
                    self._failures(f"error listener {getattr(listener, '__qualname__', listener)}")
            return captured
        finally:
            _busy.reset(token)

    def _build(self, occurrence: Occurrence, message: str | None) -> CapturedError:
        scrub = self.scrubber.text
        record = occurrence.record
        exc_type: str | None = None
        frames: tuple[tuple[str, str, int], ...] = ()
        if occurrence.exc_info is not None:
            kind, error, tb = occurrence.exc_info
            exc_type = qualified_name(kind)
            frames = _frames(tb)
            text = _safe_str(error)
            fingerprint = _fingerprint(exc_type, *(f"{m}:{f}" for m, f, _ in frames))
        else:
            text = message if message is not None else ""
            template = text
            if record is not None:
                text = record.getMessage()
                template = str(record.msg)
            fingerprint = _fingerprint(record.name if record else "", template)
        if record is not None and occurrence.exc_info is not None:
            text = f"{record.getMessage()}: {text}" if text else record.getMessage()
        details, address = request_details()
        occurrence.request = details
        occurrence.client_address = address
        trace_id, span_id = current_ids()
        return CapturedError(
            exc_type=exc_type,
            message=scrub(text),
            frames=frames,
            fingerprint=fingerprint,
            correlation_id=get_correlation_id(),
            trace_id=trace_id,
            span_id=span_id,
            route=details.get("route"),
            method=details.get("method"),
            mechanism=occurrence.mechanism,
            handled=occurrence.handled,
            level=occurrence.level,
            logger=record.name if record is not None else None,
            timestamp=record.created if record is not None else time.time(),
            user_id=_user_id(),
            tags=tuple((k, scrub(v, 200)) for k, v in occurrence.tags.items()),
        )


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<unprintable {type(error).__name__}>"


def _tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k)[:32]: str(v) for k, v in (tags or {}).items()}


def _exc_info(exc: BaseException | ExcInfo | None) -> ExcInfo | None:
    if exc is None:
        found = sys.exc_info()
        return found if found[1] is not None else None
    if isinstance(exc, BaseException):
        return (type(exc), exc, exc.__traceback__)
    if isinstance(exc, tuple) and len(exc) == 3 and isinstance(exc[1], BaseException):
        return exc
    raise TypeError("expected an exception, an exc_info tuple or None")


@contextlib.contextmanager
def capturing() -> Iterator[None]:
    """Mark the current thread as capturing (nothing logged meanwhile is captured)."""
    token = _busy.set(True)
    try:
        yield
    finally:
        _busy.reset(token)
