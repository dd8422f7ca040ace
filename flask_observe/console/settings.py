"""Keys of the console (docs/console.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import integer, key, number, opt_boolean, opt_text, url_prefix


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
