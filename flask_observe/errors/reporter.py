"""The reporter of one app: builds each event from the exception and a scope of its own."""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._internal import FailureLog, exit_flushes, run_with_deadline
from .spine import spine_tags

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..config import CoreSettings
    from .settings import ErrorsSettings

__all__ = ["ErrorReporter", "make_client", "scrub_event"]

_REPORTED_ATTR = "__flask_observe_reported__"
_REQUEST_KEYS_DROPPED = ("query_string", "cookies", "data", "env", "headers")
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def scrub_event(event: dict[str, Any], send_client_ip: bool = False) -> dict[str, Any]:
    """Remove what must never leave: request bodies, headers, cookies, query strings,
    environment, local variables, breadcrumbs, extra data, and the client address unless
    allowed. Applied to every event our client sends (``before_send``)."""
    request = event.get("request")
    if isinstance(request, dict):
        for key in _REQUEST_KEYS_DROPPED:
            request.pop(key, None)
        url = request.get("url")
        if isinstance(url, str):
            request["url"] = url.split("?", 1)[0].split("#", 1)[0]
    user = event.get("user")
    if isinstance(user, dict) and not send_client_ip:
        user.pop("ip_address", None)
    for key in ("breadcrumbs", "extra"):
        event.pop(key, None)
    for container in (event.get("exception"), event.get("threads")):
        values = container.get("values") if isinstance(container, dict) else None
        for value in values or ():
            stacktrace = value.get("stacktrace") if isinstance(value, dict) else None
            for frame in (stacktrace or {}).get("frames") or ():
                if isinstance(frame, dict):
                    frame.pop("vars", None)
    return event


class ErrorReporter:
    """Sends one app's errors to Sentry (``Observe.handle(ErrorReporter, app)``).

    :param client: our own ``sentry_sdk.Client``, or ``None`` when the host's Sentry setup
        does the reporting.
    """

    def __init__(
        self,
        client: Any,
        *,
        service: str,
        send_client_ip: bool,
        shutdown_timeout: float,
    ) -> None:
        self.client = client
        self.service = service
        self.send_client_ip = send_client_ip
        self.shutdown_timeout = shutdown_timeout
        self.captured = 0
        self._failures = FailureLog()
        self._closed = False
        self._lock = threading.Lock()

    def capture(
        self,
        exc_info: ExcInfo,
        *,
        mechanism: str,
        request: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        user_ip: str | None = None,
    ) -> str | None:
        """Report an unhandled exception; returns the event ID (``None`` if not sent).

        Never raises: a failure is logged (rate-limited) and the host goes on.
        """
        client = self.client
        error = exc_info[1]
        if client is None or getattr(error, _REPORTED_ATTR, False):
            return None
        try:
            # An exception type without a __dict__ cannot be marked: report it anyway.
            with contextlib.suppress(Exception):
                setattr(error, _REPORTED_ATTR, True)
            return self._capture(client, exc_info, mechanism, request, tags, user_ip)
        except Exception:
            self._failures("reporting an error to Sentry")
            return None

    def _capture(
        self,
        client: Any,
        exc_info: ExcInfo,
        mechanism: str,
        request: Mapping[str, Any] | None,
        tags: Mapping[str, str] | None,
        user_ip: str | None,
    ) -> str | None:
        import sentry_sdk
        from sentry_sdk.utils import event_from_exception

        event, hint = event_from_exception(
            exc_info, client_options=client.options, mechanism={"type": mechanism, "handled": False}
        )
        scope = sentry_sdk.Scope()
        spine = spine_tags()
        for key, value in spine.items():
            scope.set_tag(key, value)
        scope.set_tag("service", self.service)
        for key, value in (tags or {}).items():
            scope.set_tag(key, value)
        if "trace_id" in spine:
            # Sentry's own trace context, from OpenTelemetry's IDs: the issue links to the
            # trace in the tracing backend and to the log lines carrying the same trace_id.
            scope.set_context("trace", {"trace_id": spine["trace_id"], "span_id": spine["span_id"]})
        if request:
            event["request"] = dict(request)
            route = request.get("route")
            if route:
                event["transaction"] = route
                event["request"].pop("route")
        if user_ip and self.send_client_ip:
            event["user"] = {"ip_address": user_ip}
        event_id: str | None = client.capture_event(event, hint=hint, scope=scope)
        if event_id is not None:
            self.captured += 1
        return event_id

    def close(self) -> bool:
        """Send what is queued and stop, waiting at most ``shutdown_timeout`` seconds."""
        with self._lock:
            if self._closed or self.client is None:
                self._closed = True
                return True
            self._closed = True
        client = self.client
        # At process exit, every flush shares one deadline: wait only what is left of it.
        wait = exit_flushes.remaining(self.shutdown_timeout)
        return run_with_deadline(
            lambda: client.close(timeout=max(0.0, wait - 0.05)), wait, "sentry-shutdown"
        )


def make_client(config: ErrorsSettings, core: CoreSettings, service: str) -> Any:
    import sentry_sdk

    send_client_ip = config.sentry_send_client_ip

    def before_send(event: Any, hint: Any) -> Any:
        return scrub_event(event, send_client_ip)

    release = f"{service}@{core.service_version}" if core.service_version else None
    extra: dict[str, Any] = {}
    if send_client_ip:
        from sentry_sdk.scrubber import DEFAULT_PII_DENYLIST, EventScrubber

        # Sentry's scrubber removes user.ip_address along with other personal keys; keep it.
        denylist = [key for key in DEFAULT_PII_DENYLIST if key != "ip_address"]
        extra["event_scrubber"] = EventScrubber(pii_denylist=denylist)
    # None for dsn/environment/release: Sentry reads SENTRY_DSN, SENTRY_ENVIRONMENT and
    # SENTRY_RELEASE itself.
    return sentry_sdk.Client(
        dsn=config.sentry_dsn,
        environment=core.environment,
        release=release,
        # Errors only, nothing patched: no integrations, no tracing, no sessions.
        default_integrations=False,
        auto_enabling_integrations=False,
        integrations=[],
        traces_sample_rate=None,
        auto_session_tracking=False,
        # Private data stays home (send_default_pii is off by default: not passed, as newer
        # releases deprecate the option).
        include_local_variables=False,
        max_request_body_size="never",
        max_breadcrumbs=0,
        before_send=before_send,
        # Bounded and quiet: the transport's queue holds 100 events; no extra threads.
        shutdown_timeout=config.sentry_shutdown_timeout,
        enable_backpressure_handling=False,
        send_client_reports=False,
        **extra,
    )
