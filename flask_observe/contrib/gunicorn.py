"""gunicorn config for flask_observe: threaded workers, and hooks for prometheus_client's
multiprocess mode.

Use as the config module (``gunicorn -c python:flask_observe.contrib.gunicorn app:app``) or
import the hooks into your own ``gunicorn.conf.py``::

    from flask_observe.contrib.gunicorn import on_starting, child_exit  # noqa: F401

``PROMETHEUS_MULTIPROC_DIR`` must be set in the environment before gunicorn starts (the
workers' prometheus_client picks its mode when imported). ``on_starting`` removes the
directory's ``*.db`` files (files from a previous run would be summed into this one);
``child_exit`` folds a dead worker's counters into the archive files and removes its live
gauges, so recycled workers (``max_requests``) do not pile up files.
"""

from __future__ import annotations

import os
from typing import Any

from ..metrics.multiprocess import mark_process_dead, multiprocess_dir, wipe

__all__ = ["child_exit", "on_starting"]


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


# Reasonable defaults when used as the config module; override on the command line.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threaded workers: a long request (a live tail of the log viewer holds its thread while it
# is open, a slow upstream call) takes one thread, not the whole worker. gunicorn's default
# sync worker serves one request at a time, so two open tails would starve a 2-worker app
# until gunicorn killed both workers as timed out (the viewer refuses to stream there).
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
