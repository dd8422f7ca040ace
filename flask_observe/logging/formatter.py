"""Structured logging: one JSON object per line from every logger, plus the access log.

The pipeline is stdlib ``logging`` with structlog in front of it:

- records from any stdlib logger (the host's, werkzeug, SQLAlchemy, urllib3, …) and from
  structlog loggers (:func:`get_logger`) end up in the same handlers on the root logger;
- :class:`ObserveFormatter` renders each one as JSON (or, in development, as an aligned and
  coloured console line: :class:`ConsoleFormat`) with ``timestamp``, ``level``, ``logger``,
  ``message``, ``service``, ``correlation_id`` inside a request or task, ``trace_id`` and
  ``span_id`` inside a recorded OpenTelemetry span, the caller's extra fields and structlog's
  context variables (``structlog.contextvars.bind_contextvars``).

The handlers an app installs are in :mod:`.handlers`, the rotated files in :mod:`.files`,
the per-request access line in :mod:`.access`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from itertools import filterfalse
from typing import Any

import orjson
import structlog

from .._internal import escape_control
from .._spans import current_span_function
from ..context import _correlation_id

__all__ = [
    "ConsoleFormat",
    "ObserveFormatter",
    "get_logger",
    "is_terminal",
    "merge_fields",
    "structlog_context",
    "truncate",
]

#: Attributes every LogRecord has; anything else on a record is an extra field of the caller.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
#: Keys the formatter owns; an extra field of the same name is kept under ``extra_<name>``.
_RESERVED = frozenset(("timestamp", "level", "logger", "message", "service"))

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS
#: LogRecord attribute carrying the identity fields of the app that wrote it (access log).
IDENTITY_ATTR = "_observe_identity"
#: LogRecord attribute holding the fields the JSON formatter made of it (read, not changed),
#: while :func:`share_fields` is on.
FIELDS_ATTR = "_observe_fields"
_SHARING = False


def share_fields(on: bool) -> None:
    """Leave each record's JSON fields on it (:data:`FIELDS_ATTR`) for a sink that takes the
    same fields (the OTLP logs handler, which removes them): process-wide, like the root
    logger's handlers."""
    global _SHARING
    _SHARING = on


_OTEL_TRACE_MODULE = "opentelemetry.trace"
#: An ANSI style (SGR) sequence: colour and weight, what werkzeug's start-up banner and
#: request lines are wrapped in. A library's styling carries no information; it is dropped
#: from the message (JSON would keep it as ``\u001b[31m``, the console as a literal
#: ``\x1b[31m``). Data logged as an argument keeps it (escaped), but for werkzeug's own
#: lines, which style their arguments.
_STYLE = re.compile(r"\x1b\[[0-9;:]*m")
_STYLED_ARGS = "werkzeug"


def strip_styles(text: str) -> str:
    """``text`` without ANSI colour/style sequences (other control characters are left for
    the renderer to escape)."""
    return _STYLE.sub("", text) if "\x1b" in text else text


