"""The scraper's data: tracked accounts, their snapshots over time, and scrape runs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

PLATFORMS = ("twitter", "instagram", "tiktok", "youtube")


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """Stored datetimes are naive UTC; the API writes them as ISO 8601 with a ``Z``."""
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


class Account(db.Model):  # type: ignore[name-defined,misc]
    """An account on a platform that the scraper tracks."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("platform", "handle"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    handle: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str | None] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_scraped_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(512))

    snapshots: Mapped[list[Snapshot]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="Snapshot.taken_at"
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "platform": self.platform,
            "handle": self.handle,
            "display_name": self.display_name,
            "active": self.active,
            "created_at": iso(self.created_at),
            "last_scraped_at": iso(self.last_scraped_at),
            "last_error": self.last_error,
        }


class Snapshot(db.Model):  # type: ignore[name-defined,misc]
    """What an account looked like at one scrape."""

    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_account_taken", "account_id", "taken_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("scrape_runs.id", ondelete="SET NULL"))
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    followers: Mapped[int]
    following: Mapped[int]
    posts: Mapped[int]
    engagement_rate: Mapped[float]

    account: Mapped[Account] = relationship(back_populates="snapshots")

    def to_dict(self) -> dict[str, Any]:
        return {
            "taken_at": iso(self.taken_at),
            "followers": self.followers,
            "following": self.following,
            "posts": self.posts,
            "engagement_rate": self.engagement_rate,
            "run_id": self.run_id,
        }


class ScrapeRun(db.Model):  # type: ignore[name-defined,misc]
    """One scrape of one or more accounts: who asked, how it went, how long it took."""

    __tablename__ = "scrape_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: ``queued`` → ``running`` → ``succeeded`` | ``partial`` | ``failed``
    status: Mapped[str] = mapped_column(String(16), default="queued")
    trigger: Mapped[str] = mapped_column(String(16))  # api, cli, task
    mode: Mapped[str] = mapped_column(String(16))  # inline or celery
    correlation_id: Mapped[str | None] = mapped_column(String(128), index=True)
    task_id: Mapped[str | None] = mapped_column(String(64))
    platform: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[float | None]
    accounts_total: Mapped[int] = mapped_column(default=0)
    accounts_ok: Mapped[int] = mapped_column(default=0)
    accounts_failed: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(String(1024))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "trigger": self.trigger,
            "mode": self.mode,
            "correlation_id": self.correlation_id,
            "task_id": self.task_id,
            "platform": self.platform,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_ms": self.duration_ms,
            "accounts_total": self.accounts_total,
            "accounts_ok": self.accounts_ok,
            "accounts_failed": self.accounts_failed,
            "error": self.error,
        }
