"""The console's Loggers page: every logger of the app with its level; a signed-in operator
changes one for the whole host until the server restarts, or puts it back (:mod:`.levels`)."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from flask import abort, redirect, request
from flask.typing import ResponseReturnValue

from .._bodies import read_form
from .levels import LEVELS, LevelControl, boot_id, level_name, valid_name
from .pages import Console, Page

if TYPE_CHECKING:
    from ..feature import Wiring

__all__ = ["pages"]

#: Most loggers listed (a filter narrows them).
MAX_LISTED = 500


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def known_loggers() -> list[str]:
    """The loggers this process has made (``root`` first)."""
    names = [
        name
        for name, item in list(logging.root.manager.loggerDict.items())
        if isinstance(item, logging.Logger)
    ]
    return ["root", *sorted(names)]


def pages(wiring: Wiring, console: Console) -> list[Page]:
    assert console.db is not None
    control = console.levels = LevelControl(console.db, boot_id())
    if console.flusher is not None:
        console.flusher.add("logger levels", control.apply)

    def loggers(rest: str) -> ResponseReturnValue:
        if rest:
            abort(404)
        if request.method == "POST":
            form = read_form()
            name = form.get("logger", "").strip()
            by = request.remote_addr
            if form.get("action") == "reset":
                control.reset(name, by)
                return redirect(console.url("loggers", done=f"reset {name}"), code=303)
            if name not in known_loggers() or not valid_name(name):
                abort(400, "no logger of that name in this app")
            try:
                control.set(name, form.get("level", ""), by, time.time())
            except ValueError as error:
                abort(400, str(error))
            return redirect(console.url("loggers", done=f"{name} set"), code=303)
        wanted = request.args.get("q", "")[:200]
        changes = {c.name: c for c in control.changes()}
        names = [n for n in known_loggers() if wanted.lower() in n.lower()]
        rows = []
        for name in names[:MAX_LISTED]:
            target = logging.getLogger() if name == "root" else logging.getLogger(name)
            rows.append(
                {
                    "name": name,
                    "level": level_name(target.level),
                    "effective": level_name(target.getEffectiveLevel()),
                    "change": changes.get(name),
                }
            )
        return console.render(
            "observe_console/loggers.html",
            page="loggers",
            rows=rows,
            changes=list(changes.values()),
            levels=LEVELS,
            q=wanted,
            more=max(0, len(names) - MAX_LISTED),
            done=request.args.get("done", "")[:240],
            iso=iso,
        )

    return [Page("loggers", "Loggers", loggers, order=80, methods=("GET", "POST"))]
