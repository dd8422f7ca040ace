"""Diagnostics: slow SQL queries, queries per request, memory growth."""

from __future__ import annotations

from .memory import MemoryWatch
from .queries import QueryDiagnostics, fingerprint

__all__ = ["MemoryWatch", "QueryDiagnostics", "fingerprint"]
