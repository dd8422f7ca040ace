"""The handlers an app's log lines go to: stdout and/or a rotated file on the root logger.

Handlers are shared by destination across apps (and tests) in one process, so nothing is
written twice, and removed when the last app using them shuts down.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .._internal import FailureLog, was_reported
from .formatter import ObserveFormatter, is_terminal, truncate

if TYPE_CHECKING:
    from .settings import LoggingSettings

__all__ = [
    "LoggingSetup",
    "ReportedExceptionFilter",
    "StdoutHandler",
    "WerkzeugLineCap",
    "WerkzeugRequestLineFilter",
    "console_colors",
    "stdout_format",
]


def stdout_format(setting: str, *, debug: bool = False, stream: Any = None) -> str:
    """The format of standard output for ``OBSERVE_LOG_FORMAT`` = ``setting``: ``auto`` is
    ``console`` when the app runs in debug mode or ``stream`` (default: ``sys.stdout``) is a
    terminal (a person reads it), ``json`` otherwise (a collector reads it)."""
    if setting != "auto":
        return setting
    return "console" if debug or is_terminal(sys.stdout if stream is None else stream) else "json"


def console_colors(environ: Mapping[str, str], stream: Any = None) -> bool:
    """Whether the console format is coloured: on a terminal, unless ``NO_COLOR`` is set;
    anywhere with ``FORCE_COLOR`` (neither empty nor ``0``)."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    return is_terminal(sys.stdout if stream is None else stream)


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


