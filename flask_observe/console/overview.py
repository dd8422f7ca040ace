"""The console's overview, the first page after sign-in: per-route (per outbound host, per
Celery task) rate, error ratio and p50/p95/p99 over 5 m, 15 m, 1 h and 24 h; charts of
requests/s, errors/s and p95 over the last hour and day; health now and its latest
transitions; circuit breakers; SLO budgets; the latest alerts.

It sets up what feeds it, too: the rollups (a ``MEASURE`` request hook, an outbound hook,
Celery's task signals where Celery runs) and the history (the alert router's and the health
runner's listeners), both written by the console's flusher into its SQLite file
(:class:`~flask_observe.console.store.ConsoleDB`, in ``OBSERVE_CONSOLE_DIR``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import abort, request
from flask.typing import ResponseReturnValue

from .charts import chart, format_seconds
from .history import History
from .pages import Console, Page
from .promchart import PrometheusCharts, PrometheusError
from .rollups import HOST, KINDS, ROUTE, TASK, Point, Rollups, Stats, task_hooks

if TYPE_CHECKING:
    from ..feature import Wiring

__all__ = ["OverviewData", "pages"]

#: Windows the tables offer: (slug, seconds, label).
WINDOW_TABS = (
    ("5m", 300, "5 minutes"),
    ("15m", 900, "15 minutes"),
    ("1h", 3600, "1 hour"),
    ("24h", 86400, "24 hours"),
)
#: Chart ranges: (slug, seconds, slot seconds, label).
RANGES = (("hour", 3600, 60, "last hour"), ("day", 86400, 900, "last day"))
KIND_TITLES = {ROUTE: "Routes", HOST: "Outbound hosts", TASK: "Celery tasks"}
STATIC = Path(__file__).parent / "static"


@dataclass
class OverviewData:
    """What the overview and the alert and health pages read (``wiring.get(OverviewData)``)."""

    rollups: Rollups
    history: History
    prometheus: PrometheusCharts | None = None


def _setup_data(wiring: Wiring, console: Console) -> OverviewData:
    from ..alerting.router import AlertRouter
    from ..health.runner import HealthRunner
    from ..hooks import Stage
    from ..metrics.outbound import OutboundMetrics

    settings: Any = wiring.config
    db, flusher = console.db, console.flusher
    if db is None or flusher is None:  # the console's set-up makes both before the pages
        raise RuntimeError("the overview needs the console's store and flusher")
    outbound = wiring.get(OutboundMetrics)
    rollups = Rollups(
        db,
        excluded=wiring.state.excluded,
        host_label=outbound.host_label if outbound is not None else None,
    )
    history = History(db)
    url = getattr(settings, "console_prometheus_url", None)
    prometheus = (
        PrometheusCharts(
            url,
            getattr(settings, "console_prometheus_selector", ""),
            getattr(settings, "console_prometheus_timeout_seconds", 2.0),
        )
        if url
        else None
    )
    data = OverviewData(rollups, history, prometheus)
    if getattr(settings, "console_rollups", True):
        wiring.request_hook(Stage.MEASURE, rollups.on_request)
        wiring.outbound_hook(rollups.on_outbound)
        _connect_celery(wiring, rollups, flusher)
    # The console's flusher (every second, started by each worker's first request) writes
    # them; a worker exiting writes what it still holds.
    flusher.add("overview rollups", rollups.flush)
    flusher.add("alert and health history", history.flush)
    wiring.at_exit(rollups.flush, 1.0)
    wiring.at_exit(history.flush, 1.0)
    router = wiring.get(AlertRouter)
    if router is not None:
        router.add_listener(history.on_alert)
        wiring.on_close(lambda: router.remove_listener(history.on_alert))
    runner = wiring.get(HealthRunner)
    if runner is not None:
        runner.add_listener(history.on_health)
        wiring.on_close(lambda: runner.remove_listener(history.on_health))
    wiring.provide(data)
    return data


def _connect_celery(wiring: Wiring, rollups: Rollups, flusher: Any) -> None:
    """Count Celery task runs where Celery is installed and the app's tasks are observed
    (``OBSERVE_CELERY_ENABLED``); the worker has no requests, so its first task starts the
    flusher that writes them."""
    from .. import _optional

    if getattr(wiring.config, "celery_enabled", None) is False:
        return
    if _optional.detect("celery", "the console's Celery task rollups") is None:
        return
    from celery import signals

    prerun, postrun = task_hooks(rollups)

    def on_prerun(**kwargs: Any) -> None:
        flusher.ensure_started()
        prerun(**kwargs)

    uid = f"flask_observe.console.{id(rollups)}"
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid=uid + ".pre")
    signals.task_postrun.connect(postrun, weak=False, dispatch_uid=uid + ".post")

    def disconnect() -> None:
        signals.task_prerun.disconnect(dispatch_uid=uid + ".pre")
        signals.task_postrun.disconnect(dispatch_uid=uid + ".post")

    wiring.on_close(disconnect)


# -- what the page shows -------------------------------------------------------------------


def _row(stats: Stats) -> dict[str, Any]:
    return {
        "name": stats.name,
        "count": stats.count,
        "errors": stats.errors,
        "rate": stats.rate,
        "error_ratio": stats.error_ratio,
        "p50": stats.p50,
        "p95": stats.p95,
        "p99": stats.p99,
    }


def when(timestamp: float | None) -> str:
    """``2026-12-02 05:10:03Z``; empty for none."""
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


def _charts(data: OverviewData, range_slug: str) -> tuple[list[dict[str, Any]], str, str | None]:
    """(the three charts, where their figures come from, why Prometheus failed or None)."""
    _, window, res, label = next(r for r in RANGES if r[0] == range_slug)
    source = "this host's rollups"
    problem = None
    points: list[Point]
    if data.prometheus is not None:
        try:
            points = data.prometheus.series(window, res)
            source = f"Prometheus ({data.prometheus.url})"
        except PrometheusError as exc:
            problem = str(exc)
            points = data.rollups.series(window, res)
    else:
        points = data.rollups.series(window, res)
    charts = [
        {
            "title": f"Requests per second, {label}",
            "svg": chart(points, lambda p: p.requests, f"Requests per second, {label}"),
        },
        {
            "title": f"Errors (5xx) per second, {label}",
            "svg": chart(points, lambda p: p.errors, f"Errors per second, {label}", css="line bad"),
        },
        {
            "title": f"p95 latency, {label}",
            "svg": chart(
                points,
                lambda p: p.p95,
                f"p95 latency, {label}",
                unit="s",
                label=format_seconds,
                css="line warn",
            ),
        },
    ]
    return charts, source, problem


def _health(wiring: Wiring, data: OverviewData) -> list[dict[str, Any]]:
    """Each check: its status as this worker last saw it, and the host's latest change (the
    two differ while workers disagree, e.g. one worker's breaker still open)."""
    from ..health.runner import HealthRunner

    runner = wiring.get(HealthRunner)
    latest = runner.latest() if runner is not None else {}
    last = data.history.last_status()
    names = [check.name for check in runner.checks] if runner is not None else []
    rows = []
    for name in names + sorted(set(last) - set(names)):
        result = latest.get(name)
        transition = last.get(name)
        rows.append(
            {
                "name": name,
                "status": result.status.value if result is not None else "not run here yet",
                "output": (result.output if result is not None else None) or "",
                "change": transition.to_status if transition is not None else "",
                "since": when(transition.at) if transition is not None else "",
            }
        )
    return rows


