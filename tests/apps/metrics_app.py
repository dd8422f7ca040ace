"""A small app served by real gunicorn in the multiprocess tests."""

from __future__ import annotations

import os

from flask import Flask

from flask_observe import Observe

app = Flask("mp-app")
app.config["OBSERVE_LOG_STDOUT"] = False
observe = Observe(app)


@app.get("/work")
def work() -> dict[str, int]:
    observe.metrics.counter("work_done_total", "Units of work done.").inc()
    return {"pid": os.getpid()}
