"""Keys of the log viewer (docs/logviewer.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import (
    boolean,
    choice,
    file_names,
    integer,
    key,
    number,
    opt_boolean,
    opt_text,
    patterns,
    url_prefix,
)

#: Log viewer: JSON keys whose values are hidden at read time (searched, case-insensitive).
DEFAULT_REDACT_KEYS = (
    r"passw(or)?d|^pass$|secret|token|api[-_]?key|authorization|cookie|credential|private[-_]?key",
)
#: Log viewer: values hidden at read time wherever they appear; group 1 (if any) is what is
#: replaced, else the whole match.
DEFAULT_REDACT_PATTERNS = (
    r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})",
    r"://[^/\s:@]+:([^/\s@]+)@",
    r"(?i)(?:password|passwd|pwd|secret|token|api[-_]?key|access[-_]?key)[\"']?\s*[=:]\s*[\"']?"
    r"([^\s&,;\"'\\]+)",
    r"\b(AKIA[0-9A-Z]{16})\b",
    r"\b(eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})",
)


def trace_url(value: Any) -> str | None:
    url = opt_text(value)
    if url is None:
        return None
    if not re.match(r"https?://", url) or "{trace_id}" not in url:
        raise ValueError("expected an http(s) URL containing '{trace_id}'")
    return url


@dataclass(frozen=True)
class LogViewerSettings:
    """Keys of the log viewer (docs/logviewer.md)."""

    #: Serve the log viewer (API and page). Needs OBSERVE_AUTH_TOKEN or OBSERVE_AUTH_CALLBACK.
    logviewer_enabled: bool = key(False, boolean)
    #: URL prefix of the JSON API: ``<prefix>/files``, ``<prefix>/search``, ``<prefix>/tail/…``.
    logviewer_api_prefix: str = key("/api/logs", url_prefix)
    #: URL of the browser page; its assets and sign-in are served under it.
    logviewer_ui_path: str = key("/observe/logs", url_prefix)
    #: Directory read; ``None``: ``OBSERVE_LOG_DIR``.
    logviewer_dir: str | None = key(None, opt_text)
    #: Active file names shown with their rotated files; empty: ``OBSERVE_LOG_FILE_NAME``.
    logviewer_files: tuple[str, ...] = key((), file_names)
    #: Largest ``limit`` a search or tail may ask for.
    logviewer_max_results: int = key(1000, integer(1, 100_000))
    #: A page stops (with a cursor) before its lines would exceed this many bytes.
    logviewer_max_response_bytes: int = key(4 * 1024 * 1024, integer(64 * 1024))
    #: Seconds a search may scan before it answers with what it has and a cursor.
    logviewer_time_budget: float = key(2.0, number(0.05))
    logviewer_max_pattern_length: int = key(256, integer(1, 4096))
    #: Searches and tails running at once (more: 429).
    logviewer_max_concurrent: int = key(4, integer(1))
    #: Live tails (server-sent event streams) open at once (more: 429).
    logviewer_max_followers: int = key(8, integer(0))
    #: A live tail ends after this many seconds (the page reconnects).
    logviewer_follow_seconds: float = key(3600.0, number(1.0))
    #: How a live tail is served: ``auto`` streams where the server can hold a stream (it
    #: runs requests in threads or greenlets: ``wsgi.multithread``) and refuses with 409
    #: elsewhere (gunicorn's sync workers), the page polling instead; ``stream``: always;
    #: ``poll``: never a stream.
    logviewer_follow_mode: str = key("auto", choice("auto", "stream", "poll"))
    #: Hide secret-looking values in what the viewer returns.
    logviewer_redact: bool = key(True, boolean)
    logviewer_redact_keys: tuple[str, ...] = key(DEFAULT_REDACT_KEYS, patterns)
    logviewer_redact_patterns: tuple[str, ...] = key(DEFAULT_REDACT_PATTERNS, patterns)
    #: Link to a trace, e.g. ``http://127.0.0.1:16686/trace/{trace_id}`` (Jaeger).
    logviewer_trace_url: str | None = key(None, trace_url)
    #: Lifetime of the page's sign-in cookie.
    logviewer_session_seconds: int = key(3600, integer(60))
    #: ``Secure`` flag of the sign-in cookie. ``None`` (auto): set unless the page is served
    #: over plain HTTP on a loopback host (``request.is_secure`` decides, so ``ProxyFix``'s
    #: ``X-Forwarded-Proto`` counts); ``True``: always; ``False``: never (plain HTTP only).
    logviewer_cookie_secure: bool | None = key(None, opt_boolean)
