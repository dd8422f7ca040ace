"""A small app run by real ``flask run --debug``, gunicorn and a pseudo-terminal in
tests/test_logging_console.py: settings from ``FLASK_OBSERVE_*`` variables."""

from __future__ import annotations

import os
import time

from flask import Flask, request

from flask_observe import Observe

app = Flask("dev-app")
app.config.from_prefixed_env()
observe = Observe(app)


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, int]:
    time.sleep(float(request.args.get("sleep", 0)))  # hold the worker: others must answer
    app.logger.info("item looked up", extra={"item_id": item_id})
    return {"item": item_id, "pid": os.getpid()}


@app.get("/boom/<int:n>")
def boom(n: int) -> str:
    raise RuntimeError(f"kaboom in the view ({n})")