#: ``.000Z`` to ``.999Z``: the end of a timestamp, by millisecond.
_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()`` without the styling a library put in its format string (or,
    for werkzeug, around its arguments)."""
    msg, args = record.msg, record.args
    styled = isinstance(msg, str) and "\x1b" in msg
    if (
        isinstance(args, tuple)
        and record.name.startswith(_STYLED_ARGS)
        and any(isinstance(a, str) and "\x1b" in a for a in args)
    ):
        args = tuple(strip_styles(a) if isinstance(a, str) else a for a in args)
        styled = True
    if not styled:
        return record.getMessage()
    text = strip_styles(msg) if isinstance(msg, str) else str(msg)
    return text % args if args else text


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (a stream that cannot tell counts as not one)."""
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (on a character boundary), ending in
    ``…[truncated N bytes]`` when something was cut: for values written from request data,
    which an outsider may make as long as the server allows (64 KiB for werkzeug)."""
    if len(text) <= limit >> 2:  # at most 4 bytes a character: short enough, whatever it is
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    keep = max(0, limit - 32)  # the marker takes at most 32 bytes
    while keep and (data[keep] & 0xC0) == 0x80:  # not inside a character
        keep -= 1
    return data[:keep].decode("utf-8", "surrogatepass") + f"…[truncated {len(data) - keep} bytes]"


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """A structlog logger whose lines go through the same pipeline as every other log line.

    :param name: the ``logger`` field; defaults to the calling module's name.
    :param initial_values: fields bound to every line of this logger.
    """
    return structlog.stdlib.get_logger(name, **initial_values)


#: structlog keeps one ContextVar per key ever bound with ``bind_contextvars``; while it holds
#: none there is nothing to merge, and ``get_contextvars`` (which walks every variable of the
#: current context) is skipped. A structlog without this registry is always asked.
_STRUCTLOG_VARS: Mapping[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)
if not isinstance(_STRUCTLOG_VARS, dict):
    _STRUCTLOG_VARS = None


def structlog_context() -> dict[str, Any] | None:
    """The fields bound with ``structlog.contextvars.bind_contextvars``, if any."""
    if _STRUCTLOG_VARS is not None and not _STRUCTLOG_VARS:
        return None
    return structlog.contextvars.get_contextvars()


def _default(value: Any) -> Any:
    """orjson fallback: anything it cannot encode natively is written as ``str(value)``."""
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _text(value: Any) -> str:
    """``value`` as text orjson always accepts: a lone surrogate (a file name decoded with
    ``surrogateescape``, say) is written as its ``\\udcff`` escape instead of losing the line."""
    text = value if isinstance(value, str) else _default(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ObserveFormatter(logging.Formatter):
    """Formats any log record as one JSON object (or one console line).

    The identity fields (``service``, and ``version``/``environment`` when configured) come
    from, in order: the line itself (the access log names its app's), the current app context
    (``identity_lookup``), or the defaults given here. So two apps sharing a handler in one
    process each keep their own ``service``.

    :param service: the default ``service`` field.
    :param fmt: ``"json"`` or ``"console"``.
    :param static_fields: default fields added after ``service`` (``version``, ``environment``).
    :param identity_lookup: returns the identity fields of the current app context, if any.
    :param colors: colour the console format; ``None``: when standard output is a terminal
        and ``NO_COLOR`` is not set.
    """

    def __init__(
        self,
        service: str,
        fmt: str = "json",
        static_fields: Mapping[str, Any] | None = None,
        identity_lookup: Callable[[], Mapping[str, Any] | None] | None = None,
        colors: bool | None = None,
    ) -> None:
        super().__init__()
        self.fmt = fmt
        self.identity: Mapping[str, Any] = {"service": service, **(static_fields or {})}
        self._identity_lookup = identity_lookup
        self._second = -1
        self._second_text = ""
        self._current_span: Callable[[], Any] | None = None
        self._no_span: Any = None
        self._console: ConsoleFormat | None = None
        if fmt == "console":
            if colors is None:
                colors = is_terminal(sys.stdout) and not os.environ.get("NO_COLOR")
            self._console = ConsoleFormat(colors)

    def timestamp(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds, e.g. ``2026-11-23T03:14:49.123Z``."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._second_text + _MILLIS[int((created - second) * 1000)]

    def base_fields(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        identity: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The fields every line starts with, including the correlation ID when bound."""
        if identity is None:
            lookup = self._identity_lookup
            identity = (lookup() if lookup is not None else None) or self.identity
        second = int(created)
        out: dict[str, Any] = {
            # timestamp(), inlined for a second already formatted (nearly every line)
            "timestamp": self._second_text + _MILLIS[int((created - second) * 1000)]
            if second == self._second
            else self.timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        out.update(identity)
        correlation_id = _correlation_id.get()  # get_correlation_id(), one call shorter
        if correlation_id is not None:
            out["correlation_id"] = correlation_id
        current_span = self._current_span
        if current_span is None:
            # OpenTelemetry is looked for, never imported: an app that does not use it pays
            # one dictionary lookup per line.
            module = sys.modules.get(_OTEL_TRACE_MODULE)
            if module is None:
                return out
            current_span = self._current_span = current_span_function(module)
            self._no_span = module.INVALID_SPAN
        span = current_span()
        if span is self._no_span:
            return out
        context = span.get_span_context()
        if context.trace_flags & 1:  # sampled: the trace exists in the backend
            out["trace_id"] = f"{context.trace_id:032x}"
            out["span_id"] = f"{context.span_id:016x}"
        return out

    def event_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """The fields of one log line, before rendering."""
        msg = record.msg
        structured: dict[str, Any] | None = None
        if isinstance(msg, dict):  # from a structlog logger (wrap_for_formatter)
            structured = dict(msg)
            message = str(structured.pop("event", ""))
        elif msg.__class__ is str and not record.args and "\x1b" not in msg:
            message = msg  # what getMessage() returns for it, and nothing to strip
        else:
            message = _message(record)
        out = self.base_fields(
            record.created,
            record.levelname.lower(),
            record.name,
            message,
            getattr(record, IDENTITY_ATTR, None),
        )
        if structured is None and (_STRUCTLOG_VARS is None or _STRUCTLOG_VARS):
            context = structlog.contextvars.get_contextvars()  # structlog_context(), inlined
            if context:
                merge_fields(out, context)
        attributes = record.__dict__
        # The ~25 standard attributes are skipped in C; only the caller's extras reach Python.
        for key in filterfalse(_RECORD_ATTRS.__contains__, attributes):
            if key[0] != "_":
                out[key if key not in _RESERVED else f"extra_{key}"] = attributes[key]
        if structured:
            merge_fields(out, structured)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
            exc_type = record.exc_info[0]
            if exc_type is not None:
                out["exc_type"] = exc_type.__name__
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return out

    def render(self, fields: dict[str, Any]) -> str:
        """One line of text for ``fields`` (JSON, or the console format)."""
        if self._console is not None:
            return self._console(fields)
        try:
            return orjson.dumps(fields, default=_default, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # an integer too large, a circular structure, a lone surrogate
            return orjson.dumps({_text(k): _text(v) for k, v in fields.items()}).decode()

    def format(self, record: logging.LogRecord) -> str:
        fields = self.event_dict(record)
        if _SHARING and self._console is None:  # renders_json
            # Another sink of the same record (OTLP logs) takes these fields instead of making
            # them again (it removes them); JSON rendering leaves them as they are.
            record.__dict__[FIELDS_ATTR] = fields
        return self.render(fields)

    def format_fields(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: Mapping[str, Any],
        identity: Mapping[str, Any] | None = None,
    ) -> str:
        """Render a line from parts, as :meth:`format` would render the equivalent record."""
        return self.render(self.line_fields(created, level, logger, message, fields, identity))

    def line_fields(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: Mapping[str, Any],
        identity: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The fields :meth:`format_fields` renders."""
        out = self.base_fields(created, level, logger, message, identity)
        if _STRUCTLOG_VARS is None or _STRUCTLOG_VARS:  # structlog_context(), inlined
            context = structlog.contextvars.get_contextvars()
            if context:
                merge_fields(out, context)
        out.update(fields)
        return out

    @property
    def renders_json(self) -> bool:
        """Whether :meth:`render` leaves the fields as they are (JSON; the console format
        does not), so another sink may take them."""
        return self._console is None


#: Tracebacks keep their line breaks in the console format.
_MULTILINE = frozenset(("exception", "stack"))
#: Fields a console line leaves out: the traceback names the exception's type; the version
#: and environment are the same on every line of a process (``service`` stays: two apps may
#: share a terminal).
_CONSOLE_HIDDEN = frozenset(("exc_type", "version", "environment"))
#: The access line's message is ``METHOD route status``: its fields are not repeated.
_ACCESS_LOGGER = "flask_observe.access"
_ACCESS_HIDDEN = _CONSOLE_HIDDEN | {"method", "route", "status"}
#: ``[info     ]``: the level column, padded to structlog's longest level name and bracketed.
_LEVEL_WIDTH = len("[exception]")


class ConsoleFormat:
    """The development format: one aligned line per record, coloured on a terminal.

    ``HH:MM:SS.mmmZ [level    ] message   [logger] key=value …`` (structlog's
    :class:`~structlog.dev.ConsoleRenderer`), the time of day in UTC as in the JSON lines,
    then the traceback on its own lines as Python prints it. What a line would repeat is
    left out: ``exc_type`` (the traceback says it), ``version`` and ``environment`` (the same
    on every line), and on access lines ``method``, ``route`` and ``status`` (the message is
    ``GET /items/<int:item_id> 200``). Control characters in keys and
    values are written as escapes (``\\x1b``, ``\\r``, ``\\n``): a request path cannot move the
    cursor or start a forged line. A message's own line breaks (werkzeug's start-up banner)
    are kept, each continuation indented under the message, so no line but a record's first
    starts at the left margin.

    :param colors: ANSI colours (for a terminal); without, the same text plain.
    """

    def __init__(self, colors: bool) -> None:
        self.colors = colors
        self._renderer = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)
        #: Where the message starts: after the time of day and the level column.
        self._indent = "\n" + " " * (len("00:00:00.000Z ") + _LEVEL_WIDTH + 1)

    def __call__(self, fields: dict[str, Any]) -> str:
        event: dict[str, Any] = {}
        timestamp = fields.pop("timestamp", "")
        if isinstance(timestamp, str) and len(timestamp) > 11:
            timestamp = timestamp[11:]  # the day is noise on a developer's terminal
        event["timestamp"] = timestamp
        level = fields.pop("level", "")
        event["level"] = level
        message = escape_control(str(fields.pop("message", "")), keep_newlines=True)
        event["event"] = message.replace("\n", self._indent) if "\n" in message else message
        hidden = _ACCESS_HIDDEN if fields.get("logger") == _ACCESS_LOGGER else _CONSOLE_HIDDEN
        for key, value in fields.items():
            if key in hidden:
                continue
            if isinstance(key, str):
                key = escape_control(key)
            if isinstance(value, str):
                if key in _MULTILINE:
                    value = escape_control(value, keep_newlines=True)
                elif not value.isprintable() or _QUOTED.intersection(value):
                    # Quoted and escaped once, by repr (structlog would quote our escapes
                    # again: ``'\\\\x1b'``).
                    value = _Shown(repr(value))
            event[key] = value
        return self._renderer(None, level, event)


#: Characters that make the console format quote a value (``k='two words'``).
_QUOTED = frozenset(" =\"'")


class _Shown:
    """A value the console format writes as given (its ``repr`` is the text)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def merge_fields(out: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Add ``fields`` to a line's ``out``; one named as a field the formatter owns is kept as
    ``extra_<name>``."""
    for key, value in fields.items():
        out[key if key not in _RESERVED else f"extra_{key}"] = value


def configure_structlog() -> bool:
    """Route structlog loggers into stdlib logging, unless the host configured structlog.

    :returns: whether structlog was configured here.
    """
    if structlog.is_configured():
        return False
    # structlog's LoggerFactory swaps the process-wide logger class (to fix caller lookup);
    # a library must not change that for the host's loggers, so the class is put back.
    logger_class = logging.getLoggerClass()
    factory = structlog.stdlib.LoggerFactory()
    logging.setLoggerClass(logger_class)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=factory,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return True
