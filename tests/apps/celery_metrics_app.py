"""A Flask + Celery app for the Celery metrics tests; the worker subprocess imports it.

Configured from the environment the test gives the worker: ``OBSERVE_TEST_BROKER`` (Redis
URL), ``OBSERVE_TEST_QUEUE``, ``OBSERVE_TEST_METRICS_PORT`` (the worker's metrics server).
"""

from __future__ import annotations

import os
import time

from celery import Celery
from flask import Flask

from flask_observe import Observe

BROKER = os.environ.get("OBSERVE_TEST_BROKER", "redis://127.0.0.1:6379/9")
QUEUE = os.environ.get("OBSERVE_TEST_QUEUE", "flask-observe-metrics-test")

app = Flask("celery-metrics-app")
app.config.update(
    OBSERVE_LOG_STDOUT=False,
    OBSERVE_METRICS_CELERY=True,
    OBSERVE_METRICS_CELERY_QUEUES=[QUEUE],
    OBSERVE_METRICS_CELERY_BROKER_URL=BROKER,
    OBSERVE_METRICS_CELERY_PORT=int(os.environ.get("OBSERVE_TEST_METRICS_PORT", "0")),
    OBSERVE_SAMPLE_INTERVAL_SECONDS=0.5,
)
observe = Observe(app)

celery = Celery("celery-metrics-app", broker=BROKER)
celery.conf.task_default_queue = QUEUE
celery.conf.broker_connection_retry_on_startup = True


@celery.task(name="tests.scrape")
def scrape(seconds: float) -> None:
    time.sleep(seconds)


@celery.task(name="tests.broken")
def broken() -> None:
    raise RuntimeError("the API answered nonsense")


@celery.task(name="tests.flaky", bind=True, max_retries=3)
def flaky(self: object, attempts: int) -> None:
    request = self.request  # type: ignore[attr-defined]
    if request.retries < attempts:
        raise self.retry(countdown=0)  # type: ignore[attr-defined]


@app.post("/enqueue")
def enqueue() -> dict[str, str]:
    return {"task_id": scrape.delay(0.05).id}
