"""Keys of the console (docs/console.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import boolean, integer, key, number, opt_boolean, opt_text, url_prefix
from .promchart import matchers, prometheus_url


@dataclass(frozen=True)
class ConsoleSettings:
    """Keys of the console (docs/console.md)."""

    #: Serve the console (traces, errors, runtime controls) behind the log viewer's sign-in.
    #: ``None``: on whenever the log viewer is on.
    console_enabled: bool | None = key(None, opt_boolean)
    #: URL of the console; each page is ``<path>/<page>``, its assets ``<path>/static/…``.
    console_path: str = key("/observe/console", url_prefix)
    #: Directory of the console's SQLite store (shared by the workers of one host);
    #: ``None``: ``OBSERVE_LOG_DIR``.
    console_dir: str | None = key(None, opt_text)
    #: Keep the spans of this host's traces in the store (needs tracing on).
    console_spans: bool | None = key(None, opt_boolean)
    #: Most spans kept; the oldest go first.
    console_spans_max: int = key(100_000, integer(1_000, 10_000_000))
    #: Spans older than this many seconds are removed.
    console_spans_max_age: float = key(24 * 3600.0, number(60.0))
    #: Spans held in memory between two writes to the store; more are dropped (counted).
    console_spans_buffer: int = key(10_000, integer(100, 1_000_000))
    #: A request slower than this many milliseconds is listed as slow.
    console_slow_ms: float = key(500.0, number(1.0))
    #: Most error groups kept; the least recently seen go first.
    console_errors_max_groups: int = key(1_000, integer(10, 100_000))
    #: Count each request, outbound call and Celery task into the overview's rollups (a
    #: dict update per request; the console's flusher writes them to its store).
    console_rollups: bool = key(True, boolean)
    #: Prometheus' base URL (``http://prometheus:9090``): the overview's charts read its
    #: HTTP API (``query_range``) instead of this host's rollups. ``None``: the rollups.
    console_prometheus_url: str | None = key(None, prometheus_url)
    #: Label matchers scoping the overview's Prometheus queries (``job="scraper"``).
    console_prometheus_selector: str = key("", matchers)
    #: Seconds the three queries of one chart may take together.
    console_prometheus_timeout_seconds: float = key(2.0, number(0.1))
