"""Structured logging: one JSON object per line from every logger, plus the access log.

The pipeline is stdlib ``logging`` with structlog in front of it:

- records from any stdlib logger (the host's, werkzeug, SQLAlchemy, urllib3, …) and from
  structlog loggers (:func:`get_logger`) end up in the same handlers on the root logger;
- :class:`ObserveFormatter` renders each one as JSON (or as structlog's console format in
  development) with ``timestamp``, ``level``, ``logger``, ``message``, ``service``,
  ``correlation_id`` inside a request or task, ``trace_id`` and ``span_id`` inside a recorded
  OpenTelemetry span, the caller's extra fields and structlog's context variables
  (``structlog.contextvars.bind_contextvars``);
- :class:`AccessLog` writes one line per request when its response is finished.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from itertools import filterfalse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson
import structlog

from ._internal import FailureLog, escape_control
from .correlation import RequestRecord, get_correlation_id, request_path

if TYPE_CHECKING:
    from .config import ObserveConfig

__all__ = ["AccessLog", "ObserveFormatter", "get_logger"]

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
#: WSGI environ key where tracing leaves the server span's context, for the access line.
SPAN_CONTEXT_KEY = "flask_observe.span_context"
_OTEL_TRACE_MODULE = "opentelemetry.trace"


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
    """

    def __init__(
        self,
        service: str,
        fmt: str = "json",
        static_fields: Mapping[str, Any] | None = None,
        identity_lookup: Callable[[], Mapping[str, Any] | None] | None = None,
    ) -> None:
        super().__init__()
        self.fmt = fmt
        self.identity: Mapping[str, Any] = {"service": service, **(static_fields or {})}
        self._identity_lookup = identity_lookup
        self._second = -1
        self._second_text = ""
        self._current_span: Callable[[], Any] | None = None
        self._console: Callable[..., str] | None = None
        if fmt == "console":
            self._console = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())

    def timestamp(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds, e.g. ``2026-11-23T03:14:49.123Z``."""
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        millis = int((created - second) * 1000)
        return f"{self._second_text}.{millis:03d}Z"

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
        out: dict[str, Any] = {
            "timestamp": self.timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
        }
        out.update(identity)
        correlation_id = get_correlation_id()
        if correlation_id is not None:
            out["correlation_id"] = correlation_id
        current_span = self._current_span
        if current_span is None:
            # OpenTelemetry is looked for, never imported: an app that does not use it pays
            # one dictionary lookup per line.
            module = sys.modules.get(_OTEL_TRACE_MODULE)
            if module is None:
                return out
            current_span = self._current_span = module.get_current_span
        context = current_span().get_span_context()
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
        else:
            message = record.getMessage()
        out = self.base_fields(
            record.created,
            record.levelname.lower(),
            record.name,
            message,
            getattr(record, IDENTITY_ATTR, None),
        )
        if structured is None:
            context = structlog_context()
            if context:
                _merge(out, context)
        attributes = record.__dict__
        # The ~25 standard attributes are skipped in C; only the caller's extras reach Python.
        for key in filterfalse(_RECORD_ATTRS.__contains__, attributes):
            if key[0] != "_":
                out[key if key not in _RESERVED else f"extra_{key}"] = attributes[key]
        if structured:
            _merge(out, structured)
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
            level = fields.get("level", "")
            fields["event"] = fields.pop("message")
            return self._console(None, level, _printable(fields))
        try:
            return orjson.dumps(fields, default=_default, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # e.g. an integer too large for JSON, or a circular structure
            return orjson.dumps({k: _default(v) for k, v in fields.items()}).decode()

    def format(self, record: logging.LogRecord) -> str:
        return self.render(self.event_dict(record))

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
        out = self.base_fields(created, level, logger, message, identity)
        context = structlog_context()
        if context:
            _merge(out, context)
        out.update(fields)
        return self.render(out)


#: Tracebacks keep their line breaks in the console format.
_MULTILINE = frozenset(("exception", "stack"))


def _printable(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with control characters in keys and string values written as escapes
    (``\\x1b``, ``\\r``, ``\\n``), for the console format: JSON escapes them already, a
    console line must not carry a request path's ANSI sequence or line break raw. Other
    values are rendered with ``repr``, which escapes them."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(key, str):
            key = escape_control(key)
        if isinstance(value, str):
            value = escape_control(value, keep_newlines=key in _MULTILINE)
        out[key] = value
    return out


def _merge(out: dict[str, Any], fields: Mapping[str, Any]) -> None:
    for key, value in fields.items():
        out[key if key not in _RESERVED else f"extra_{key}"] = value


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time of each record.

    Test runners and process managers replace ``sys.stdout``; a handler bound to the object
    that existed at start-up would write into a closed stream.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self._failures = FailureLog()

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass

    def write_line(self, line: str, created: float) -> None:
        """Write an already formatted line (the access log's fast path); a failing stdout (a
        closed pipe) is reported, and the line still reaches the other handlers."""
        try:
            with self.lock:  # type: ignore[union-attr]
                stream = sys.stdout
                stream.write(line + self.terminator)
                stream.flush()
        except Exception:
            self._failures("writing a log line to standard output")


class WerkzeugRequestLineFilter(logging.Filter):
    """Drops the development server's own request lines, which duplicate the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and isinstance(record.msg, str)
            and '" ' in record.msg
            and " - - [" in record.msg
        )


