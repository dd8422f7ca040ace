"""Outgoing HTTP calls made with ``requests`` carry the correlation ID and the trace context —
to allowed hosts only.

A scraper talks to third-party sites that must not receive our headers, so the ID is added,
and the trace context (``traceparent``, ``tracestate``, ``baggage``) kept, only when the
target matches the app's ``OBSERVE_PROPAGATE_HOSTS`` allowlist. The check runs on every send,
redirects included: a redirect from an allowed host to another one drops the headers again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .._internal import FailureLog
from ..context import get_correlation_id
from ..hooks import OutboundCall, OutboundHook
from ..hosts import HostAllowlist

if TYPE_CHECKING:
    import requests

__all__ = ["HostAllowlist", "OutboundRules", "RequestsPropagation"]


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
    #: Told of each finished call (outbound metrics); ``None``: calls are not timed.
    observe: OutboundHook | None = None
    #: Whether any header is added or removed (else the host is not even looked up).
    guards: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "guards", self.header is not None or bool(self.trace_fields))


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
                current = None
                try:
                    current = rules()
                    if current is OUTSIDE_APP:
                        current = fallback[0] if fallback else None
                    if current is not None and current.guards:
                        _apply(request, current)
                except Exception:
                    failures("applying the outbound header rules to an outgoing request")
                observe = current.observe if current is not None else None
                if observe is None:
                    return original(adapter, request, *args, **kwargs)
                started = perf_counter()
                try:
                    response = original(adapter, request, *args, **kwargs)
                except BaseException as exc:
                    duration = perf_counter() - started
                    try:
                        observe(
                            OutboundCall(
                                request.method or "", request.url or "", None, exc, duration, {}, 0
                            )
                        )
                    except Exception:
                        failures(_HOOK_FAILED)
                    raise
                duration = perf_counter() - started
                try:  # a failing hook never fails the call
                    history = getattr(response.raw, "retries", None)
                    history = getattr(history, "history", None) if history is not None else None
                    observe(
                        OutboundCall(
                            request.method or "",
                            request.url or "",
                            response.status_code,
                            None,
                            duration,
                            response.headers,
                            len(history) if history else 0,
                        )
                    )
                except Exception:
                    failures(_HOOK_FAILED)
                return response

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


_HOOK_FAILED = "an outbound call hook (outbound metrics)"


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
