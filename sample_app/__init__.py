"""A social-media scraper: the host app flask_observe is built for, with every feature on.

``create_app()`` is a normal Flask app factory: SQLAlchemy 2.x models, a scraper that calls
the (demo) platform API with ``requests``, a JSON API, a CLI command, and Celery tasks when a
broker is configured. One ``observe.init_app(app)`` call wires the observability in.

Configuration (``app.config``; each key can come from the environment as ``FLASK_<KEY>``):

- ``SQLALCHEMY_DATABASE_URI``: default SQLite in the instance folder;
- ``SCRAPER_PLATFORM_URL``: the platform API (default ``http://127.0.0.1:5001``, the demo
  platform that ``python -m sample_app`` serves next to the app);
- ``SCRAPER_PLATFORM_HEALTH_URL``: what the readiness check of the platform calls (default
  ``<SCRAPER_PLATFORM_URL>/health/ready``);
- ``CELERY_BROKER_URL``: run scrapes as Celery tasks (e.g. ``redis://127.0.0.1:6379/0``);
- ``SCRAPER_SEED_DEMO``: add a few demo accounts to an empty database (default on);
- ``SCRAPER_STALE_HOURS``: alert when no account was scraped successfully for this long;
- ``SCRAPER_BREAKER_RESET_SECONDS``: how long the platform's circuit breaker stays open before
  it lets a trial call through (default 30);
- every ``OBSERVE_*`` key of flask_observe (docs/configuration.md). The log viewer is on when
  there is a way to sign in to it: ``OBSERVE_AUTH_TOKEN`` (``FLASK_OBSERVE_AUTH_TOKEN``) or
  ``OBSERVE_AUTH_CALLBACK``. ``python -m sample_app`` makes a random token when none is set
  and prints it once to standard error, never to the logs; other processes (``flask``
  commands, a Celery worker, gunicorn) make none, and without a token have the viewer off.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from flask_observe import Observe

from .models import Account, db

logger = logging.getLogger("sample_app")

observe = Observe()

DEMO_ACCOUNTS = (
    ("twitter", "nasa"),
    ("twitter", "github"),
    ("instagram", "natgeo"),
    ("tiktok", "khaby_lame"),
    ("youtube", "veritasium"),
    # Does not exist on the platform: every scrape of it fails with a 404, so the logs always
    # have a failed scrape to look for.
    ("instagram", "ghost_account"),
)

DEFAULTS: dict[str, Any] = {
    "SCRAPER_PLATFORM_URL": "http://127.0.0.1:5001",
    "SCRAPER_SEED_DEMO": True,
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "OBSERVE_SERVICE_NAME": "scraper",
    "OBSERVE_SERVICE_VERSION": "1.0.0",
    "OBSERVE_LOG_DIR": "logs",
    # Alert when no account was scraped successfully for this long (sample_app/monitoring.py).
    "SCRAPER_STALE_HOURS": 6.0,
    "SCRAPER_BREAKER_RESET_SECONDS": 30.0,
    # Readiness says "not yet" until create_app() has finished (seeding included).
    "OBSERVE_HEALTH_WAIT_FOR_STARTUP": True,
    "OBSERVE_LOGVIEWER_ENABLED": True,
    # Traces for the console (no collector needed); exported too when an OTLP endpoint is set.
    "OBSERVE_TRACING_ENABLED": True,
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The scraper app.

    :param config: settings applied last (tests use it), over defaults and the environment.
    """
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(DEFAULTS)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{Path(app.instance_path) / 'scraper.db'}"
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    platform_host = urlsplit(app.config["SCRAPER_PLATFORM_URL"]).netloc
    if "OBSERVE_PROPAGATE_HOSTS" not in app.config:
        # Our own platform API may see our request IDs; any other site it is told to call does
        # not (the allowlist is the whole point for a scraper).
        app.config["OBSERVE_PROPAGATE_HOSTS"] = [platform_host]
    # Outbound metrics name the platform's host; any other site called is `other`.
    app.config.setdefault("OBSERVE_METRICS_OUTBOUND_HOSTS", [platform_host])
    broker = app.config.get("CELERY_BROKER_URL")
    if broker:
        # The scrape queue is named in the Celery metrics; with Redis its length is read too.
        app.config.setdefault(
            "OBSERVE_METRICS_CELERY_QUEUES", [app.config.get("CELERY_QUEUE", "scraper")]
        )
        if str(broker).startswith(("redis://", "rediss://")):
            app.config.setdefault("OBSERVE_METRICS_CELERY_BROKER_URL", broker)

    if not _can_sign_in(app.config):
        # The viewer is never public, and a token made up here would differ in every process
        # (each gunicorn worker, the Celery worker, each `flask` command): off instead.
        app.config["OBSERVE_LOGVIEWER_ENABLED"] = False
    observe.init_app(app)
    db.init_app(app)

    from .scraper import EXTENSION_KEY, PlatformClient

    # Every platform call goes through a circuit breaker; its state shows in /health.
    breaker = observe.circuit_breaker(
        "platform-api",
        app=app,
        fail_max=5,
        reset_timeout=float(app.config["SCRAPER_BREAKER_RESET_SECONDS"]),
    )
    app.extensions[EXTENSION_KEY] = PlatformClient(
        app.config["SCRAPER_PLATFORM_URL"], breaker=breaker
    )
    register_health_checks(app)

    from .tasks import celery_init_app

    celery_init_app(app)

    from .api import api, web
    from .security import install as install_security

    app.register_blueprint(api)
    app.register_blueprint(web)
    install_security(app)

    from .cli import register

    register(app)

    from .monitoring import install

    install(app)

    init_database(app)
    observe.startup_complete(app)
    return app


