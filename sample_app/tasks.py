"""Scrapes as Celery tasks when a broker is configured, inline otherwise.

Set ``CELERY_BROKER_URL`` (``FLASK_CELERY_BROKER_URL`` in the environment), e.g.
``redis://127.0.0.1:6379/0``, and run a worker: ``celery -A sample_app.worker worker``.
A scrape triggered during a web request then runs in the worker, and flask_observe carries
the request's correlation ID in the task headers, so the worker's lines for it carry the same
ID as the request's.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task, shared_task
from flask import Flask, current_app

from .models import ScrapeRun, db
from .scraper import create_run, execute_run, run_by_id, select_accounts

TASK_NAME = "sample_app.scrape_run"


def celery_init_app(app: Flask) -> Celery | None:
    """A Celery app whose tasks run inside ``app``'s context (Flask's documented pattern)."""
    broker = app.config.get("CELERY_BROKER_URL")
    if not broker:
        return None

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.import_name, task_cls=FlaskTask, include=["sample_app.tasks"])
    celery.conf.update(
        broker_url=broker,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        task_default_queue=app.config.get("CELERY_QUEUE", "scraper"),
        worker_hijack_root_logger=False,
    )
    app.extensions["celery"] = celery
    return celery


@shared_task(name=TASK_NAME)
def scrape_run_task(run_id: int, platform: str | None, handle: str | None) -> str:
    """Execute a queued scrape run in the worker."""
    run = run_by_id(run_id)
    execute_run(run, select_accounts(platform, handle))
    return run.status


def trigger_scrape(
    trigger: str, platform: str | None = None, handle: str | None = None
) -> ScrapeRun:
    """Start a scrape: queued to Celery when a broker is configured, run inline otherwise."""
    accounts = select_accounts(platform, handle)
    celery: Celery | None = current_app.extensions.get("celery")
    run = create_run(trigger, "celery" if celery else "inline", accounts, platform)
    if celery is None:
        return execute_run(run, accounts)
    # send_task on this app's own Celery instance: no reliance on a process-wide default app.
    result = celery.send_task(TASK_NAME, args=(run.id, platform, handle))
    run.task_id = result.id
    db.session.commit()
    return run
