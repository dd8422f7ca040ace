"""A Flask + Celery app for the Celery tests; the worker subprocess imports this module.

Configured from the environment so the test process and the worker share the broker:
``OBSERVE_TEST_BROKER`` (Redis URL) and ``OBSERVE_TEST_LOG_DIR``.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from flask import Flask

from flask_observe import Observe, get_correlation_id

app = Flask("celery-test-app")
app.config["OBSERVE_LOG_DIR"] = os.environ.get("OBSERVE_TEST_LOG_DIR", "logs")
app.config["OBSERVE_LOG_STDOUT"] = False
observe = Observe(app)

celery = Celery(
    "celery-test-app", broker=os.environ.get("OBSERVE_TEST_BROKER", "redis://127.0.0.1:6379/9")
)
celery.conf.task_default_queue = os.environ.get("OBSERVE_TEST_QUEUE", "flask-observe-test")
celery.conf.broker_connection_retry_on_startup = True

logger = logging.getLogger("tests.tasks")


@celery.task(name="tests.log_account")
def log_account(account: str) -> str | None:
    """Writes one log line; the worker's JSON logs should carry the request's ID."""
    logger.info("task ran", extra={"account": account})
    return get_correlation_id()


@app.post("/enqueue/<account>")
def enqueue(account: str) -> dict[str, str | None]:
    result = log_account.delay(account)
    return {"task_id": result.id, "correlation_id": get_correlation_id()}
