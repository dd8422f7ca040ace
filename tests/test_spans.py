"""The one-lookup current span (``flask_observe._spans``) answers what OpenTelemetry's
``get_current_span()`` answers, and falls back to it where the internals differ."""

from __future__ import annotations

import types

from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider

from flask_observe._spans import current_span_function


def test_no_span_is_the_invalid_span() -> None:
    current_span = current_span_function(trace)
    assert current_span is not trace.get_current_span  # the fast path is taken here
    assert current_span() is trace.get_current_span() is trace.INVALID_SPAN


def test_recording_and_non_recording_spans_are_found() -> None:
    current_span = current_span_function(trace)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        assert current_span() is trace.get_current_span() is outer
        with tracer.start_as_current_span("inner") as inner:
            assert current_span() is inner
        assert current_span() is outer
    wrapped = trace.NonRecordingSpan(outer.get_span_context())
    with trace.use_span(wrapped):
        assert current_span() is wrapped
    assert current_span() is trace.INVALID_SPAN


def test_a_value_that_is_not_a_span_is_the_invalid_span() -> None:
    current_span = current_span_function(trace)
    key = trace.propagation._SPAN_KEY
    token = context.attach(context.set_value(key, "not a span"))
    try:
        assert current_span() is trace.get_current_span() is trace.INVALID_SPAN
    finally:
        context.detach(token)


def test_an_unknown_trace_module_gets_the_public_function() -> None:
    """A module without OpenTelemetry's internals (another runtime context, a stand-in) is
    answered by its own ``get_current_span``."""
    stand_in = types.ModuleType("stand_in")
    stand_in.get_current_span = lambda: "public"  # type: ignore[attr-defined]
    assert current_span_function(stand_in)() == "public"