class WerkzeugLineCap(logging.Filter):
    """Cuts the request data in werkzeug's own lines to ``limit`` bytes.

    The development server logs the raw request line: in its request lines, and in the error
    it writes for a malformed one (``code 400, message Bad request syntax ('…')``), up to the
    64 KiB it accepts. Those come as arguments of the record; each string argument is cut
    (``…[truncated N bytes]``), the server's own text is left alone.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            short = self.limit >> 2
            record.args = tuple(
                truncate(arg, self.limit) if isinstance(arg, str) and len(arg) > short else arg
                for arg in args
            )
        return True


class ReportedExceptionFilter(logging.Filter):
    """Drops a server's own error line about an exception flask_observe logged already.

    In debug mode an exception is logged with its traceback by the request middleware and
    then re-raised to the server, which prints it again: werkzeug's development server
    (``Error on request:`` and the traceback as text, from inside its ``except`` block) or
    gunicorn (``Error handling request``). One traceback per error is enough.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        return not was_reported(exc)


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
        config: LoggingSettings,
        identity: Mapping[str, Any],
        identity_lookup: Callable[[], Mapping[str, Any] | None] | None = None,
        *,
        debug: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.handlers: list[logging.Handler] = []
        self.root = logging.getLogger()
        self._counted = False
        level = logging.getLevelName(config.log_level)
        static = {k: v for k, v in identity.items() if k != "service"}
        #: What standard output gets (``OBSERVE_LOG_FORMAT``, ``auto`` decided here).
        self.stdout_format = stdout_format(config.log_format, debug=debug)
        stdout = ObserveFormatter(
            identity["service"],
            self.stdout_format,
            static,
            identity_lookup,
            colors=console_colors(environ if environ is not None else {}),
        )
        # Files are read back by the log viewer and by shippers: always JSON lines.
        files = ObserveFormatter(identity["service"], "json", static, identity_lookup)
        try:
            self._attach_all(config, stdout, files, level)
        except BaseException:
            self.close()
            raise
        with _GLOBAL_LOCK:
            _GLOBAL.users += 1
            self._counted = True
            if self.root.level == logging.NOTSET or self.root.level > level:
                # Lower the root level so our handlers see the records; a host that set a
                # lower level keeps it (our handlers filter by their own level).
                _set_level(self.root, level)
            for name, logger_level in config.log_levels.items():
                _set_level(logging.getLogger(name), logger_level)
            werkzeug = logging.getLogger("werkzeug")
            if config.access_log and not any(
                isinstance(f, WerkzeugRequestLineFilter) for f in werkzeug.filters
            ):
                dropper = WerkzeugRequestLineFilter()
                werkzeug.addFilter(dropper)
                _GLOBAL.undo.append(lambda: werkzeug.removeFilter(dropper))
            if not any(isinstance(f, ReportedExceptionFilter) for f in werkzeug.filters):
                told = ReportedExceptionFilter()
                werkzeug.addFilter(told)
                _GLOBAL.undo.append(lambda: werkzeug.removeFilter(told))
            if not any(isinstance(f, WerkzeugLineCap) for f in werkzeug.filters):
                cap = WerkzeugLineCap(config.log_max_field_bytes)
                werkzeug.addFilter(cap)
                _GLOBAL.undo.append(lambda: werkzeug.removeFilter(cap))

    def on_early_deletion(self, listener: Callable[[int, int], None]) -> Callable[[], None]:
        """Call ``listener(files, bytes)`` whenever retention of this app's log file deletes
        files younger than ``OBSERVE_LOG_RETENTION_MIN_SECONDS`` to keep the disk budget (the
        metrics feature counts them); returns the undo."""
        undo = [h.early.listen(listener) for h in self.handlers if hasattr(h, "early")]

        def remove() -> None:
            for one in undo:
                one()

        return remove

    def _attach_all(
        self,
        config: LoggingSettings,
        stdout: logging.Formatter,
        files: logging.Formatter,
        level: int,
    ) -> None:
        settings: dict[str, Any] = {"OBSERVE_LOG_LEVEL": config.log_level}
        if config.log_stdout:
            self._attach(
                ("stdout",),
                StdoutHandler,
                stdout,
                level,
                {"OBSERVE_LOG_FORMAT": self.stdout_format, **settings},
            )
        if config.log_dir:
            from .files import RetentionPolicy, RotatingFileHandler

            path = (Path(config.log_dir) / config.log_file_name).absolute()
            policy = RetentionPolicy(
                config.log_retention_days,
                config.log_retention_files,
                config.log_retention_bytes,
                config.log_retention_min_seconds,
                config.log_retention_error_days,
            )
            settings = {
                **settings,
                "OBSERVE_LOG_ROTATE_BYTES": config.log_rotate_bytes,
                "OBSERVE_LOG_ROTATE_INTERVAL": config.log_rotate_interval,
                "OBSERVE_LOG_COMPRESS": config.log_compress,
                "OBSERVE_LOG_FILE_HOLDS_GIL": config.log_file_holds_gil,
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
                    hold_gil=config.log_file_holds_gil,
                ),
                files,
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
        """Release this app's handlers; the last user of a handler removes and closes it. The
        last setup in the process to close also puts back the logger levels and the werkzeug
        filter it found (a level someone else changed since is left alone)."""
        for handler in self.handlers:
            refs = getattr(handler, _HANDLER_REFS, 1) - 1
            setattr(handler, _HANDLER_REFS, refs)
            if refs <= 0:
                self.root.removeHandler(handler)
                handler.close()
        self.handlers = []
        if not self._counted:
            return
        self._counted = False
        with _GLOBAL_LOCK:
            _GLOBAL.users -= 1
            if _GLOBAL.users > 0:
                return
            while _GLOBAL.undo:
                _GLOBAL.undo.pop()()


class _GlobalChanges:
    """Changes to process-wide logging state, shared by every app's setup: undone, last first,
    when the last setup closes (another app may still rely on them until then)."""

    def __init__(self) -> None:
        self.users = 0
        self.undo: list[Callable[[], None]] = []


_GLOBAL = _GlobalChanges()
_GLOBAL_LOCK = threading.Lock()


def _set_level(logger: logging.Logger, level: int | str) -> None:
    """Set ``logger``'s level, remembering how to put the previous one back (only if nobody
    changed it in between)."""
    before = logger.level
    logger.setLevel(level)
    ours = logger.level

    def restore() -> None:
        if logger.level == ours:
            logger.setLevel(before)

    _GLOBAL.undo.append(restore)
