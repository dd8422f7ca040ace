"""The scraper's business metrics and its own alert rule, through flask_observe's API.

Metrics (``/metrics``):

- ``scraper_accounts_scraped_total{platform, status}`` — accounts fetched, ``ok`` or ``failed``;
- ``scraper_scrape_duration_seconds{platform, outcome}`` and ``scraper_scrape_total`` — time to
  fetch one account, from ``flask_observe.timed("scraper_scrape")`` in ``scraper.py`` (with
  its failure streak, ``operation_consecutive_failures{operation="scraper_scrape"}``);
- ``scraper_last_success_timestamp_seconds`` — when an account was last scraped successfully
  (data freshness: ``time() - scraper_last_success_timestamp_seconds`` in PromQL);
- ``scraper_followers{platform, handle}`` — latest followers of each tracked account.

The Celery queue's length and the tasks' durations, waits and retries are flask_observe's own
``celery_*`` metrics (``OBSERVE_METRICS_CELERY_*``, set in ``create_app`` from the broker).

Rule: **no successful scrape for ``SCRAPER_STALE_HOURS`` hours** (default 6): fires when no
account was scraped successfully for that long (read from the database, so every worker and
instance agrees), resolves once it has passed for ``OBSERVE_ALERT_RESOLVE_AFTER_SECONDS``.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import func, select

from flask_observe import Observe
from flask_observe.alerting import CheckRule
from flask_observe.metrics import Metrics

from .models import Account, db, utcnow

__all__ = ["install", "record_account"]


def _metrics() -> Metrics | None:
    return Observe.find(Metrics)


def record_account(platform: str, handle: str, ok: bool, followers: int | None) -> None:
    """Count one account fetch (called by the scraper for every account)."""
    metrics = _metrics()
    if metrics is None:
        return
    status = "ok" if ok else "failed"
    metrics.counter(
        "scraper_accounts_scraped_total",
        "Accounts scraped, by platform and outcome.",
        ["platform", "status"],
    ).labels(platform, status).inc()
    if ok:
        metrics.gauge(
            "scraper_last_success_timestamp_seconds",
            "Unix time of the last successful account scrape.",
            multiprocess_mode="max",
        ).set(time.time())
        if followers is not None:
            metrics.gauge(
                "scraper_followers",
                "Followers of each tracked account at its last scrape.",
                ["platform", "handle"],
                multiprocess_mode="mostrecent",
            ).labels(platform, handle).set(followers)


def last_success(app: Flask) -> datetime | None:
    with app.app_context():
        value: datetime | None = db.session.scalar(select(func.max(Account.last_scraped_at)))
        db.session.remove()
        return value


def install(app: Flask) -> None:
    """Define the metrics up front (so they show at 0) and register the staleness rule."""
    metrics = Observe.find(Metrics, app)
    if metrics is not None:
        with app.app_context():
            for platform in ("twitter", "instagram", "tiktok", "youtube"):
                for status in ("ok", "failed"):
                    metrics.counter(
                        "scraper_accounts_scraped_total",
                        "Accounts scraped, by platform and outcome.",
                        ["platform", "status"],
                    ).labels(platform, status)
    stale_after = timedelta(hours=float(app.config["SCRAPER_STALE_HOURS"]))
    started = utcnow()

    def no_recent_scrape() -> str | None:
        last = last_success(app)
        reference = last or started
        if utcnow() - reference <= stale_after:
            return None
        since = "since start-up" if last is None else f"since {last.isoformat(timespec='seconds')}Z"
        return f"no account scraped successfully {since} (limit {stale_after})"

    from . import observe

    rule = CheckRule("NoSuccessfulScrape", no_recent_scrape, severity="critical", consecutive=1)
    observe.add_alert_rule(rule, app=app)
