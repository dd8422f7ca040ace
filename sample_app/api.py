"""The scraper's JSON API and its one HTML page."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from flask_observe import Observe, get_correlation_id

from .models import PLATFORMS, Account, ScrapeRun, Snapshot, db
from .tasks import trigger_scrape

logger = logging.getLogger("sample_app.api")

api = Blueprint("api", __name__, url_prefix="/api")
web = Blueprint("web", __name__)

#: Ids are SQLite/PostgreSQL 64-bit integers: a larger one in a URL is a 404, not a 500.
ID = "int(min=1, max=9223372036854775807)"
#: Handles become part of the platform API's URL path: letters, digits, ``_`` and ``.`` only.
HANDLE = re.compile(r"[A-Za-z0-9_.]{1,64}")
RUN_STATUSES = ("queued", "running", "succeeded", "partial", "failed")


def _body() -> dict[str, Any]:
    if not request.content_length and not request.data:
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, description="expected a JSON object")
    return body


def _platform(value: Any, required: bool = False) -> str | None:
    if value in (None, "") and not required:
        return None
    if value not in PLATFORMS:
        abort(400, description=f"platform must be one of {', '.join(PLATFORMS)}")
    return str(value)


def _handle(value: Any, required: bool = False) -> str | None:
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or not HANDLE.fullmatch(value):
        abort(400, description="handle: 1-64 letters, digits, '_' or '.'")
    return value


def _limit(default: int = 50, maximum: int = 500) -> int:
    try:
        value = int(request.args.get("limit", default))
    except ValueError:
        abort(400, description="limit must be an integer")
    return max(1, min(value, maximum))


@api.get("/accounts")
def list_accounts() -> Any:
    query = select(Account).order_by(Account.platform, Account.handle)
    platform = _platform(request.args.get("platform"))
    if platform:
        query = query.where(Account.platform == platform)
    accounts = db.session.scalars(query).all()
    return jsonify(accounts=[a.to_dict() for a in accounts])


@api.post("/accounts")
def add_account() -> Any:
    body = _body()
    account = Account(
        platform=_platform(body.get("platform"), required=True),
        handle=_handle(body.get("handle"), required=True),
    )
    db.session.add(account)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        abort(409, description="this account is already tracked")
    logger.info(
        "account added",
        extra={"platform": account.platform, "handle": account.handle, "account_id": account.id},
    )
    return jsonify(account.to_dict()), 201


@api.get(f"/accounts/<{ID}:account_id>")
def show_account(account_id: int) -> Any:
    account = db.session.get(Account, account_id)
    if account is None:
        abort(404, description=f"no account {account_id}")
    history = db.session.scalars(
        select(Snapshot)
        .where(Snapshot.account_id == account_id)
        .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
        .limit(_limit(100, 1000))
    ).all()
    return jsonify(account=account.to_dict(), history=[s.to_dict() for s in history])


@api.post("/scrapes")
def start_scrape() -> Any:
    body = _body()
    platform = _platform(body.get("platform"))
    handle = _handle(body.get("handle"))
    run = trigger_scrape("api", platform, handle)
    status = 202 if run.mode == "celery" else 201
    response = jsonify(run.to_dict())
    response.status_code = status
    response.headers["Location"] = url_for("api.show_run", run_id=run.id)
    return response


@api.get("/runs")
def list_runs() -> Any:
    query = select(ScrapeRun).order_by(ScrapeRun.id.desc()).limit(_limit())
    status = request.args.get("status")
    if status:
        if status not in RUN_STATUSES:
            abort(400, description=f"status must be one of {', '.join(RUN_STATUSES)}")
        query = query.where(ScrapeRun.status == status)
    return jsonify(runs=[r.to_dict() for r in db.session.scalars(query)])


@api.get(f"/runs/<{ID}:run_id>")
def show_run(run_id: int) -> Any:
    run = db.session.get(ScrapeRun, run_id)
    if run is None:
        abort(404, description=f"no scrape run {run_id}")
    return jsonify(run.to_dict())


@api.get("/debug/fail")
@Observe.protected
def debug_fail() -> Any:
    """Fails on purpose, to see an error travel to Sentry (``OBSERVE_SENTRY_DSN`` or
    ``SENTRY_DSN``) with the same correlation and trace IDs as the log lines and the trace.

    Behind the operator's credentials (the same as the log viewer's): a public route that
    answers 500 on demand would let anyone spend the availability error budget."""
    logger.warning("about to fail on purpose (GET /api/debug/fail)")
    raise RuntimeError("deliberate failure from GET /api/debug/fail")


@api.errorhandler(HTTPException)
def api_error(error: HTTPException) -> Any:
    response = jsonify(error=error.description, correlation_id=get_correlation_id())
    response.status_code = error.code or 500
    return response


@web.get("/")
def index() -> str:
    accounts = db.session.scalars(select(Account).order_by(Account.platform, Account.handle)).all()
    runs = db.session.scalars(select(ScrapeRun).order_by(ScrapeRun.id.desc()).limit(10)).all()
    latest = dict(
        db.session.execute(
            select(Snapshot.account_id, func.max(Snapshot.followers)).group_by(Snapshot.account_id)
        ).all()
    )
    return render_template(
        "index.html",
        accounts=accounts,
        runs=runs,
        followers=latest,
        correlation_id=get_correlation_id(),
        logviewer=Observe.urls().get("logviewer"),
    )


@web.post("/scrape")
def scrape_from_page() -> Any:
    trigger_scrape("web", _platform(request.form.get("platform")))
    return redirect(url_for("web.index"), code=303)
