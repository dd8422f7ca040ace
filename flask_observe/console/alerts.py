"""The console's alert history (incidents fired and resolved, each channel's outcome) and
health history (each check's transitions) pages; the data is the overview's
(:class:`~flask_observe.console.overview.OverviewData`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import abort, request
from flask.typing import ResponseReturnValue

from .overview import OverviewData, when
from .pages import Console, Page

if TYPE_CHECKING:
    from ..feature import Wiring

__all__ = ["pages"]

#: Rows a page lists at most.
LIMIT = 100


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def pages(wiring: Wiring, console: Console) -> list[Page]:
    data = wiring.get(OverviewData)
    if data is None:  # the overview sets the data up; it comes first in SECTIONS
        return []
    history = data.history

    def alerts(rest: str) -> ResponseReturnValue:
        if rest:
            abort(404)
        state = request.args.get("state", "all")
        if state not in ("all", "firing"):
            abort(400, "state: all or firing")
        entries = history.alerts(LIMIT, firing_only=state == "firing")
        return console.render(
            "observe_console/alerts.html",
            page="alerts",
            state=state,
            entries=entries,
            when=when,
            duration=_duration,
        )

    def health(rest: str) -> ResponseReturnValue:
        if rest:
            abort(404)
        check = request.args.get("check") or None
        if check is not None and len(check) > 200:
            abort(400, "check: at most 200 characters")
        return console.render(
            "observe_console/health.html",
            page="health",
            check=check,
            checks=sorted(history.last_status()),
            transitions=history.transitions(check, LIMIT),
            when=when,
        )

    return [
        Page("alerts", "Alerts", alerts, order=60),
        Page("health", "Health history", health, order=65),
    ]
