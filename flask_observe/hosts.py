"""Host patterns: which hosts an app's outgoing calls may tell things to (correlation IDs,
trace context), and which hosts its outbound metrics name (every other one is ``other``)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["HostAllowlist"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_CACHE_SIZE = 1024


class HostAllowlist:
    """Matches URLs against host patterns.

    Patterns: ``api.example.com`` (any port), ``api.example.com:8443`` or ``127.0.0.1:5000``
    (that port only), ``[::1]:5000``, ``*.example.com`` (subdomains, not the apex) and ``*``
    (every host). Matching is case-insensitive and ignores a trailing dot.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._by_host: dict[str, str] = {}
        self._by_host_port: dict[tuple[str, int], str] = {}
        self._suffixes: list[tuple[str, str]] = []
        self._everything = False
        for raw in self.patterns:
            pattern = raw.strip().lower().rstrip(".")
            if pattern == "*":
                self._everything = True
            elif pattern.startswith("*."):
                self._suffixes.append((pattern[1:], raw.strip()))
            else:
                host, port = _split_host_port(pattern)
                if port is None:
                    self._by_host.setdefault(host, raw.strip())
                else:
                    self._by_host_port.setdefault((host, port), raw.strip())
        self._cache: dict[tuple[str, str], bool] = {}
        self._labels: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def allows(self, url: str) -> bool:
        """Whether ``url``'s host (and port) is on the list."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        allowed = self._match(parts.scheme, parts.hostname, parts)
        with self._lock:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = allowed
        return allowed

    def _match(self, scheme: str, hostname: str | None, parts: Any) -> bool:
        return self._pattern(scheme, hostname, parts) is not None

    def label(self, url: str) -> str | None:
        """The pattern ``url``'s host matches (as written in the list), or ``None``: a
        bounded metric label, whatever hosts an app is sent to."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        try:
            return self._labels[key]
        except KeyError:  # not seen yet (or the cache was just cleared)
            pass
        found = self._pattern(parts.scheme, parts.hostname, parts)
        with self._lock:
            if len(self._labels) >= _CACHE_SIZE:
                self._labels.clear()
            self._labels[key] = found
        return found

    def _pattern(self, scheme: str, hostname: str | None, parts: Any) -> str | None:
        if not hostname:
            return None
        host = hostname.lower().rstrip(".")
        found = self._by_host.get(host)
        if found is not None:
            return found
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            return None
        if port is not None:
            found = self._by_host_port.get((host, port))
            if found is not None:
                return found
        for suffix, pattern in self._suffixes:
            if host.endswith(suffix):
                return pattern
        return "*" if self._everything else None


def _split_host_port(pattern: str) -> tuple[str, int | None]:
    if pattern.startswith("["):  # [v6]:port
        host, _, rest = pattern[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = pattern.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return pattern, None
