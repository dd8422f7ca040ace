"""An app that writes its log to files, served by real gunicorn and werkzeug in the log-file
tests; its settings come from ``FLASK_OBSERVE_*`` variables (``OBSERVE_LOG_DIR`` and the
rotation and retention keys)."""

from __future__ import annotations

import os

from flask import Flask

from flask_observe import Observe

app = Flask("logfile-app")
app.config.update(
    OBSERVE_LOG_STDOUT=False,
    OBSERVE_TRACING_ENABLED=False,
    OBSERVE_SENTRY_ENABLED=False,
    OBSERVE_METRICS_ENABLED=False,
    OBSERVE_CELERY_ENABLED=False,
)
app.config.from_prefixed_env()
observe = Observe(app)


@app.get("/hit")
def hit() -> dict[str, int]:
    return {"pid": os.getpid()}
