"""Outgoing HTTP calls made with ``requests`` carry the correlation ID — to allowed hosts only.

A scraper talks to third-party sites that must not receive our headers, so the ID is added only
when the target matches the app's ``OBSERVE_PROPAGATE_HOSTS`` allowlist. The check runs on
every send, redirects included: a redirect from an allowed host to another one drops the
header again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ._internal import FailureLog
from .correlation import get_correlation_id

__all__ = ["HostAllowlist", "RequestsPropagation"]

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
        self._hosts: set[str] = set()
        self._host_ports: set[tuple[str, int]] = set()
        self._suffixes: list[str] = []
        self._everything = False
        for raw in self.patterns:
            pattern = raw.strip().lower().rstrip(".")
            if pattern == "*":
                self._everything = True
            elif pattern.startswith("*."):
                self._suffixes.append(pattern[1:])
            else:
                host, port = _split_host_port(pattern)
                if port is None:
                    self._hosts.add(host)
                else:
                    self._host_ports.add((host, port))
        self._cache: dict[tuple[str, str], bool] = {}
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
        if not hostname:
            return False
        if self._everything:
            return True
        host = hostname.lower().rstrip(".")
        if host in self._hosts:
            return True
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            return False
        if port is not None and (host, port) in self._host_ports:
            return True
        return any(host.endswith(suffix) for suffix in self._suffixes)


def _split_host_port(pattern: str) -> tuple[str, int | None]:
    if pattern.startswith("["):  # [v6]:port
        host, _, rest = pattern[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    host, sep, port = pattern.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return pattern, None


class RequestsPropagation:
    """Wraps ``requests.Session.send`` once per process; each app supplies its own rules.

    The wrapper asks ``rules()`` for the current app's ``(header, allowlist)`` on each send, so
    two apps with different allowlists in one process each get theirs. The original ``send`` is
    kept and restored by :meth:`uninstall` when the last app releases it.
    """

    _ATTR = "__flask_observe_original__"

    def __init__(self, rules: Callable[[], tuple[str, HostAllowlist] | None]) -> None:
        self._rules = rules
        self._failures = FailureLog()

    def install(self) -> None:
        import requests

        send = requests.Session.send
        original = getattr(send, self._ATTR, None)
        if original is None:
            original = send
            rules = self._rules
            failures = self._failures

            def send_with_correlation_id(
                session: requests.Session, request: requests.PreparedRequest, **kwargs: Any
            ) -> requests.Response:
                try:
                    _apply(request, rules())
                except Exception:
                    failures("adding the correlation ID to an outgoing request")
                return original(session, request, **kwargs)

            setattr(send_with_correlation_id, self._ATTR, original)
            send_with_correlation_id._flask_observe_users = 0  # type: ignore[attr-defined]
            requests.Session.send = send_with_correlation_id  # type: ignore[method-assign,assignment]
            send = send_with_correlation_id  # type: ignore[assignment]
        send._flask_observe_users += 1  # type: ignore[attr-defined]

    @classmethod
    def uninstall(cls) -> None:
        """Release one user of the wrapper; the last one restores the original ``send``."""
        import requests

        send = requests.Session.send
        original = getattr(send, cls._ATTR, None)
        if original is None:
            return
        send._flask_observe_users -= 1  # type: ignore[attr-defined]
        if send._flask_observe_users <= 0:  # type: ignore[attr-defined]
            requests.Session.send = original  # type: ignore[method-assign]


def _apply(request: Any, rules: tuple[str, HostAllowlist] | None) -> None:
    if rules is None:
        return
    header, allowlist = rules
    correlation_id = get_correlation_id()
    if correlation_id is None or request.url is None:
        return
    if allowlist.allows(request.url):
        if header not in request.headers:
            request.headers[header] = correlation_id
    elif request.headers.get(header) == correlation_id:
        # Carried over from an allowed host by a redirect: not for this one.
        del request.headers[header]
