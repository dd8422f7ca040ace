"""What leaves the process: query strings and client addresses are removed from spans.

The access log leaves the query string and (by default) the client's address out of its lines;
the same goes for spans: :func:`redact_span` runs on the export thread, on each span of a batch,
before the exporter sees it (``OBSERVE_TRACING_REDACT``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

__all__ = ["PRIVATE_ATTRIBUTES", "redact_attributes", "redact_span"]

#: Attributes of a SERVER span that hold the client's address (old and new conventions).
_CLIENT_ADDRESS = frozenset(
    (
        "net.peer.ip",
        "net.peer.port",
        "net.sock.peer.addr",
        "net.sock.peer.port",
        "http.client_ip",
        "client.address",
        "client.port",
        "network.peer.address",
        "network.peer.port",
    )
)
#: Attributes holding a URL or target whose query string is removed; ``url.query`` is dropped.
_WITH_QUERY = frozenset(("http.target", "http.url", "url.full"))
_PRIVATE = _CLIENT_ADDRESS | _WITH_QUERY | {"url.query"}
#: Every attribute :func:`redact_span` may remove or shorten.
PRIVATE_ATTRIBUTES = _PRIVATE


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` without query strings (URLs and targets keep their path) and, for a server
    span, without the client's address; the span itself when there is nothing to remove."""
    attributes = span.attributes
    if not attributes:
        return span
    private = _PRIVATE.intersection(attributes)
    if not private:
        return span
    server = span.kind is SpanKind.SERVER
    kept: dict[str, Any] | None = None
    for key in private:
        if key == "url.query" or (server and key in _CLIENT_ADDRESS):
            if kept is None:
                kept = _copy_attributes(span, attributes)
            del kept[key]
        elif key in _WITH_QUERY:
            value = attributes[key]
            if isinstance(value, str) and "?" in value:
                if kept is None:
                    kept = _copy_attributes(span, attributes)
                kept[key] = value.split("?", 1)[0]
    if kept is None:  # e.g. a client span whose URL has no query string
        return span
    return _with_attributes(span, kept)


def redact_attributes(attributes: Mapping[str, Any], server: bool) -> Mapping[str, Any]:
    """The same removals as :func:`redact_span`, on a span's attributes (``server``: the
    span is a SERVER span); ``attributes`` itself when there is nothing to remove."""
    private = _PRIVATE.intersection(attributes)
    if not private:
        return attributes
    # Copied at the first change (a client span's URL without a query string has none).
    kept: dict[str, Any] | None = None
    for key in private:
        if key == "url.query" or (server and key in _CLIENT_ADDRESS):
            if kept is None:
                kept = dict(attributes)
            del kept[key]
        elif key in _WITH_QUERY:
            value = attributes[key]
            if isinstance(value, str) and "?" in value:
                if kept is None:
                    kept = dict(attributes)
                kept[key] = value.split("?", 1)[0]
    return attributes if kept is None else kept


# Every server span is redacted (it carries the client's address), on the export thread, where
# its CPU still competes with requests for the GIL. The SDK's public surface costs about 5.5 µs
# a span here (a Python-level read of each attribute, a constructor reading every property);
# reading the span's own state costs about 2.3 µs. Both fast paths check that the state is the
# one they know, and fall back to the public surface otherwise.


def _copy_attributes(span: ReadableSpan, attributes: Any) -> dict[str, Any]:
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return dict(inner) if type(inner) is dict else dict(attributes)


def _with_attributes(span: ReadableSpan, attributes: dict[str, Any]) -> ReadableSpan:
    state = vars(span)
    if type(span) is ReadableSpan and "_attributes" in state:
        copy = ReadableSpan.__new__(ReadableSpan)
        vars(copy).update(state)
        copy._attributes = attributes
        return copy
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
