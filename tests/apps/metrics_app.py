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


@app.get("/burn")
def burn() -> dict[str, float]:
    """Spend ``seconds`` of CPU time (not sleep) in this worker."""
    wanted = float(request.args.get("seconds", 0.05))
    start = time.process_time()
    while time.process_time() - start < wanted:
        pass
    return {"cpu": time.process_time() - start}
