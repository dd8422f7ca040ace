"""A Flask + Celery app with the console on, for the overview's Celery task rollups; the
worker subprocess imports this module. ``OBSERVE_TEST_BROKER``, ``OBSERVE_TEST_LOG_DIR`` and
``OBSERVE_TEST_QUEUE`` come from the environment, shared with the test process."""

from __future__ import annotations

import os

from celery import Celery
from flask import Flask

from flask_observe import Observe

app = Flask("console-celery-app")
app.config.update(
    OBSERVE_LOG_DIR=os.environ.get("OBSERVE_TEST_LOG_DIR", "logs"),
    OBSERVE_LOG_STDOUT=False,
    OBSERVE_LOGVIEWER_ENABLED=True,
    OBSERVE_AUTH_TOKEN="console-celery-Hq7mV2xPz9LtR4wK",
)
observe = Observe(app)

celery = Celery(
    "console-celery-app", broker=os.environ.get("OBSERVE_TEST_BROKER", "redis://127.0.0.1:6379/9")
)
celery.conf.task_default_queue = os.environ.get("OBSERVE_TEST_QUEUE", "flask-observe-console")
celery.conf.broker_connection_retry_on_startup = True


@celery.task(name="tests.scrape_account")
def scrape_account(account: str) -> str:
    if account.startswith("ghost"):
        raise LookupError(f"no account {account}")
    return account
