"""A Flask + Celery app for the tracing/error tests of Celery; the worker subprocess imports it.

Configured from the environment so the test process and the worker share everything:
``OBSERVE_TEST_BROKER`` (Redis URL), ``OBSERVE_TEST_QUEUE``, and the ``FLASK_OBSERVE_*``
variables (tracing endpoint, Sentry DSN, log directory).
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from flask import Flask

from flask_observe import Observe, get_correlation_id

app = Flask("celery-errors-app")
app.config["OBSERVE_LOG_STDOUT"] = False
app.config.from_prefixed_env()
observe = Observe(app)

celery = Celery(
    "celery-errors-app", broker=os.environ.get("OBSERVE_TEST_BROKER", "redis://127.0.0.1:6379/11")
)
celery.conf.task_default_queue = os.environ.get("OBSERVE_TEST_QUEUE", "flask-observe-errors")
celery.conf.broker_connection_retry_on_startup = True
celery.conf.worker_hijack_root_logger = False

logger = logging.getLogger("tests.error_tasks")


@celery.task(name="tests.charge_card")
def charge_card(order_id: int) -> None:
    """Fails, as a task sometimes does: the error must reach Sentry with the request's IDs."""
    logger.warning("charging", extra={"order_id": order_id})
    raise ValueError(f"card declined for order {order_id}")


@app.post("/orders/<int:order_id>/charge")
def charge(order_id: int) -> dict[str, str | None]:
    result = charge_card.delay(order_id)
    return {"task_id": result.id, "correlation_id": get_correlation_id()}
