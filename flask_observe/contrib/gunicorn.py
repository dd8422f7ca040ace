"""gunicorn config for flask_observe: threaded workers, hooks for prometheus_client's
multiprocess mode, and gunicorn's own log lines in flask_observe's format.

Use as the config module (``gunicorn -c python:flask_observe.contrib.gunicorn app:app``) or
import what you need into your own ``gunicorn.conf.py``::

    from flask_observe.contrib.gunicorn import child_exit, logger_class, on_starting  # noqa: F401

``PROMETHEUS_MULTIPROC_DIR`` must be set in the environment before gunicorn starts (the
workers' prometheus_client picks its mode when imported). ``on_starting`` removes the
directory's ``*.db`` files (files from a previous run would be summed into this one);
``child_exit`` folds a dead worker's counters into the archive files and removes its live
gauges, so recycled workers (``max_requests``) do not pile up files.

``logger_class`` makes gunicorn's own lines (``Booting worker``, ``Worker exiting``, its
access log if you turn it on) JSON lines like the app's, or console lines on a terminal, so a
log shipper reads one format: see :class:`Logger`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from gunicorn.glogging import Logger as _GunicornLogger  # type: ignore[import-untyped]

from ..logging.formatter import ObserveFormatter, is_terminal
from ..logging.handlers import ReportedExceptionFilter, console_colors
from ..logging.settings import LOG_FORMATS
from ..metrics.multiprocess import mark_process_dead, multiprocess_dir, wipe

__all__ = ["Logger", "child_exit", "logger_class", "on_starting"]


def on_starting(server: Any) -> None:
    """gunicorn master start-up: remove the metric files of a previous run."""
    path = multiprocess_dir()
    if path:
        wipe(path)
        server.log.info("flask_observe: removed old metric files from %s", path)
    else:
        server.log.warning(
            "flask_observe: PROMETHEUS_MULTIPROC_DIR is not set; with several workers each"
            " scrape of /metrics sees one worker only"
        )


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn master, after a worker exited: keep its counts, drop its files."""
    if multiprocess_dir():
        try:
            mark_process_dead(worker.pid)
        except Exception:
            server.log.exception("flask_observe: metrics cleanup of worker %s failed", worker.pid)


class _ProcessId(logging.Filter):
    """Adds ``pid`` to gunicorn's lines (its own format starts with it: which worker booted,
    which one exited)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.pid = record.process
        return True


class Logger(_GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger, writing its lines (``gunicorn.error`` and ``gunicorn.access``) with
    :class:`~flask_observe.ObserveFormatter`, where gunicorn's options send them
    (``--error-logfile``, default standard error; ``--access-logfile``).

    The app's settings are not known in the master, which never loads the app (without
    ``--preload``); the same settings come from the environment the app reads through
    ``app.config.from_prefixed_env()``:

    - ``FLASK_OBSERVE_LOG_FORMAT``: ``json``, ``console`` or ``auto`` (the default: ``console``
      when the destination is a terminal, else ``json``); files always get JSON;
    - ``service``: ``FLASK_OBSERVE_SERVICE_NAME``, else gunicorn's ``--name``, else the app's
      module (``myapp`` for ``myapp:app``).

    Each line carries ``pid`` (the process that wrote it). A server's own report of an
    exception flask_observe logged already (debug mode re-raises it) is dropped: one traceback
    per error. Syslog output (``--log-syslog``) keeps gunicorn's format.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        environ = os.environ
        service = _service_name(cfg, environ)
        setting = environ.get("FLASK_OBSERVE_LOG_FORMAT", "auto").strip().lower()
        if setting not in LOG_FORMATS:
            setting = "auto"
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not getattr(handler, "_gunicorn", False):
                    continue  # syslog, or a handler of the host's logconfig
                stream = getattr(handler, "stream", None)
                fmt = setting
                if isinstance(handler, logging.FileHandler):
                    fmt = "json"
                elif fmt == "auto":
                    fmt = "console" if is_terminal(stream) else "json"
                handler.setFormatter(
                    ObserveFormatter(service, fmt, colors=console_colors(environ, stream))
                )
                if not any(isinstance(f, _ProcessId) for f in handler.filters):
                    handler.addFilter(_ProcessId())
        if not any(isinstance(f, ReportedExceptionFilter) for f in self.error_log.filters):
            self.error_log.addFilter(ReportedExceptionFilter())


def _service_name(cfg: Any, environ: Mapping[str, str]) -> str:
    """``FLASK_OBSERVE_SERVICE_NAME``, else ``--name``, else the module of the app URI (what
    gunicorn's ``proc_name`` falls back to: ``pkg.myapp:create_app()`` is ``myapp``)."""
    name = environ.get("FLASK_OBSERVE_SERVICE_NAME") or str(getattr(cfg, "proc_name", "") or "")
    if ":" in name:
        name = name.split(":", 1)[0].rsplit(".", 1)[-1]
    return name or "gunicorn"


#: The config module's logger: gunicorn loads it by name when it configures logging.
logger_class = f"{__name__}.Logger"

# Reasonable defaults when used as the config module; override on the command line.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threaded workers: a long request (a live tail of the log viewer holds its thread while it
# is open, a slow upstream call) takes one thread, not the whole worker. gunicorn's default
# sync worker serves one request at a time, so two open tails would starve a 2-worker app
# until gunicorn killed both workers as timed out (the viewer refuses to stream there).
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