def _breakers(wiring: Wiring) -> list[tuple[str, str]]:
    from ..breakers.registry import BreakerRegistry

    registry = wiring.get(BreakerRegistry)
    if registry is None:
        return []
    return sorted((name, str(b.current_state)) for name, b in registry.all().items())


def _budgets(wiring: Wiring) -> list[dict[str, Any]]:
    from ..slo.budgets import ErrorBudgets

    budgets = wiring.get(ErrorBudgets)
    if budgets is None:
        return []
    remaining = budgets.remaining
    return [
        {
            "slo": slo,
            "target": target,
            "remaining": remaining.get(slo),
            "requests": budgets.requests_in_window,
        }
        for slo, target in budgets.targets.items()
        if target
    ]


def pages(wiring: Wiring, console: Console) -> list[Page]:
    data = _setup_data(wiring, console)
    console.add_asset("overview.css", STATIC / "overview.css", "text/css")

    def overview(rest: str) -> ResponseReturnValue:
        if rest == "data.json":
            window = _window(request.args.get("window", "1h"))
            return console.json(
                {kind: [_row(s) for s in data.rollups.table(kind, window)] for kind in KINDS}
                | {"window": window}
            )
        if rest:
            abort(404)
        window_slug = request.args.get("window", "1h")
        window = _window(window_slug)
        range_slug = request.args.get("range", "hour")
        if range_slug not in {r[0] for r in RANGES}:
            abort(400, "range: hour or day")
        charts, source, problem = _charts(data, range_slug)
        tables = [(kind, KIND_TITLES[kind], data.rollups.table(kind, window)) for kind in KINDS]
        return console.render(
            "observe_console/overview.html",
            page="overview",
            window=window_slug,
            windows=WINDOW_TABS,
            ranges=RANGES,
            range=range_slug,
            charts=charts,
            chart_source=source,
            chart_problem=problem,
            tables=[t for t in tables if t[2] or t[0] == ROUTE],
            health=_health(wiring, data),
            transitions=data.history.transitions(limit=8),
            breakers=_breakers(wiring),
            budgets=_budgets(wiring),
            alerts=data.history.alerts(limit=5),
            seconds=format_seconds,
            when=when,
            pid=os.getpid(),
        )

    return [Page("overview", "Overview", overview, order=0)]


def _window(slug: str) -> int:
    for name, seconds, _ in WINDOW_TABS:
        if name == slug:
            return seconds
    abort(400, "window: one of 5m, 15m, 1h, 24h")
    raise AssertionError("abort raises")  # for the type checker