class AccessLog:
    """Writes one line per finished request to the ``flask_observe.access`` logger.

    Fields: ``method``, ``route`` (the URL rule, ``null`` when no route matched), ``path``,
    ``status``, ``duration_ms``, ``response_size`` (bytes sent), ``correlation_id``, when
    enabled ``remote_addr``, and fields other features add to the record (``db_queries``).
    5xx responses log at ERROR, 4xx at WARNING, the rest at INFO.
    """

    def __init__(
        self,
        excluded: Callable[[str], bool] | None,
        remote_addr: bool = False,
        logger: logging.Logger | None = None,
        identity: Mapping[str, Any] | None = None,
    ) -> None:
        self.logger = logger or logging.getLogger("flask_observe.access")
        self._excluded = excluded
        self._remote_addr = remote_addr
        # The line is written after the app context is gone: name the app explicitly.
        self._identity = identity

    def __call__(self, record: RequestRecord) -> None:
        environ = record.environ
        path = environ.get("PATH_INFO", "")
        if self._excluded is not None and self._excluded(path):
            return
        if not path.isascii():
            path = request_path(environ)
        status = record.status
        level = (
            logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        )
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        method = environ.get("REQUEST_METHOD", "")
        fields: dict[str, Any] = {
            "method": method,
            "route": record.route,
            "path": path,
            "status": status,
            "duration_ms": round(record.duration * 1000.0, 3),
            "response_size": record.size,
        }
        if self._remote_addr:
            fields["remote_addr"] = environ.get("REMOTE_ADDR")
        span = environ.get(SPAN_CONTEXT_KEY)
        if span is not None and span.trace_flags & 1:
            # Written after the server span ended: its IDs were left in the environ.
            fields["trace_id"] = f"{span.trace_id:032x}"
            fields["span_id"] = f"{span.span_id:016x}"
        if record.fields:
            fields.update(record.fields)
        message = f"{method} {path} {status}"
        sinks = _direct_sinks(logger, level)
        if sinks is None:
            # Someone else listens (a host handler, a filter, pytest's caplog): go through
            # stdlib logging so they see the line.
            line = logger.makeRecord(
                logger.name, level, "flask_observe.access", 0, message, (), None, extra=fields
            )
            setattr(line, IDENTITY_ATTR, self._identity)
            logger.handle(line)
            return
        created = time.time()
        level_name = _LEVEL_NAMES[level]
        rendered: dict[int, str] = {}
        for handler in sinks:
            formatter = handler.formatter
            key = id(formatter)
            text = rendered.get(key)
            if text is None:
                text = formatter.format_fields(  # type: ignore[union-attr]
                    created, level_name, logger.name, message, fields, self._identity
                )
                rendered[key] = text
            handler.write_line(text, created)  # type: ignore[attr-defined]


_LEVEL_NAMES = {logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}


def _direct_sinks(logger: logging.Logger, level: int) -> list[logging.Handler] | None:
    """Observe's handlers that would receive a record of ``level`` from ``logger``, or ``None``
    when any other handler or a filter is on the way (then the normal path must be taken).

    Writing the access line straight to our own handlers skips building a LogRecord and the
    generic formatting of one, the bulk of the access log's per-request cost.
    """
    sinks: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if handler.filters or not hasattr(handler, "write_line"):
                return None
            if not isinstance(handler.formatter, ObserveFormatter):
                return None
            if level >= handler.level:
                sinks.append(handler)
        if not current.propagate:
            break
        current = current.parent
    return sinks


def compile_exclusions(patterns: tuple[str, ...]) -> Callable[[str], bool] | None:
    """One search function for the shared list of excluded path patterns."""
    if not patterns:
        return None
    combined = re.compile("|".join(f"(?:{p})" for p in patterns))
    # Patterns all anchored at the start (the defaults are) need only be tried there: match
    # instead of search, the same answer for a fraction of the cost on every request.
    find = combined.match if all(_anchored(p) for p in patterns) else combined.search
    return lambda path: find(path) is not None


def _anchored(pattern: str) -> bool:
    """Whether every branch of ``pattern`` starts with ``^`` (no top-level ``|``)."""
    if not pattern.startswith("^"):
        return False
    depth, escaped, in_class = 0, False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return False
    return True


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


