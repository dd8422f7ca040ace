"""What the request path hands to the features: one :class:`RequestRecord` per request, given
to the request hooks of each :class:`Stage` in turn.

The correlation feature's WSGI middleware makes the record, times the request once, and calls
the hooks every feature registered (``Wiring.request_hook``): metrics, diagnostics and the
access log all read the same timing instead of each taking its own.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._internal import FailureLog

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = [
    "ENVIRON_KEY",
    "RECORD_KEY",
    "SPAN_CONTEXT_KEY",
    "Hook",
    "OutboundCall",
    "OutboundHook",
    "RequestRecord",
    "Stage",
    "compose",
    "trace_id_lookup",
]

#: The key under which the request's correlation ID is stored in the WSGI environ.
ENVIRON_KEY = "flask_observe.correlation_id"
#: The key under which the request's :class:`RequestRecord` is stored in the WSGI environ
#: (features that need it during the request, e.g. SQL diagnostics, find it there).
RECORD_KEY = "flask_observe.record"
#: WSGI environ key where tracing leaves the server span's context, for the access line.
SPAN_CONTEXT_KEY = "flask_observe.span_context"


class Stage(enum.IntEnum):
    """When a request hook runs. Hooks of one stage run in the order features registered them.

    - ``START``: before the app is called (in-progress gauges);
    - ``MEASURE``: after the response is sent (metrics, diagnostics; they may add
      :attr:`RequestRecord.fields`);
    - ``LOG``: after every ``MEASURE`` hook (the access line, which writes those fields).
    """

    START = 0
    MEASURE = 1
    LOG = 2


class RequestRecord:
    """What the middleware knows about one request once its response is finished.

    Only what differs on every request is set when one starts; the rest reads the class's
    defaults until a hook sets it (a dozen attribute stores fewer per request).
    """

    #: ``None`` when the middleware only times requests (correlation IDs off).
    correlation_id: str | None
    #: The matched URL rule, ``None`` when no route matched.
    route: str | None = None
    #: Seconds from the start of the request to the end of its response.
    duration: float = 0.0
    #: Of :attr:`duration`, the seconds spent waiting on the client: reading the request
    #: body it sends, writing the response it reads. A slow client's time, not the server's.
    client_wait: float = 0.0
    status: int = 0
    size: int = 0
    failed: bool = False
    #: Trace ID (32 hex digits) of the request's span, when ``trace_lookup`` found one.
    trace_id: str | None = None
    #: Whether the path is on the shared exclusion list; ``None`` until a hook checks.
    excluded: bool | None = None
    #: Extra access-log fields contributed by finish hooks (e.g. ``db_queries``); a hook
    #: adding some sets a dict of its own (never updates this shared ``None``).
    fields: dict[str, Any] | None = None

    def __init__(
        self,
        environ: WSGIEnvironment,
        correlation_id: str | None,
    ) -> None:
        self.environ = environ
        self.correlation_id = correlation_id
        self.start = time.perf_counter()

    @property
    def server_time(self) -> float:
        """Seconds the server spent on the request: :attr:`duration` less the time waiting
        on the client (what the latency SLI measures: a slow upload cannot spend it)."""
        return self.duration - self.client_wait


Hook = Callable[[RequestRecord], None]


class OutboundCall:
    """One outgoing HTTP call (``requests``), as the outbound hooks see it when it is done.

    :ivar url: the URL called (this hop of it: each redirect is a call of its own).
    :ivar status: the response's status, ``None`` when there was no response.
    :ivar error: the exception the call raised, if any.
    :ivar duration: seconds from sending to the response's headers (or the error).
    :ivar headers: the response's headers (rate-limit figures), empty without a response.
    :ivar retries: retries urllib3 made inside the call (its ``Retry`` history).
    """

    __slots__ = ("duration", "error", "headers", "method", "retries", "status", "url")

    def __init__(
        self,
        method: str,
        url: str,
        status: int | None,
        error: BaseException | None,
        duration: float,
        headers: Any,
        retries: int,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.error = error
        self.duration = duration
        self.headers = headers
        self.retries = retries


OutboundHook = Callable[[OutboundCall], None]


def compose(hooks: Sequence[Hook]) -> Hook | None:
    """One hook calling each of ``hooks`` in order; a failing one does not stop the others."""
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]
    failures = FailureLog()
    chain = tuple(hooks)
    # The usual chains unrolled: a loop costs as much as the calls it makes.
    if len(chain) == 3:  # metrics, diagnostics, access line
        first, second, third = chain

        def run_three(record: RequestRecord) -> None:
            try:
                first(record)
            except Exception:
                failures(f"request hook {getattr(first, '__qualname__', first)}")
            try:
                second(record)
            except Exception:
                failures(f"request hook {getattr(second, '__qualname__', second)}")
            try:
                third(record)
            except Exception:
                failures(f"request hook {getattr(third, '__qualname__', third)}")

        return run_three
    if len(chain) == 4:  # with the console's rollups
        first, second, third, fourth = chain

        def run_four(record: RequestRecord) -> None:
            try:
                first(record)
            except Exception:
                failures(f"request hook {getattr(first, '__qualname__', first)}")
            try:
                second(record)
            except Exception:
                failures(f"request hook {getattr(second, '__qualname__', second)}")
            try:
                third(record)
            except Exception:
                failures(f"request hook {getattr(third, '__qualname__', third)}")
            try:
                fourth(record)
            except Exception:
                failures(f"request hook {getattr(fourth, '__qualname__', fourth)}")

        return run_four

    def run_all(record: RequestRecord) -> None:
        for hook in chain:
            try:
                hook(record)
            except Exception:
                failures(f"request hook {getattr(hook, '__qualname__', hook)}")

    return run_all


def trace_id_lookup() -> Callable[[], str | None] | None:
    """A function returning the current OpenTelemetry trace ID (sampled spans only), or
    ``None`` when opentelemetry-api is not installed."""
    from . import _optional

    if _optional.detect("opentelemetry.trace", "trace-ID exemplars") is None:
        return None
    from opentelemetry import trace

    from ._spans import current_span_function

    get_current_span = current_span_function(trace)
    invalid = trace.INVALID_SPAN

    def lookup() -> str | None:
        span = get_current_span()
        if span is invalid:  # no span: the common case without tracing, kept cheap
            return None
        context = span.get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return None
        return format(context.trace_id, "032x")

    return lookup
