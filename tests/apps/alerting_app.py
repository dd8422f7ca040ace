"""A small app served by real gunicorn in the alerting fault tests: one alert rule, failing
while the file ``ALERT_TEST_FLAG`` exists, whose text names the worker that saw it."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from flask_observe import Observe
from flask_observe.alerting import CheckRule, RuleEngine
from flask_observe.state import current_state

FLAG = Path(os.environ["ALERT_TEST_FLAG"])

app = Flask("alerting-app")
app.config.from_prefixed_env()  # FLASK_OBSERVE_* from the test
observe = Observe(app)
engine = Observe.handle(RuleEngine, app)
engine.rules.clear()
engine.add(
    CheckRule(
        "StoreOutageTest",
        lambda: f"incident seen by pid {os.getpid()}" if FLAG.exists() else None,
        severity="critical",
    )
)
# Each worker evaluates from now on, not from its first request (most get none in the test).
ticker = current_state(app).ticker
assert ticker is not None
ticker.ensure_started()
(FLAG.parent / f"worker-{os.getpid()}").touch()


@app.get("/alive")
def alive() -> dict[str, int]:
    return {"pid": os.getpid()}
