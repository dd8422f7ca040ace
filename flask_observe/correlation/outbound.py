"""Outgoing HTTP calls made with ``requests`` carry the correlation ID and the trace context —
to allowed hosts only.

A scraper talks to third-party sites that must not receive our headers, so the ID is added,
and the trace context (``traceparent``, ``tracestate``, ``baggage``) kept, only when the
target matches the app's ``OBSERVE_PROPAGATE_HOSTS`` allowlist. The check runs on every send,
redirects included: a redirect from an allowed host to another one drops the headers again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._internal import FailureLog
from ..context import get_correlation_id

if TYPE_CHECKING:
    import requests

__all__ = ["HostAllowlist", "OutboundRules", "RequestsPropagation"]

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


@dataclass(frozen=True)
class OutboundRules:
    """What one app lets out on its outgoing calls.

    :param header: the correlation ID header given to allowed hosts (``None``: not sent).
    :param allowlist: hosts that may receive our correlation ID and trace context.
    :param trace_fields: the trace context headers (the propagator's fields: ``traceparent``,
        ``tracestate``, ``baggage``…) removed from calls to any other host.
    :param current_fields: the fields of the propagator in use now, removed too (one the host
        installs after ``init_app`` injects headers of its own).
    """

    header: str | None
    allowlist: HostAllowlist
    trace_fields: tuple[str, ...] = ()
    current_fields: Callable[[], Iterable[str]] | None = None


#: Returned by the rules lookup outside any app context.
OUTSIDE_APP = OutboundRules(None, HostAllowlist(()))


class RequestsPropagation:
    """Wraps ``requests``' ``HTTPAdapter.send`` once per process; each app supplies its rules.

    The adapter is the last step before the wire, after every ``Session.send`` wrapper
    (OpenTelemetry's injects the trace context there), and it is called again for each
    redirect; so whatever the order in which wrappers were installed, each hop leaves with
    exactly what its host may receive. The wrapper asks ``rules()`` for the current app's
    :class:`OutboundRules` on each send, so two apps in one process each get theirs. The
    original ``send`` is kept and restored by :meth:`uninstall` when the last app releases it.
    """

    _ATTR = "__flask_observe_original__"

    def __init__(self, rules: Callable[[], OutboundRules | None]) -> None:
        """:param rules: the current app's rules; ``None`` for an app with none,
        :data:`OUTSIDE_APP` outside any app context."""
        self._rules = rules
        self._failures = FailureLog()

    def install(self, own: OutboundRules | None = None) -> None:
        """Install the wrapper (once per process) and count one more user.

        :param own: this app's rules, also used outside any app context (a background
            thread's calls) while this app is the first running one with trace headers to
            guard: such calls have no app to ask, and may carry a trace context.
        """
        from requests.adapters import HTTPAdapter

        send = HTTPAdapter.send
        original = getattr(send, self._ATTR, None)
        if original is None:
            original = send
            rules = self._rules
            failures = self._failures
            fallback: list[OutboundRules] = []

            def send_with_rules(
                adapter: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any
            ) -> requests.Response:
                try:
                    current = rules()
                    if current is OUTSIDE_APP:
                        current = fallback[0] if fallback else None
                    _apply(request, current)
                except Exception:
                    failures("applying the outbound header rules to an outgoing request")
                return original(adapter, request, *args, **kwargs)

            setattr(send_with_rules, self._ATTR, original)
            send_with_rules._flask_observe_users = 0  # type: ignore[attr-defined]
            send_with_rules._flask_observe_fallback = fallback  # type: ignore[attr-defined]
            HTTPAdapter.send = send_with_rules  # type: ignore[method-assign,assignment]
            send = send_with_rules  # type: ignore[assignment]
        send._flask_observe_users += 1  # type: ignore[attr-defined]
        if own is not None and own.trace_fields:
            send._flask_observe_fallback.append(own)  # type: ignore[attr-defined]

    @classmethod
    def uninstall(cls, own: OutboundRules | None = None) -> None:
        """Release one user of the wrapper; the last one restores the original ``send``."""
        from requests.adapters import HTTPAdapter

        send = HTTPAdapter.send
        original = getattr(send, cls._ATTR, None)
        if original is None:
            return
        fallback = send._flask_observe_fallback  # type: ignore[attr-defined]
        if own is not None and own in fallback:
            fallback.remove(own)
        send._flask_observe_users -= 1  # type: ignore[attr-defined]
        if send._flask_observe_users <= 0:  # type: ignore[attr-defined]
            HTTPAdapter.send = original  # type: ignore[method-assign]


def _apply(request: Any, rules: OutboundRules | None) -> None:
    if rules is None or request.url is None:
        return
    headers = request.headers
    allowed = rules.allowlist.allows(request.url)
    header = rules.header
    if header is not None:
        correlation_id = get_correlation_id()
        if correlation_id is not None:
            if allowed:
                if header not in headers:
                    headers[header] = correlation_id
            elif headers.get(header) == correlation_id:
                # Carried over from an allowed host by a redirect: not for this one.
                del headers[header]
    if not allowed and rules.trace_fields:
        fields = set(rules.trace_fields)
        if rules.current_fields is not None:
            fields.update(rules.current_fields())
        for field in fields:
            if field in headers:
                del headers[field]
