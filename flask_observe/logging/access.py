"""The access log: one line per finished request, written by the request middleware.

Fields: ``method``, ``route`` (the URL rule), ``path``, ``status``, ``duration_ms``,
``response_size``, ``correlation_id``, optionally ``remote_addr``, the server span's IDs when
tracing, and fields other features add (``db_queries``). Paths on the shared exclusion list
(``ObserveState.excluded``: health probes, ``/metrics``) are not logged.

Whatever comes from the request is capped (an outsider chooses its length: werkzeug takes
request lines of 64 KiB) and the path is written once: ``message`` names the route, or only the
first bytes of the path when no route matched.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._internal import request_path
from ..hooks import SPAN_CONTEXT_KEY, RequestRecord
from .formatter import IDENTITY_ATTR, ObserveFormatter, truncate

__all__ = ["AccessLog"]

#: The longest method written (real ones are a few letters; werkzeug takes any token).
_METHOD_BYTES = 64
#: How much of an unmatched path ``message`` repeats (the whole, capped, is in ``path``).
_MESSAGE_PATH_BYTES = 256


class AccessLog:
    """Writes one line per finished request to the ``flask_observe.access`` logger.

    Fields: ``method``, ``route`` (the URL rule, ``null`` when no route matched), ``path``,
    ``status``, ``duration_ms``, ``response_size`` (bytes sent), ``correlation_id``, when
    enabled ``remote_addr``, and fields other features add to the record (``db_queries``).
    5xx responses log at ERROR, 4xx at WARNING, the rest at INFO. ``message`` is
    ``METHOD route status``, or with no route ``METHOD path status`` with the path cut to 256
    bytes; ``path`` and ``remote_addr`` are cut to ``max_field_bytes``, ``method`` to 64.
    """

    def __init__(
        self,
        excluded: Callable[[str], bool] | None,
        remote_addr: bool = False,
        logger: logging.Logger | None = None,
        identity: Mapping[str, Any] | None = None,
        max_field_bytes: int = 2048,
    ) -> None:
        self.logger = logger or logging.getLogger("flask_observe.access")
        self._excluded = excluded
        self._remote_addr = remote_addr
        self._limit = max_field_bytes
        #: Values no longer than this many characters are short enough whatever they hold.
        self._short = max_field_bytes >> 2
        # The line is written after the app context is gone: name the app explicitly.
        self._identity = identity
        self._sinks = _Sinks(self.logger)

    def __call__(self, record: RequestRecord) -> None:
        environ = record.environ
        path = environ.get("PATH_INFO", "")
        excluded = record.excluded  # the same shared list: metrics may have checked already
        if excluded is None:
            excluded = record.excluded = self._excluded is not None and self._excluded(path)
        if excluded:
            return
        if not path.isascii():
            path = request_path(environ)
        full_path = path
        if len(path) > self._short:
            path = truncate(path, self._limit)
        status = record.status
        level = _ERROR if status >= 500 else _WARNING if status >= 400 else _INFO
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        method = environ.get("REQUEST_METHOD", "")
        if len(method) > _METHOD_BYTES >> 2:
            method = truncate(method, _METHOD_BYTES)
        fields: dict[str, Any] = {
            "method": method,
            "route": record.route,
            "path": path,
            "status": status,
            "duration_ms": round(record.duration * 1000.0, 3),
            "response_size": record.size,
        }
        if record.client_wait >= 0.001:
            # Time waiting on the client (a slow upload or download), part of duration_ms.
            fields["client_wait_ms"] = round(record.client_wait * 1000.0, 3)
        if self._remote_addr:
            address = environ.get("REMOTE_ADDR")
            if isinstance(address, str) and len(address) > self._short:  # from a proxy header
                address = truncate(address, self._limit)
            fields["remote_addr"] = address
        span = environ.get(SPAN_CONTEXT_KEY)
        if span is not None and span.trace_flags & 1:
            # Written after the server span ended: its IDs were left in the environ.
            fields["trace_id"] = f"{span.trace_id:032x}"
            fields["span_id"] = f"{span.span_id:016x}"
        if record.fields:
            fields.update(record.fields)
        route = record.route
        if route is None:
            route = truncate(full_path, _MESSAGE_PATH_BYTES)
        message = f"{method} {route} {status}"
        sinks = self._sinks(level)
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
        last_formatter: Any = None
        text = ""
        made: dict[str, Any] | None = None
        line_sinks, field_sinks = sinks
        for formatter, write_line in line_sinks:
            if formatter is not last_formatter:  # handlers sharing a formatter share the text
                out = formatter.line_fields(
                    created, level_name, logger.name, message, fields, self._identity
                )
                text = formatter.render(out)
                last_formatter = formatter
                if made is None and formatter.renders_json:
                    made = out  # the JSON line's own fields, for the sinks of fields
            write_line(text, created)
        # Sinks of fields, not of lines (OTLP logs): after the lines, given their fields.
        for write_fields in field_sinks:
            write_fields(created, level, logger.name, message, fields, self._identity, made)


_INFO, _WARNING, _ERROR = logging.INFO, logging.WARNING, logging.ERROR
_LEVEL_NAMES = {_INFO: "info", _WARNING: "warning", _ERROR: "error"}


def _direct_sinks(logger: logging.Logger, level: int) -> list[logging.Handler] | None:
    """Observe's handlers that would receive a record of ``level`` from ``logger``, or ``None``
    when any other handler or a filter is on the way (then the normal path must be taken).
    A handler with ``write_fields`` (OTLP logs) takes the line's fields instead of its text.

    Writing the access line straight to our own handlers skips building a LogRecord and the
    generic formatting of one, the bulk of the access log's per-request cost.
    """
    sinks: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if handler.filters:
                return None
            if not hasattr(handler, "write_fields") and (
                not hasattr(handler, "write_line")
                or not isinstance(handler.formatter, ObserveFormatter)
            ):
                return None
            if level >= handler.level:
                sinks.append(handler)
        if not current.propagate:
            break
        current = current.parent
    return sinks


#: What :func:`_direct_sinks` reads of each logger on the way, and of each of their handlers.
_LOGGER_STATE = operator.attrgetter("filters", "handlers", "propagate", "parent")
_HANDLER_STATE = operator.attrgetter("filters", "level", "formatter")

#: The direct sinks of a level: (formatter, ``write_line``) of each sink of lines, then the
#: ``write_fields`` of each sink of fields (OTLP logs), in the handlers' order.
_SinkSet = tuple[tuple[tuple[Any, Any], ...], tuple[Any, ...]]


class _Sinks:
    """:func:`_direct_sinks` of one logger by level, remembered while every logger on the way
    and every handler of theirs is as it was (the same filters, handlers, propagation and
    parent; the same filters, level and formatter): checking that is two ``map`` calls in C,
    the walk itself a loop of attribute tests in Python on every request."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._known: dict[int, tuple[Any, Any, Any, _SinkSet | None]] = {}

    def __call__(self, level: int) -> _SinkSet | None:
        known = self._known.get(level)
        if known is not None:
            chain, handlers, state, sinks = known
            if (list(map(_LOGGER_STATE, chain)), list(map(_HANDLER_STATE, handlers))) == state:
                return sinks
        return self._look(level)

    def _look(self, level: int) -> _SinkSet | None:
        chain: list[logging.Logger] = []
        current: logging.Logger | None = self._logger
        while current is not None:
            chain.append(current)
            if not current.propagate:
                break
            current = current.parent
        handlers = [handler for logger in chain for handler in logger.handlers]
        # Copies of the lists: the loggers' own ones change in place.
        state = (
            [(list(f), list(h), p, parent) for f, h, p, parent in map(_LOGGER_STATE, chain)],
            [(list(f), lvl, fmt) for f, lvl, fmt in map(_HANDLER_STATE, handlers)],
        )
        found = _direct_sinks(self._logger, level)
        sinks: _SinkSet | None = None
        if found is not None:
            fields_of = [getattr(h, "write_fields", None) for h in found]
            sinks = (
                tuple(
                    (h.formatter, getattr(h, "write_line", None))
                    for h, write_fields in zip(found, fields_of, strict=True)
                    if write_fields is None
                ),
                tuple(write_fields for write_fields in fields_of if write_fields is not None),
            )
        self._known[level] = (chain, handlers, state, sinks)
        return sinks
