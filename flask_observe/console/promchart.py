"""The overview's charts from Prometheus' HTTP API (``query_range``) instead of the rollups,
when ``OBSERVE_CONSOLE_PROMETHEUS_URL`` is set: the fleet's figures, not this host's.

Three range queries per chart (requests/s, 5xx/s, p95 of the duration histogram), together
within one deadline; answers bigger than :data:`MAX_BYTES` are refused. Any failure — refused,
timed out, an error status, a body that is not Prometheus' — raises :class:`PrometheusError`
with one sentence the page shows instead of the chart.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .rollups import Point

__all__ = [
    "MAX_BYTES",
    "PrometheusCharts",
    "PrometheusError",
    "matchers",
    "prometheus_url",
    "queries",
]

#: Largest answer read from Prometheus (bytes).
MAX_BYTES = 4 * 1024 * 1024


_MATCHER = re.compile(r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\\\]|\\\\.)*"\s*')


def prometheus_url(value: Any) -> str | None:
    """``OBSERVE_CONSOLE_PROMETHEUS_URL``: an ``http(s)://host[:port][/path]`` URL, or none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError("expected a URL")
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL of the Prometheus server")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("the URL of the Prometheus server takes no query, fragment or user")
    return value.strip().rstrip("/")


def matchers(value: Any) -> str:
    """``OBSERVE_CONSOLE_PROMETHEUS_SELECTOR``: label matchers without braces
    (``job="scraper",env!="dev"``), or empty."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError('expected label matchers such as job="scraper"')
    text = value.strip()
    if not text:
        return ""
    position = 0
    while True:
        match = _MATCHER.match(text, position)
        if match is None:
            raise ValueError(f'expected label matchers such as job="scraper", not {text!r}')
        position = match.end()
        if position == len(text):
            return text
        if text[position] != ",":
            raise ValueError(f'expected label matchers such as job="scraper", not {text!r}')
        position += 1


class PrometheusError(Exception):
    """Prometheus could not give a chart (the message says why, for the page)."""


def queries(selector: str, window: str) -> dict[str, str]:
    """The three PromQL expressions, over ``window`` (``"2m"``), scoped by ``selector``
    (label matchers without braces, e.g. ``job="scraper"``; may be empty)."""
    scope = f"{selector}," if selector else ""
    every = f"{{{selector}}}" if selector else ""
    return {
        "requests": f"sum(rate(http_requests_total{every}[{window}]))",
        "errors": f'sum(rate(http_requests_total{{{scope}status=~"5.."}}[{window}]))',
        "p95": (
            "histogram_quantile(0.95, sum by (le)"
            f" (rate(http_request_duration_seconds_bucket{every}[{window}])))"
        ),
    }


class PrometheusCharts:
    """Reads chart points from a Prometheus server.

    :param url: the server's base URL (``http://prometheus:9090``).
    :param selector: label matchers every query is scoped by (``job="scraper"``).
    :param timeout: seconds all three queries of one chart may take together.
    """

    def __init__(self, url: str, selector: str = "", timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.selector = selector
        self.timeout = timeout

    def series(self, window: int, step: int, now: float | None = None) -> list[Point]:
        """Points every ``step`` seconds over the last ``window`` seconds.

        :raises PrometheusError: with the reason, when any query fails.
        """
        end = time.time() if now is None else now
        end -= end % step
        start = end - window + step
        rate_window = f"{max(2 * step, 60)}s"
        deadline = time.monotonic() + self.timeout
        values: dict[str, dict[float, float]] = {}
        for name, expr in queries(self.selector, rate_window).items():
            values[name] = self._range(expr, start, end, step, deadline)
        points = []
        slot = start
        while slot <= end + 1e-6:
            p95 = values["p95"].get(slot)
            points.append(
                Point(
                    slot,
                    values["requests"].get(slot, 0.0),
                    values["errors"].get(slot, 0.0),
                    p95 if p95 is not None and math.isfinite(p95) else None,
                )
            )
            slot += step
        return points

    def _range(
        self, expr: str, start: float, end: float, step: int, deadline: float
    ) -> dict[float, float]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PrometheusError(
                f"Prometheus at {self.url} did not answer within {self.timeout:g} s"
            )
        query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
        request = urllib.request.Request(
            f"{self.url}/api/v1/query_range?{query}", headers={"Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=remaining) as response:
                body = response.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(
                f"Prometheus at {self.url} answered {exc.code} to a range query"
                f" ({_error_of(exc.read(64 * 1024))})"
            ) from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                raise PrometheusError(
                    f"Prometheus at {self.url} did not answer within {self.timeout:g} s"
                ) from None
            raise PrometheusError(
                f"Prometheus at {self.url} could not be reached: {reason}"
            ) from None
        if len(body) > MAX_BYTES:
            raise PrometheusError(f"Prometheus' answer was larger than {MAX_BYTES} bytes")
        try:
            document = json.loads(body)
            if document.get("status") != "success":
                raise PrometheusError(f"Prometheus refused the query: {_error_of(body)}")
            result = document["data"]["result"]
            series: dict[float, float] = {}
            for stream in result[:1]:  # sum(...) is one series
                for stamp, value in stream["values"]:
                    series[float(stamp)] = float(value)
            return series
        except PrometheusError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError):
            raise PrometheusError(f"{self.url} did not answer as Prometheus does") from None


def _error_of(body: bytes) -> str:
    try:
        document: Any = json.loads(body)
        return str(document.get("error") or document.get("status"))[:200]
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")
