"""The Celery worker's entry point: ``celery -A sample_app.worker worker --loglevel INFO``."""

from __future__ import annotations

from . import create_app

flask_app = create_app()
celery = flask_app.extensions.get("celery")
if celery is None:
    raise RuntimeError(
        "CELERY_BROKER_URL is not set: export FLASK_CELERY_BROKER_URL=redis://127.0.0.1:6379/0"
    )
