"""The overview's SVG charts: one line per run of slots with values, a dot for a value alone,
every text escaped, a summary for screen readers."""

from __future__ import annotations

from flask_observe.console.charts import chart, format_seconds
from flask_observe.console.rollups import Point


def _points(values: list[float | None]) -> list[Point]:
    return [Point(1_800_000_000.0 + 60 * i, v or 0.0, 0.0, v) for i, v in enumerate(values)]


def test_gaps_split_the_line_and_a_lone_value_is_a_dot() -> None:
    svg = chart(_points([0.1, 0.2, None, 0.3, None, None, 0.2, 0.4]), lambda p: p.p95, "p95")
    assert svg.count("<polyline") == 2
    assert svg.count("<circle") == 1
    assert 'role="img"' in svg
    assert "<title>p95: 5 points from" in svg


def test_every_text_is_escaped() -> None:
    svg = chart(_points([1.0]), lambda p: p.requests, '<script>alert(1)</script>"')
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert '"' not in svg.split("aria-label=")[1].split('"')[1]


def test_an_empty_chart_says_so() -> None:
    svg = chart(_points([None, None]), lambda p: p.p95, "p95")
    assert "peak no data" in svg
    assert "<polyline" not in svg


def test_seconds_are_written_for_people() -> None:
    assert format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(2.5) == "2.5 s"
    assert format_seconds(None) == "\u2013"