def identity_fields(config: ObserveConfig, service: str) -> dict[str, Any]:
    """``service`` and, when configured, ``version`` and ``environment`` of an app's lines."""
    fields: dict[str, Any] = {"service": service}
    if config.service_version:
        fields["version"] = config.service_version
    if config.environment:
        fields["environment"] = config.environment
    return fields


_HANDLER_KEY = "_flask_observe_key"
_HANDLER_REFS = "_flask_observe_refs"
#: The settings a shared handler was made with, to tell a later app which of its own differ.
_HANDLER_SETTINGS = "_flask_observe_settings"


class LoggingSetup:
    """The handlers one app uses on the root logger.

    Handlers are shared by destination: a second app (or a second test) logging to stdout or
    to the same file reuses the handler already there instead of adding a duplicate, and
    :meth:`close` removes a handler only when its last user closes.
    """

    def __init__(
        self,
        config: ObserveConfig,
        identity: Mapping[str, Any],
        identity_lookup: Callable[[], Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.handlers: list[logging.Handler] = []
        self.root = logging.getLogger()
        level = logging.getLevelName(config.log_level)
        static = {k: v for k, v in identity.items() if k != "service"}
        formatter = ObserveFormatter(
            identity["service"], config.log_format, static, identity_lookup
        )
        try:
            self._attach_all(config, formatter, level)
        except BaseException:
            self.close()
            raise
        if self.root.level == logging.NOTSET or self.root.level > level:
            # Lower the root level so our handlers see the records; a host that set a lower
            # level keeps it (our handlers filter by their own level).
            self.root.setLevel(level)
        for name, logger_level in config.log_levels.items():
            logging.getLogger(name).setLevel(logger_level)
        if config.access_log:
            _add_filter_once(logging.getLogger("werkzeug"), WerkzeugRequestLineFilter)

    def _attach_all(self, config: ObserveConfig, formatter: logging.Formatter, level: int) -> None:
        settings: dict[str, Any] = {
            "OBSERVE_LOG_FORMAT": config.log_format,
            "OBSERVE_LOG_LEVEL": config.log_level,
        }
        if config.log_stdout:
            self._attach(("stdout",), StdoutHandler, formatter, level, settings)
        if config.log_dir:
            from .retention import RetentionPolicy, RotatingFileHandler

            path = (Path(config.log_dir) / config.log_file_name).absolute()
            policy = RetentionPolicy(
                config.log_retention_days, config.log_retention_files, config.log_retention_bytes
            )
            settings = {
                **settings,
                "OBSERVE_LOG_ROTATE_BYTES": config.log_rotate_bytes,
                "OBSERVE_LOG_ROTATE_INTERVAL": config.log_rotate_interval,
                "OBSERVE_LOG_COMPRESS": config.log_compress,
                "OBSERVE_LOG_RETENTION_*": policy,
            }
            self._attach(
                ("file", str(path)),
                lambda: RotatingFileHandler(
                    path,
                    max_bytes=config.log_rotate_bytes,
                    interval=config.log_rotate_interval,
                    compress=config.log_compress,
                    retention=policy,
                ),
                formatter,
                level,
                settings,
            )

    def _attach(
        self,
        key: tuple[str, ...],
        factory: Callable[[], logging.Handler],
        formatter: logging.Formatter,
        level: int,
        settings: Mapping[str, Any],
    ) -> None:
        for handler in self.root.handlers:
            if getattr(handler, _HANDLER_KEY, None) == key:
                setattr(handler, _HANDLER_REFS, getattr(handler, _HANDLER_REFS, 1) + 1)
                self.handlers.append(handler)
                first = getattr(handler, _HANDLER_SETTINGS, {})
                ignored = sorted(k for k, v in settings.items() if k in first and first[k] != v)
                if ignored:
                    # One handler per destination (no line written twice): the first app's
                    # settings for it stand.
                    logging.getLogger("flask_observe").warning(
                        "flask_observe: %s is already written by another app; this app's %s"
                        " differ and are not applied to it (the first app's stand)",
                        key[-1],
                        ", ".join(ignored),
                    )
                return
        handler = factory()
        handler.setFormatter(formatter)
        handler.setLevel(level)
        setattr(handler, _HANDLER_KEY, key)
        setattr(handler, _HANDLER_REFS, 1)
        setattr(handler, _HANDLER_SETTINGS, dict(settings))
        self.root.addHandler(handler)
        self.handlers.append(handler)

    def close(self) -> None:
        """Release this app's handlers; the last user of a handler removes and closes it."""
        for handler in self.handlers:
            refs = getattr(handler, _HANDLER_REFS, 1) - 1
            setattr(handler, _HANDLER_REFS, refs)
            if refs <= 0:
                self.root.removeHandler(handler)
                handler.close()
        self.handlers = []


def _add_filter_once(logger: logging.Logger, filter_type: type[logging.Filter]) -> None:
    if not any(isinstance(f, filter_type) for f in logger.filters):
        logger.addFilter(filter_type())
