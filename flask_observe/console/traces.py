"""The console's Traces pages: recent, slow and failed traces of the host, and one trace's
waterfall (each span's attributes and events), with links to the request's log lines and,
when configured, to the trace in Jaeger."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flask import abort, request
from flask.typing import ResponseReturnValue

from .pages import Console, Page

if TYPE_CHECKING:
    from ..feature import Wiring
    from .spanstore import SpanStore

__all__ = ["pages", "waterfall"]

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
VIEWS = {"recent": "Recent", "slow": "Slow", "failed": "Failed"}
PAGE_SIZE = 50


def iso(ns: int) -> str:
    """A UTC ISO 8601 time with milliseconds, from nanoseconds since the epoch."""
    when = datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def waterfall(spans: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, int]:
    """``spans`` in tree order (each child after its parent, siblings by start), each with
    its ``depth``, ``left`` and ``width`` (percent of the trace's span of time); and the
    trace's start and duration in nanoseconds."""
    if not spans:
        return [], 0, 0
    start = min(s["start_ns"] for s in spans)
    end = max(s["start_ns"] + s["duration_ns"] for s in spans)
    total = max(1, end - start)
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_id"] if span["parent_id"] in ids else None
        children.setdefault(parent, []).append(span)
    ordered: list[dict[str, Any]] = []
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span["span_id"] in seen:  # a loop in hostile data: show each span once
            continue
        seen.add(span["span_id"])
        span = {
            **span,
            "depth": min(depth, 30),
            "left": round((span["start_ns"] - start) * 100 / total, 3),
            "width": round(max(span["duration_ns"] * 100 / total, 0.2), 3),
            "offset_ms": (span["start_ns"] - start) / 1e6,
            "duration_ms": span["duration_ns"] / 1e6,
            "time": iso(span["start_ns"]),
            "events": [{**e, "offset_ms": (e["time_ns"] - start) / 1e6} for e in span["events"]],
        }
        ordered.append(span)
        for child in reversed(children.get(span["span_id"], [])):
            stack.append((child, depth + 1))
    for span in spans:  # anything not reached (a cycle): at the end, flat
        if span["span_id"] not in seen:
            seen.add(span["span_id"])
            ordered.append(
                {
                    **span,
                    "depth": 0,
                    "left": 0,
                    "width": 0.2,
                    "offset_ms": 0,
                    "duration_ms": span["duration_ns"] / 1e6,
                    "time": iso(span["start_ns"]),
                    "events": span["events"],
                }
            )
    return ordered, start, total


def pages(wiring: Wiring, console: Console) -> list[Page]:
    def listing(store: SpanStore, view: str) -> ResponseReturnValue:
        before = request.args.get("before", "")
        before_ns = int(before) if before.isdigit() and len(before) < 21 else None
        if view == "slow":
            rows = store.slow(int(console.slow_ms * 1e6), PAGE_SIZE)
        elif view == "failed":
            rows = store.failed(PAGE_SIZE)
        else:
            rows = store.recent(PAGE_SIZE, before_ns)
        if request.args.get("format") == "json":
            return console.json({"view": view, "traces": [vars(r) for r in rows]})
        more = view == "recent" and len(rows) == PAGE_SIZE
        return console.render(
            "observe_console/traces.html",
            page="traces",
            view=view,
            views=VIEWS,
            rows=rows,
            iso=iso,
            counts=store.counts(),
            slow_ms=console.slow_ms,
            next_before=rows[-1].start_ns if more else None,
            dropped=console.span_processor.dropped if console.span_processor else 0,
        )

    def one(store: SpanStore, trace_id: str) -> ResponseReturnValue:
        spans = store.spans(trace_id)
        if not spans:
            abort(404, "no such trace here (it may have aged out of the store)")
        summary = store.summary(trace_id)
        ordered, start, total = waterfall(spans)
        errors = console.errors.for_trace(trace_id) if console.errors is not None else []
        if request.args.get("format") == "json":
            return console.json({"trace_id": trace_id, "spans": spans})
        correlation = summary.correlation_id if summary else None
        return console.render(
            "observe_console/trace.html",
            page="traces",
            title=f"Trace {trace_id}",
            trace_id=trace_id,
            summary=summary,
            spans=ordered,
            start=iso(start),
            duration_ms=total / 1e6,
            errors=errors,
            logs_link=console.logs_link(correlation_id=correlation)
            or console.logs_link(trace_id=trace_id),
            trace_logs_link=console.logs_link(trace_id=trace_id),
            jaeger_link=console.external_trace_link(trace_id),
        )

    def traces(rest: str) -> ResponseReturnValue:
        store = console.spans
        if store is None:
            return console.render(
                "observe_console/traces_off.html", page="traces", reason=console.spans_off
            )
        if rest in ("", *VIEWS):
            return listing(store, rest or "recent")
        if not _TRACE_ID.fullmatch(rest):
            abort(404)
        return one(store, rest)

    return [Page("traces", "Traces", traces, order=10)]
