"""The current OpenTelemetry span, read in one context-variable lookup.

``opentelemetry.trace.get_current_span()`` goes through three functions (``get_value``,
``get_current``, the runtime context's ``get_current``) to read one ``ContextVar``, and the
request path asks for it on every log line and once more for the metrics' exemplar. With the
default runtime context (``ContextVarsRuntimeContext``, the only one OpenTelemetry ships), the
variable is read here directly; any other runtime context (``OTEL_PYTHON_CONTEXT``), or an
OpenTelemetry whose internals look different, gets the public function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType
from typing import Any

__all__ = ["current_span_function"]


def current_span_function(trace: ModuleType) -> Callable[[], Any]:
    """A function returning what ``trace.get_current_span()`` returns (``INVALID_SPAN`` when no
    span is current), in one context-variable lookup where OpenTelemetry allows it.

    :param trace: the imported ``opentelemetry.trace`` module.
    """
    public: Callable[[], Any] = trace.get_current_span
    context_module = sys.modules.get("opentelemetry.context")
    propagation = sys.modules.get("opentelemetry.trace.propagation")
    runtime = getattr(context_module, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    key = getattr(propagation, "_SPAN_KEY", None)
    span_type = getattr(trace, "Span", None)
    invalid = getattr(trace, "INVALID_SPAN", None)
    if (
        type(runtime).__name__ != "ContextVarsRuntimeContext"
        or not isinstance(variable, ContextVar)
        or not isinstance(key, str)
        or not isinstance(span_type, type)
        or invalid is None
        # the public function must still read the same variable and key
        or getattr(propagation, "get_current_span", None) is not public
    ):
        return public
    get = variable.get

    def current_span() -> Any:
        span = get().get(key)
        if span is None or not isinstance(span, span_type):
            return invalid
        return span

    return current_span
