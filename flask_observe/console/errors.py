"""The console's Errors pages: the exceptions of the host grouped by fingerprint (type and
frames), with counts, first and last seen, one scrubbed stack trace, links to the trace and
the log lines of the latest occurrences, and to Sentry when a DSN is set."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from flask import abort, request
from flask.typing import ResponseReturnValue

from .pages import Console, Page

if TYPE_CHECKING:
    from ..feature import Wiring

__all__ = ["pages", "sentry_issues_url"]

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def iso(seconds: float) -> str:
    when = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def sentry_issues_url(dsn: str | None) -> str | None:
    """The issues page of the DSN's project (``https://sentry.io/issues/?project=42`` for
    sentry.io, the DSN's own host when self-hosted); ``None`` without a usable DSN. The key
    in the DSN is never part of it."""
    if not dsn:
        return None
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        project = parts.path.rstrip("/").rsplit("/", 1)[-1]
        port = parts.port
    except ValueError:
        return None
    if not host or not project.isdigit() or parts.scheme not in ("http", "https"):
        return None
    if host == "sentry.io" or host.endswith(".sentry.io"):
        return f"https://sentry.io/issues/?project={project}"
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}/issues/?project={project}"


def pages(wiring: Wiring, console: Console) -> list[Page]:
    from ..errors.settings import ErrorsSettings

    dsn = wiring.settings(ErrorsSettings).sentry_dsn or wiring.environ.get("SENTRY_DSN")
    sentry = console.sentry_url = sentry_issues_url(dsn) if "sentry" in _on(wiring) else None

    def sentry_search(correlation_id: str | None) -> str | None:
        if sentry is None or not correlation_id:
            return None
        return f"{sentry}&query={quote('correlation_id:' + correlation_id)}"

    def errors(rest: str) -> ResponseReturnValue:
        store = console.errors
        if store is None:
            abort(404)
        if rest == "":
            groups = store.groups()
            if request.args.get("format") == "json":
                return console.json({"groups": [vars(g) for g in groups]})
            return console.render(
                "observe_console/errors.html",
                page="errors",
                groups=groups,
                iso=iso,
                sentry=sentry,
                dropped=store.dropped,
            )
        if not _FINGERPRINT.fullmatch(rest):
            abort(404)
        group = store.group(rest)
        if group is None:
            abort(404, "no such error group (it may have been dropped for newer ones)")
        events = store.events(rest)
        if request.args.get("format") == "json":
            return console.json({"group": vars(group), "events": events})
        for event in events:
            event["logs"] = console.logs_link(
                correlation_id=event["correlation_id"], trace_id=event["trace_id"]
            )
            event["trace"] = (
                console.url("traces", event["trace_id"])
                if event["trace_id"] and console.spans is not None
                else None
            )
            event["sentry"] = sentry_search(event["correlation_id"])
        return console.render(
            "observe_console/error_group.html",
            page="errors",
            title=group.title,
            group=group,
            events=events,
            iso=iso,
            sentry=sentry,
        )

    return [Page("errors", "Errors", errors, order=20)]


def _on(wiring: Wiring) -> set[str]:
    """Whether Sentry is on: its reporter was set up."""
    from ..errors.reporter import ErrorReporter

    return {"sentry"} if wiring.get(ErrorReporter) is not None else set()
