"""Time-series charts drawn on the server as inline SVG: no script, no CDN, nothing for the
CSP to allow. Each chart has a ``<title>`` and a text summary (screen readers), and every
text in it is escaped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

from .rollups import Point

__all__ = ["chart", "format_seconds"]

WIDTH, HEIGHT = 560, 140
_RIGHT = 6  # room for a dot at the last slot
_LEFT, _BOTTOM, _TOP = 52, 18, 8


def format_seconds(value: float | None) -> str:
    """``12 ms``, ``1.3 s``; a dash for no value."""
    if value is None:
        return "\u2013"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s"


def _number(value: float) -> str:
    return f"{value:.3g}"


def _dot(point: str, css: str) -> str:
    x, y = point.split(",")
    return f'<circle class="{escape(css)} dot" cx="{x}" cy="{y}" r="2.5"/>'


def chart(
    points: Sequence[Point],
    value: Callable[[Point], float | None],
    title: str,
    *,
    unit: str = "/s",
    label: Callable[[float], str] = _number,
    css: str = "line",
) -> Markup:
    """One line chart of ``value(point)`` over ``points`` (gaps where it is ``None``)."""
    values = [value(p) for p in points]
    present = [v for v in values if v is not None]
    top = max(present) if present else 0.0
    top = top * 1.1 if top > 0 else 1.0
    width = WIDTH - _LEFT - _RIGHT
    height = HEIGHT - _BOTTOM - _TOP
    step = width / max(len(points) - 1, 1)
    runs: list[list[str]] = [[]]
    for index, v in enumerate(values):
        if v is None:
            if runs[-1]:
                runs.append([])
            continue
        x = _LEFT + index * step
        y = _TOP + height - (v / top) * height
        runs[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline class="{escape(css)}" fill="none" points="{" ".join(run)}"/>'
        if len(run) > 1
        # a point alone (one slot with requests between gaps) is a dot, not an empty line
        else _dot(run[0], css)
        for run in runs
        if run
    )
    first = time.strftime("%H:%M", time.gmtime(points[0].start)) if points else ""
    last = time.strftime("%H:%M", time.gmtime(points[-1].start)) if points else ""
    peak = label(max(present)) if present else "no data"
    summary = f"{title}: {len(present)} points from {first} to {last} UTC, peak {peak}"
    if unit == "/s" and present:
        summary += " per second"
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="100%" preserveAspectRatio="none" aria-label="{escape(summary)}">'
        f"<title>{escape(summary)}</title>"
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + height}" x2="{WIDTH}" y2="{_TOP + height}"/>'
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + height}"/>'
        f'<text class="tick" x="{_LEFT - 4}" y="{_TOP + 8}" text-anchor="end">'
        f"{escape(label(top / 1.1) if present else '0')}</text>"
        f'<text class="tick" x="{_LEFT - 4}" y="{_TOP + height}" text-anchor="end">0</text>'
        f'<text class="tick" x="{_LEFT}" y="{HEIGHT - 4}">{escape(first)}</text>'
        f'<text class="tick" x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end">{escape(last)}</text>'
        f"{lines}</svg>"
    )
