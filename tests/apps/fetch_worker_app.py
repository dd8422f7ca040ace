"""A Flask + Celery app whose task calls other hosts; the worker subprocess imports it.

Configured from the environment so the test process and the worker share everything:
``OBSERVE_TEST_BROKER`` (Redis URL), ``OBSERVE_TEST_QUEUE``, and the ``FLASK_OBSERVE_*``
variables (tracing endpoint, allowlist, log directory).
"""

from __future__ import annotations

import os

import requests
from celery import Celery
from flask import Flask, request
from opentelemetry import trace

from flask_observe import Observe

app = Flask("celery-fetch-app")
app.config["OBSERVE_LOG_STDOUT"] = False
app.config.from_prefixed_env()
observe = Observe(app)

celery = Celery(
    "celery-fetch-app", broker=os.environ.get("OBSERVE_TEST_BROKER", "redis://127.0.0.1:6379/12")
)
celery.conf.task_default_queue = os.environ.get("OBSERVE_TEST_QUEUE", "flask-observe-fetch")
celery.conf.broker_connection_retry_on_startup = True
celery.conf.worker_hijack_root_logger = False


@celery.task(name="tests.fetch_pages")
def fetch_pages(urls: list[str]) -> None:
    """Calls each URL from the worker: no app context, the task's span is current."""
    for url in urls:
        requests.get(url, timeout=5)


@app.post("/fetch")
def fetch() -> dict[str, str]:
    fetch_pages.delay(request.get_json()["urls"])
    return {"trace_id": f"{trace.get_current_span().get_span_context().trace_id:032x}"}
