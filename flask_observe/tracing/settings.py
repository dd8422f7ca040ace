"""Keys of the tracing feature (OpenTelemetry, docs/tracing.md).

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import (
    boolean,
    choice,
    import_callable,
    key,
    number,
    opt_boolean,
    opt_ratio,
    opt_text,
    subset,
)

TRACING_EXPORTERS = ("otlp-grpc", "otlp-http", "console", "none")
TRACING_INSTRUMENTATIONS = ("flask", "requests", "sqlalchemy", "celery", "redis")
SEMCONV = ("stable", "old", "both")


def trace_url(value: Any) -> str | None:
    """A link template to a trace in the tracing UI, with ``{trace_id}``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.match(r"https?://[^\s/]+", value.strip()):
        raise ValueError("expected an http(s) URL with '{trace_id}' in it")
    if "{trace_id}" not in value:
        raise ValueError("expected an http(s) URL with '{trace_id}' in it")
    return value.strip()


Hook = Callable[..., object]


@dataclass(frozen=True)
class TracingSettings:
    """Keys of the tracing feature (OpenTelemetry, docs/tracing.md)."""

    #: ``None``: on when an OTLP endpoint is configured (``OBSERVE_TRACING_ENDPOINT``,
    #: ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or an
    #: exporter other than ``none`` is named.
    tracing_enabled: bool | None = key(None, opt_boolean)
    #: ``otlp-grpc``, ``otlp-http``, ``console`` or ``none``; ``None``: OTLP when an endpoint
    #: is configured (over ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``, gRPC by default), else none.
    tracing_exporter: str | None = key(None, choice(*TRACING_EXPORTERS, optional=True))
    #: Collector address; ``None`` leaves it to ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``.
    tracing_endpoint: str | None = key(None, opt_text)
    #: Share of new traces recorded (parent-based: a request whose caller sampled is
    #: recorded); ``None`` leaves it to ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``.
    tracing_sample_rate: float | None = key(None, opt_ratio)
    #: Libraries traced when installed.
    tracing_instrumentations: tuple[str, ...] = key(
        TRACING_INSTRUMENTATIONS, subset(TRACING_INSTRUMENTATIONS)
    )
    #: Record client spans (SQL, HTTP, Redis) that have no parent span (start-up queries,
    #: broker polling); off by default, they make one trace each.
    tracing_root_client_spans: bool = key(False, boolean)
    #: Remove query strings and the client's address from span attributes before export.
    tracing_redact: bool = key(True, boolean)
    #: Add a ``traceresponse`` header (W3C Trace Context level 2) to every traced response.
    tracing_response_header: bool = key(False, boolean)
    #: Longest wait for queued spans at shutdown and process exit, in seconds.
    tracing_shutdown_timeout: float = key(2.0, number(0.0))
    #: Attribute names: ``stable`` (the current conventions), ``old`` (the names of before)
    #: or ``both``; ``None``: ``OTEL_SEMCONV_STABILITY_OPT_IN`` when set, else ``stable``.
    tracing_semconv: str | None = key(None, choice(*SEMCONV, optional=True))
    #: Link to a trace in the tracing UI (``http://jaeger:16686/trace/{trace_id}``): on
    #: Sentry events.
    tracing_trace_url: str | None = key(None, trace_url)
    #: ``hook(span, environ)`` on each Flask server span as the request starts.
    tracing_request_hook: Hook | None = key(None, import_callable)
    #: ``hook(span, status, response_headers)`` on each Flask server span at the response.
    tracing_response_hook: Hook | None = key(None, import_callable)
    #: ``hook(span, request)`` on each ``requests`` client span before it is sent.
    tracing_client_request_hook: Hook | None = key(None, import_callable)
    #: ``hook(span, request, response)`` on each ``requests`` client span at the answer.
    tracing_client_response_hook: Hook | None = key(None, import_callable)
    #: ``hook(span, conn, cursor, statement, parameters, context)`` on each SQL span.
    tracing_query_hook: Hook | None = key(None, import_callable)
