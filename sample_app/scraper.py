"""The scraper: fetches account data from the platform API over HTTP and stores snapshots.

A scrape run covers one or more accounts. Each account is fetched with ``requests`` (one
shared session, connect/read timeouts, no retries here: a failed account is recorded and the
run goes on), and each outcome is logged with the account's platform and handle, so one
run's lines can be found by its correlation ID in the logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pybreaker
import requests
from flask import current_app
from sqlalchemy import select

from flask_observe import capture_exception, get_correlation_id, timed

from .models import Account, ScrapeRun, Snapshot, db, utcnow
from .monitoring import record_account

logger = logging.getLogger("sample_app.scraper")

EXTENSION_KEY = "scraper"


class PlatformError(Exception):
    """The platform API did not give us the account."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class PlatformClient:
    """A thin client of the platform API (one ``requests.Session`` per app).

    With a ``breaker`` (a ``pybreaker.CircuitBreaker``, from ``observe.circuit_breaker``), the
    HTTP round trips go through it: connection errors, 5xx and 429 count as failures; after
    ``fail_max`` in a row the client stops calling the platform until ``reset_timeout`` passes.
    An unknown account (404) is an answer, not a failure.
    """

    base_url: str
    timeout: tuple[float, float] = (2.0, 5.0)
    breaker: pybreaker.CircuitBreaker | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "sample-scraper/1.0"

    def _get(self, url: str) -> requests.Response:
        try:
            response = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PlatformError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise PlatformError(
                f"platform answered {response.status_code} for {url.rsplit('/v1/', 1)[-1]}",
                response.status_code,
            )
        return response

    def fetch_account(self, platform: str, handle: str) -> dict[str, Any]:
        url = f"{self.base_url}/v1/{platform}/users/{handle}"
        if self.breaker is None:
            response = self._get(url)
        else:
            try:
                response = self.breaker.call(self._get, url)
            except pybreaker.CircuitBreakerError as exc:
                raise PlatformError(f"platform API circuit open: {exc}") from exc
        if response.status_code != 200:
            raise PlatformError(
                f"platform answered {response.status_code} for {platform}/{handle}",
                response.status_code,
            )
        data = response.json()
        if not isinstance(data, dict) or "followers" not in data:
            raise PlatformError(f"unexpected payload for {platform}/{handle}")
        return data


def client() -> PlatformClient:
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def select_accounts(platform: str | None = None, handle: str | None = None) -> list[Account]:
    query = select(Account).where(Account.active.is_(True)).order_by(Account.id)
    if platform:
        query = query.where(Account.platform == platform)
    if handle:
        query = query.where(Account.handle == handle)
    return list(db.session.scalars(query))


def create_run(
    trigger: str, mode: str, accounts: Iterable[Account], platform: str | None = None
) -> ScrapeRun:
    run = ScrapeRun(
        trigger=trigger,
        mode=mode,
        platform=platform,
        correlation_id=get_correlation_id(),
        accounts_total=len(list(accounts)),
    )
    db.session.add(run)
    db.session.commit()
    return run


def scrape_account(account: Account, run: ScrapeRun) -> Snapshot:
    """Fetch one account and store a snapshot; raises :class:`PlatformError` on failure.

    ``timed`` records ``scraper_scrape_duration_seconds{platform, outcome}``,
    ``scraper_scrape_total`` and the failure streak, and logs a failure."""
    started = time.perf_counter()
    with timed("scraper_scrape", labels={"platform": account.platform}):
        try:
            data = client().fetch_account(account.platform, account.handle)
        except PlatformError:
            record_account(account.platform, account.handle, False, None)
            raise
    record_account(account.platform, account.handle, True, int(data["followers"]))
    snapshot = Snapshot(
        account=account,
        run_id=run.id,
        followers=int(data["followers"]),
        following=int(data.get("following", 0)),
        posts=int(data.get("posts", 0)),
        engagement_rate=float(data.get("engagement_rate", 0.0)),
    )
    account.display_name = data.get("display_name") or account.display_name
    account.last_scraped_at = utcnow()
    account.last_error = None
    db.session.add(snapshot)
    logger.info(
        "account scraped",
        extra={
            "run_id": run.id,
            "platform": account.platform,
            "handle": account.handle,
            "followers": snapshot.followers,
            "fetch_ms": round((time.perf_counter() - started) * 1000, 1),
        },
    )
    return snapshot


def execute_run(run: ScrapeRun, accounts: list[Account]) -> ScrapeRun:
    """Scrape ``accounts`` for ``run``, recording each outcome and the run's totals."""
    started = time.perf_counter()
    run.status = "running"
    run.started_at = utcnow()
    run.accounts_total = len(accounts)
    db.session.commit()
    logger.info("scrape run started", extra={"run_id": run.id, "accounts": len(accounts)})
    for account in accounts:
        try:
            scrape_account(account, run)
            run.accounts_ok += 1
        except PlatformError as exc:
            run.accounts_failed += 1
            account.last_error = str(exc)[:512]
            logger.warning(
                "account scrape failed",
                extra={
                    "run_id": run.id,
                    "platform": account.platform,
                    "handle": account.handle,
                    "error": str(exc),
                    "upstream_status": exc.status,
                },
            )
            # Handled, so nothing else would tell the error tracker: one event per failed
            # account, with the run's correlation and trace IDs (docs/errors.md).
            capture_exception(exc, platform=account.platform, handle=account.handle)
        db.session.commit()
    run.finished_at = utcnow()
    run.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    if run.accounts_failed == 0:
        run.status = "succeeded"
    elif run.accounts_ok == 0:
        run.status = "failed"
        run.error = "every account failed"
    else:
        run.status = "partial"
    db.session.commit()
    level = logging.INFO if run.status == "succeeded" else logging.WARNING
    logger.log(
        level,
        "scrape run finished",
        extra={
            "run_id": run.id,
            "status": run.status,
            "accounts_ok": run.accounts_ok,
            "accounts_failed": run.accounts_failed,
            "duration_ms": run.duration_ms,
        },
    )
    return run


def run_by_id(run_id: int) -> ScrapeRun:
    run = db.session.get(ScrapeRun, run_id)
    if run is None:
        raise LookupError(f"no scrape run {run_id}")
    return run