def init_database(app: Flask) -> None:
    """Make the schema and add the demo accounts, safely however many workers start at once.

    gunicorn starts its workers together, and each runs ``create_app``: two seeding a new
    database at the same moment hit a unique-constraint error and the worker failed to boot.
    On one host the work is serialized by a lock file in the instance folder; on several hosts
    sharing a database, the second writer's unique violation means the first one seeded.
    """
    with _host_lock(Path(app.instance_path) / "init.lock"), app.app_context():
        db.create_all()
        if app.config["SCRAPER_SEED_DEMO"]:
            try:
                seed_demo_accounts()
            except IntegrityError:
                db.session.rollback()
                logger.info("demo accounts were added by another process")
        db.session.remove()


@contextlib.contextmanager
def _host_lock(path: Path) -> Iterator[None]:
    """An exclusive lock shared by every process of this host (``flock``; released when the
    file is closed, so a crashed holder never leaves it locked)."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def register_health_checks(app: Flask) -> None:
    """The scraper's dependencies, as /health/ready and /health show them.

    The database (a probe connection of its own; the app's pool use is reported beside it) and
    the platform API are critical: without either the scraper cannot work. Disk and memory
    only warn.
    """
    from flask_observe.health import DatabaseCheck, DiskCheck, HttpCheck, MemoryCheck

    with app.app_context():
        engine = db.engine
    platform_health = app.config.get("SCRAPER_PLATFORM_HEALTH_URL") or (
        app.config["SCRAPER_PLATFORM_URL"].rstrip("/") + "/health/ready"
    )
    observe.add_health_check(DatabaseCheck("db", engine=engine, timeout=2.0), app=app)
    observe.add_health_check(HttpCheck("platform-api", url=platform_health, timeout=2.0), app=app)
    observe.add_health_check(DiskCheck("disk", path=app.instance_path), app=app)
    observe.add_health_check(MemoryCheck("memory"), app=app)


def _can_sign_in(config: Mapping[str, Any]) -> bool:
    """Whether the shared auth (token or callback) is configured."""
    return bool(config.get("OBSERVE_AUTH_TOKEN") or config.get("OBSERVE_AUTH_CALLBACK"))


def seed_demo_accounts() -> int:
    """Add the demo accounts to an empty database; returns how many were added."""
    if db.session.scalars(select(Account.id).limit(1)).first() is not None:
        return 0
    for platform, handle in DEMO_ACCOUNTS:
        db.session.add(Account(platform=platform, handle=handle))
    db.session.commit()
    logger.info("demo accounts added", extra={"count": len(DEMO_ACCOUNTS)})
    return len(DEMO_ACCOUNTS)
