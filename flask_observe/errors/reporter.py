"""The Sentry sink of one app: its own ``sentry_sdk.Client``, bound to the scope of each request
and task, and the one ``before_send`` every event it sends goes through.

Binding (:meth:`ErrorReporter.bind`) is what lets the host's ``sentry_sdk.capture_exception``,
``capture_message``, ``set_user``, ``set_tag`` and ``add_breadcrumb`` work inside a view or a
task as they do under ``sentry_sdk.init``, without a process-wide client: a current scope of
the app's own (holding its client) is made current, and a fresh isolation scope is made only
if the code touches one (sentry-sdk creates it lazily). It costs two context-variable sets
and resets per request; a request that never calls Sentry never builds a scope.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .._internal import FailureLog, exit_flushes, run_with_deadline
from .capture import (
    CapturedError,
    ErrorCapture,
    Occurrence,
    current_ids,
    level_name,
    request_details,
)
from .handler import crumbs, record_fields
from .scrub import FILTERED, Scrubber

if TYPE_CHECKING:
    from ..config import CoreSettings
    from .settings import ErrorsSettings

__all__ = ["ErrorReporter", "make_client", "scrub_event"]

_REQUEST_KEYS_DROPPED = ("query_string", "cookies", "data", "env", "headers")
#: Contexts sentry-sdk fills itself, kept as they are (no personal data in them).
_OWN_CONTEXTS = frozenset(("trace", "runtime", "os", "device", "app"))
_EXTRA_LIMIT = 1024


def _scrub_frames(container: Any) -> None:
    values = container.get("values") if isinstance(container, dict) else None
    for value in values or ():
        if not isinstance(value, dict):
            continue
        stacktrace = value.get("stacktrace")
        for frame in (stacktrace or {}).get("frames") or ():
            if isinstance(frame, dict):
                frame.pop("vars", None)
                _scrub_context(frame)


def _scrub_context(frame: dict[str, Any]) -> None:
    """Source lines are code, not data; a secret written into the code is still scrubbed."""
    text = _CONTEXT_SCRUBBER.text
    if isinstance(frame.get("context_line"), str):
        frame["context_line"] = text(frame["context_line"])
    for key in ("pre_context", "post_context"):
        lines = frame.get(key)
        if isinstance(lines, list):
            frame[key] = [text(line) if isinstance(line, str) else line for line in lines]


_CONTEXT_SCRUBBER = Scrubber(send_pii=True)


def scrub_event(
    event: dict[str, Any],
    scrubber: Scrubber,
    *,
    user_fields: tuple[str, ...] = ("id", "username"),
) -> dict[str, Any]:
    """What must never leave, removed from a Sentry event (every event our client sends).

    Request bodies, headers, cookies, query strings and the WSGI environment go; so do
    local variables of every frame. The exception's value, the message, the log entry, tags,
    extra fields, breadcrumbs and contexts the host set go through the scrubber; the user
    keeps ``user_fields`` only."""
    text = scrubber.text
    request = event.get("request")
    if isinstance(request, dict):
        for key in _REQUEST_KEYS_DROPPED:
            request.pop(key, None)
        url = request.get("url")
        if isinstance(url, str):
            request["url"] = url.split("?", 1)[0].split("#", 1)[0]
    user = event.get("user")
    if isinstance(user, dict):
        kept = {k: str(user[k])[:200] for k in user_fields if user.get(k) not in (None, "")}
        if kept:
            event["user"] = kept
        else:
            event.pop("user", None)
    for container in (event.get("exception"), event.get("threads")):
        _scrub_frames(container)
    for value in (event.get("exception") or {}).get("values") or ():
        if isinstance(value, dict) and isinstance(value.get("value"), str):
            value["value"] = text(value["value"])
    if isinstance(event.get("message"), str):
        event["message"] = text(event["message"])
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        logentry.pop("params", None)
        for key in ("message", "formatted"):
            if isinstance(logentry.get(key), str):
                logentry[key] = text(logentry[key])
    tags = event.get("tags")
    if isinstance(tags, dict):
        event["tags"] = {
            str(k): FILTERED if _secret(k) else text(str(v), 200) for k, v in tags.items()
        }
    extra = event.get("extra")
    if isinstance(extra, dict):
        event["extra"] = scrubber.fields(extra)
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        for name, context in list(contexts.items()):
            if name not in _OWN_CONTEXTS and isinstance(context, dict):
                contexts[name] = scrubber.fields(context)
    breadcrumbs = event.get("breadcrumbs")
    values = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else None
    for crumb in values or ():
        if not isinstance(crumb, dict):
            continue
        if isinstance(crumb.get("message"), str):
            crumb["message"] = text(crumb["message"])
        if isinstance(crumb.get("data"), dict):
            crumb["data"] = scrubber.fields(crumb["data"])
    return event


def _secret(name: Any) -> bool:
    from .scrub import secret_key

    return secret_key(str(name))


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render_breadcrumbs(records: Iterable[Any], level: int) -> list[dict[str, Any]]:
    """Sentry breadcrumbs from the log records kept at ``level`` or above (scrubbed later,
    with the event)."""
    out = []
    for record in list(records):
        if record.levelno < level:
            continue
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        crumb: dict[str, Any] = {
            "type": "log",
            "category": record.name,
            "level": level_name(record.levelno),
            "message": message,
            "timestamp": _timestamp(record.created),
        }
        fields = record_fields(record)
        if fields:
            crumb["data"] = {k: _plain(v) for k, v in fields.items()}
        out.append(crumb)
    return out


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:_EXTRA_LIMIT]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in list(value.items())[:50]}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value[:50]]
    try:
        return str(value)[:_EXTRA_LIMIT]
    except Exception:
        return f"<unprintable {type(value).__name__}>"


class ErrorReporter:
    """Sends one app's errors to Sentry (``Observe.handle(ErrorReporter, app)``).

    :param client: our own ``sentry_sdk.Client``, or ``None`` when the host's Sentry setup
        does the reporting (then only errors captured by hand are passed to it).
    :param trace_url: a link template with ``{trace_id}`` (Jaeger's trace page), or ``None``.
    """

    def __init__(
        self,
        client: Any,
        *,
        service: str,
        scrubber: Scrubber,
        send_client_ip: bool,
        shutdown_timeout: float,
        breadcrumb_level: int | None = None,
        max_breadcrumbs: int = 100,
        trace_url: str | None = None,
    ) -> None:
        self.client = client
        self.service = service
        self.scrubber = scrubber
        self.send_client_ip = send_client_ip
        self.shutdown_timeout = shutdown_timeout
        self.breadcrumb_level = breadcrumb_level if max_breadcrumbs > 0 else None
        self.max_breadcrumbs = max_breadcrumbs
        self._crumb_room = max_breadcrumbs if self.breadcrumb_level is not None else 0
        self.trace_url = trace_url
        self.user_fields: tuple[str, ...] = ("id", "username")
        if scrubber.send_pii:
            self.user_fields += ("email",)
        if scrubber.send_pii or send_client_ip:
            self.user_fields += ("ip_address",)
        #: Events handed to Sentry's transport.
        self.captured = 0
        self._failures = FailureLog()
        self._closed = False
        self._lock = threading.Lock()
        self._template: Any = None
        #: The app's capture layer: errors the host sends with sentry_sdk reach its listeners.
        self.capture: ErrorCapture | None = None
        if client is not None:
            import sentry_sdk
            from sentry_sdk.scope import ScopeType

            # The current scope of every request and task of this app: it holds the client.
            # Nothing is written to it (sentry-sdk's top-level API writes to the isolation
            # scope, which is fresh per request); a `new_scope()` forks it.
            template = sentry_sdk.Scope(ty=ScopeType.CURRENT)
            # Assigned, not set_client(): that also rewrites the global scope's attributes.
            template.client = client
            self._template = template
            from sentry_sdk import scope as scope_module

            self._current_var: contextvars.ContextVar[Any] = scope_module._current_scope
            self._isolation_var: contextvars.ContextVar[Any] = scope_module._isolation_scope

    # -- binding ------------------------------------------------------------------------

    def bind(self) -> tuple[Any, Any, Any] | None:
        """Make this app's client current for the request or task starting now (and its
        breadcrumbs); returns what :meth:`unbind` takes. On every request: kept to three
        context-variable sets."""
        template = self._template
        if template is None:
            return None
        return (
            self._current_var.set(template),
            self._isolation_var.set(None),
            crumbs.set(deque(maxlen=self._crumb_room) if self._crumb_room else None),
        )

    def unbind(self, tokens: tuple[Any, Any, Any] | None) -> None:
        if tokens is None:
            return
        current, isolation, kept = tokens
        try:
            crumbs.reset(kept)
            self._isolation_var.reset(isolation)
            self._current_var.reset(current)
        except ValueError:  # reset in another context (a task's signals, say)
            for var, token in ((crumbs, kept), (self._isolation_var, isolation)):
                old = token.old_value
                var.set(None if old is contextvars.Token.MISSING else old)
            old = current.old_value
            self._current_var.set(None if old is contextvars.Token.MISSING else old)

    def _bound(self) -> bool:
        import sentry_sdk

        return sentry_sdk.get_client() is self.client

    # -- the sink -------------------------------------------------------------------------

    def send(self, error: CapturedError, occurrence: Occurrence) -> str | None:
        """Report one captured error; returns the event ID (``None`` if not sent)."""
        if self.client is None:
            return self._to_host(occurrence, error)
        import sentry_sdk
        from sentry_sdk.utils import event_from_exception

        client = self.client
        hint: dict[str, Any]
        if occurrence.exc_info is not None:
            event, hint = event_from_exception(
                occurrence.exc_info,
                client_options=client.options,
                mechanism={"type": occurrence.mechanism, "handled": occurrence.handled},
            )
        else:
            event, hint = {}, {}
            if occurrence.record is None:
                event["message"] = error.message
        event["level"] = occurrence.level  # type: ignore[typeddict-item]
        record = occurrence.record
        if record is not None:
            event["logger"] = record.name
            event["logentry"] = {"message": record.getMessage()}
            if occurrence.fields:
                event["extra"] = {k: _plain(v) for k, v in occurrence.fields.items()}
        if occurrence.tags:
            event["tags"] = dict(occurrence.tags)
        if occurrence.request:
            request = dict(occurrence.request)
            route = request.pop("route", None)
            event["request"] = request
            if route:
                event["transaction"] = route
        hint["flask_observe"] = True
        if self._bound():
            # Inside a request or task: the host's set_user, set_tag, add_breadcrumb apply.
            event_id = sentry_sdk.get_current_scope().capture_event(event, hint=hint)
        else:
            scope = sentry_sdk.Scope()
            event_id = client.capture_event(event, hint=hint, scope=scope)
        if event_id is not None:
            self.captured += 1
        return event_id

    def _to_host(self, occurrence: Occurrence, error: CapturedError) -> str | None:
        """With the host's own Sentry client: its integrations report unhandled and logged
        errors; only what was captured by hand is passed to it, with the IDs as tags."""
        if occurrence.mechanism != "manual":
            return None
        import sentry_sdk

        tags = dict(occurrence.tags)
        if occurrence.exc_info is not None:
            return sentry_sdk.capture_exception(occurrence.exc_info, tags=tags)
        return sentry_sdk.capture_message(
            error.message,
            level=occurrence.level,  # type: ignore[arg-type]
            tags=tags,
        )

    # -- every event of our client --------------------------------------------------------

    def before_send(self, event: dict[str, Any], hint: Mapping[str, Any]) -> dict[str, Any]:
        """Our client's ``before_send``: the spine, the request, the breadcrumbs, then the
        scrubber. Events the host captured with ``sentry_sdk`` come through here too."""
        try:
            self._enrich(event, hint)
            capture = self.capture
            if capture is not None and not hint.get("flask_observe"):
                exc_info = hint.get("exc_info")
                message = event.get("message") or (event.get("logentry") or {}).get("message")
                capture.seen_by_sentry(
                    exc_info if isinstance(exc_info, tuple) else None,
                    str(message or ""),
                    str(event.get("level") or "error"),
                )
        except Exception:
            self._failures("adding IDs and breadcrumbs to a Sentry event")
        return scrub_event(event, self.scrubber, user_fields=self.user_fields)

    def _enrich(self, event: dict[str, Any], hint: Mapping[str, Any]) -> None:
        tags = event.setdefault("tags", {})
        spine = spine_tags()
        tags.update(spine)
        tags.setdefault("service", self.service)
        trace_id = spine.get("trace_id")
        contexts = event.setdefault("contexts", {})
        if trace_id is not None:
            # Sentry's own trace context, from OpenTelemetry's IDs: the issue links to the
            # trace in the tracing backend and to the log lines carrying the same trace_id.
            contexts["trace"] = {"trace_id": trace_id, "span_id": spine["span_id"]}
            if self.trace_url:
                contexts["tracing"] = {"trace_url": self.trace_url.replace("{trace_id}", trace_id)}
        details, address = request_details()
        if "request" not in event and details:
            route = details.pop("route", None)
            event["request"] = details
            if route and not event.get("transaction"):
                event["transaction"] = route
        if address and self.send_client_ip:
            # After the scope's user (sentry_sdk.set_user) was applied: it comes first.
            user = event.get("user")
            if not isinstance(user, dict):
                user = event["user"] = {}
            user.setdefault("ip_address", address)
        records = crumbs.get()
        if records and self.breadcrumb_level is not None:
            breadcrumbs = event.get("breadcrumbs")
            if not isinstance(breadcrumbs, dict):
                breadcrumbs = event["breadcrumbs"] = {}
            values = list(breadcrumbs.get("values") or ()) + render_breadcrumbs(
                records, self.breadcrumb_level
            )
            values.sort(key=lambda crumb: str(crumb.get("timestamp", "")))
            breadcrumbs["values"] = values[-self.max_breadcrumbs :]

    # -- shutdown -------------------------------------------------------------------------

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


def spine_tags() -> dict[str, str]:
    """``correlation_id``, ``trace_id`` and ``span_id`` of the current request or task."""
    from ..context import get_correlation_id

    tags: dict[str, str] = {}
    correlation_id = get_correlation_id()
    if correlation_id is not None:
        tags["correlation_id"] = correlation_id
    trace_id, span_id = current_ids()
    if trace_id is not None and span_id is not None:
        tags["trace_id"] = trace_id
        tags["span_id"] = span_id
    return tags


def make_client(
    config: ErrorsSettings, core: CoreSettings, service: str, reporter_hook: Any
) -> Any:
    """Our own Sentry client: errors only, nothing patched, private data kept home.

    :param reporter_hook: the ``before_send`` (the reporter's, once it exists).
    """
    import sentry_sdk

    version = config.sentry_release
    if version is None and core.service_version:
        version = f"{service}@{core.service_version}"
    extra: dict[str, Any] = {}
    if config.sentry_send_client_ip or config.sentry_send_pii:
        from sentry_sdk.scrubber import DEFAULT_PII_DENYLIST, EventScrubber

        # Sentry's scrubber removes user.ip_address along with other personal keys; keep it.
        denylist = [key for key in DEFAULT_PII_DENYLIST if key != "ip_address"]
        extra["event_scrubber"] = EventScrubber(pii_denylist=denylist)
    if config.sentry_server_name is not None:
        extra["server_name"] = config.sentry_server_name
    # None for dsn/environment/release: Sentry reads SENTRY_DSN, SENTRY_ENVIRONMENT and
    # SENTRY_RELEASE itself.
    return sentry_sdk.Client(
        dsn=config.sentry_dsn,
        environment=config.sentry_environment or core.environment,
        release=version,
        sample_rate=config.sentry_sample_rate,
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
        # Breadcrumbs the host adds with sentry_sdk.add_breadcrumb; log lines are kept by
        # flask_observe's own handler (one append each) and added in before_send.
        max_breadcrumbs=config.sentry_max_breadcrumbs,
        before_send=reporter_hook,
        # Bounded and quiet: the transport's queue holds 100 events; no extra threads.
        shutdown_timeout=config.sentry_shutdown_timeout,
        enable_backpressure_handling=False,
        send_client_reports=False,
        **extra,
    )
