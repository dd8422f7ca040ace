"""A small app served by real gunicorn in the multiprocess tests."""

from __future__ import annotations

import os
import time

from flask import Flask, request

from flask_observe import Observe

app = Flask("mp-app")
app.config["OBSERVE_LOG_STDOUT"] = False
observe = Observe(app)


@app.get("/work")
def work() -> dict[str, int]:
    time.sleep(float(request.args.get("sleep", 0)))
    observe.metrics.counter("work_done_total", "Units of work done.").inc()
    return {"pid": os.getpid()}
