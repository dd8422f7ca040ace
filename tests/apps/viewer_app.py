"""An app with the log viewer on, served by real gunicorn in the live-tail tests. Its log
directory is ``VIEWER_LOG_DIR``; its token ``VIEWER_TOKEN``."""

from __future__ import annotations

import logging
import os

from flask import Flask, Response

from flask_observe import Observe

app = Flask("viewer-app")
app.config.update(
    OBSERVE_LOG_STDOUT=False,
    OBSERVE_LOG_DIR=os.environ["VIEWER_LOG_DIR"],
    OBSERVE_LOGVIEWER_ENABLED=True,
    OBSERVE_AUTH_TOKEN=os.environ["VIEWER_TOKEN"],
)
Observe(app)


@app.get("/")
def home() -> str:
    logging.getLogger("viewer_app").warning("home page served")
    return "home"


@app.after_request
def worker(response: Response) -> Response:
    response.headers["X-Worker-Pid"] = str(os.getpid())  # which worker answered
    return response
