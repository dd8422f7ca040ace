"""SQL spans as the database conventions name them, with ``error.type``, and the query hooks.

The SQLAlchemy instrumentation names a span ``{first word} {database}``, and for SQLite the
database is the file's path (``SELECT /srv/app/instance/scraper.db``); ``db.operation`` holds
the same text. Its span is still open when SQLAlchemy's ``after_cursor_execute`` and
``handle_error`` run: listeners on the ``Engine`` class run before the instrumentation's own
(SQLAlchemy calls class-level listeners first), so they see the span before it ends and
correct it there — whatever the tracer provider, the host's included:

- the ``connect`` span's SQLite ``db.namespace`` is the file's name too;
- the span name is ``{operation} {db.namespace}`` (``SELECT test``), or the operation alone
  where the namespace is a file (SQLite: ``SELECT``); never a path;
- ``db.operation.name`` (and ``db.operation`` with the old names) is the operation alone;
- SQLite's ``db.namespace`` (and ``db.name``) is the file's name without its directories;
- on a failure, ``error.type`` is the driver's exception class (``sqlite3.OperationalError``)
  and ``db.response.status_code`` the SQLSTATE or the driver's code when it gives one;
- then the query hooks the app set (``OBSERVE_TRACING_QUERY_HOOK``, ``TracingSetup.add_hook``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from .._internal import FailureLog
from . import conventions

__all__ = ["install_sql_listeners"]

_COMMENT = re.compile(r"^\s*(?:/\*.*?\*/\s*|--[^\n]*\n\s*)*", re.DOTALL)
_failures = FailureLog()


def operation(statement: Any) -> str | None:
    """The statement's first word, upper-case (``SELECT``), or ``None``."""
    if not isinstance(statement, str):
        return None
    words = _COMMENT.sub("", statement, count=1).split(None, 1)
    return words[0].upper() if words else None


def _namespace(span: Any, dialect: str) -> str | None:
    attributes = getattr(span, "attributes", None) or {}
    namespace = attributes.get("db.namespace") or attributes.get("db.name")
    if namespace is None:
        return None
    namespace = str(namespace)
    if dialect == "sqlite":
        return namespace.replace("\\", "/").rsplit("/", 1)[-1] or None
    return namespace


def _name(span: Any, conn: Any, statement: Any) -> None:
    dialect = str(getattr(getattr(conn, "dialect", None), "name", "") or "")
    verb = operation(statement)
    namespace = _namespace(span, dialect)
    stable, old = conventions.names()
    if verb is not None:
        if stable:
            span.set_attribute("db.operation.name", verb)
        if old:
            span.set_attribute("db.operation", verb)
    if namespace is not None and dialect == "sqlite":
        if stable:
            span.set_attribute("db.namespace", namespace)
        if old:
            span.set_attribute("db.name", namespace)
    if dialect == "sqlite" or namespace is None:
        name = verb or dialect or "SQL"
    else:
        name = f"{verb} {namespace}" if verb else namespace
    span.update_name(name)


def qualified_name(kind: type) -> str:
    """``module.QualName``; builtins by their bare name."""
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", kind.__name__)
    return name if not module or module == "builtins" else f"{module}.{name}"


def _status_code(error: BaseException) -> str | None:
    for attribute in ("sqlstate", "pgcode", "sqlite_errorname", "errno"):
        value = getattr(error, attribute, None)
        if value:
            return str(value)
    diag = getattr(error, "diag", None)
    value = getattr(diag, "sqlstate", None)
    return str(value) if value else None


class SqlListeners:
    """The class-level ``Engine`` listeners; ``hooks()`` gives the current app's query hooks."""

    def __init__(self, hooks: Callable[[], tuple[Callable[..., object], ...]]) -> None:
        self._hooks = hooks

    def after_execute(
        self, conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any, many: Any
    ) -> None:
        span = getattr(context, "_otel_span", None)
        if span is None or not span.is_recording():
            return
        try:
            _name(span, conn, statement)
        except Exception:
            _failures("naming an SQL span")
        for hook in self._hooks():
            try:
                hook(span, conn, cursor, statement, parameters, context)
            except Exception:
                _failures(f"query hook {getattr(hook, '__qualname__', hook)}")

    def on_connect(self, conn: Any, *args: Any) -> None:
        """Inside the instrumentation's ``connect`` span: SQLite's file name, not its path."""
        if str(getattr(getattr(conn, "dialect", None), "name", "")) != "sqlite":
            return
        try:
            from opentelemetry.trace import get_current_span

            span = get_current_span()
            if span.is_recording() and getattr(span, "name", None) == "connect":
                namespace = _namespace(span, "sqlite")
                stable, old = conventions.names()
                if namespace is not None:
                    if stable:
                        span.set_attribute("db.namespace", namespace)
                    if old:
                        span.set_attribute("db.name", namespace)
        except Exception:
            _failures("naming an SQL connect span")

    def on_error(self, context: Any) -> None:
        execution = getattr(context, "execution_context", None)
        span = getattr(execution, "_otel_span", None)
        if span is None or not span.is_recording():
            return
        try:
            _name(span, context.connection, context.statement)
            error = context.original_exception
            span.set_attribute("error.type", qualified_name(type(error)))
            code = _status_code(error)
            if code is not None:
                span.set_attribute("db.response.status_code", code)
        except Exception:
            _failures("recording an SQL error on its span")


_installed: list[SqlListeners] = []
_lock = threading.Lock()


def install_sql_listeners(
    hooks: Callable[[], tuple[Callable[..., object], ...]],
) -> Callable[[], None]:
    """Listen on every engine (once per process); returns the function that stops."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    with _lock:
        listeners = SqlListeners(hooks)
        event.listen(Engine, "after_cursor_execute", listeners.after_execute)
        event.listen(Engine, "handle_error", listeners.on_error)
        event.listen(Engine, "engine_connect", listeners.on_connect)
        _installed.append(listeners)

    def remove() -> None:
        with _lock:
            if listeners in _installed:
                _installed.remove(listeners)
                event.remove(Engine, "after_cursor_execute", listeners.after_execute)
                event.remove(Engine, "handle_error", listeners.on_error)
                event.remove(Engine, "engine_connect", listeners.on_connect)

    return remove
