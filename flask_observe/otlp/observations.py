"""What the OTLP metrics (:mod:`.metrics`) say of a request, an outgoing call and a query
(the semantic conventions' attributes), and the process's own observations (CPU time, memory,
circuit breakers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

__all__ = [
    "METHODS",
    "OTHER",
    "breaker_observations",
    "client_attributes",
    "cpu_time",
    "current_span_context",
    "db_attributes",
    "memory_observations",
    "memory_usage",
    "server_attributes",
]

#: The conventions' known HTTP methods; any other is :data:`OTHER`.
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
OTHER = "_OTHER"
_DB_SYSTEMS = {"mssql": "microsoft.sql_server", "oracle": "oracle.db", "postgresql": "postgresql"}
_BREAKER_STATES = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}


def server_attributes(
    method: str, route: str | None, status: int, scheme: str, protocol: str
) -> dict[str, Any]:
    attributes: dict[str, Any] = {"http.request.method": method, "url.scheme": scheme}
    if route is not None:
        attributes["http.route"] = route
    if 100 <= status <= 599:
        attributes["http.response.status_code"] = status
    if status >= 500 or status == 0:
        attributes["error.type"] = str(status) if status else OTHER
    if protocol.startswith("HTTP/"):
        attributes["network.protocol.version"] = protocol[5:]
    return attributes


def client_attributes(
    method: str, address: str, port: int | None, status: int | None, error_type: str | None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {"http.request.method": method, "server.address": address}
    if port is not None:
        attributes["server.port"] = port
    if status is not None:
        attributes["http.response.status_code"] = status
    if error_type is not None:
        attributes["error.type"] = error_type
    return attributes


def db_attributes(engine: Any, verb: str) -> dict[str, Any]:
    url = engine.url
    dialect = str(getattr(engine.dialect, "name", "") or url.get_backend_name())
    attributes: dict[str, Any] = {
        "db.system.name": _DB_SYSTEMS.get(dialect, dialect),
        "db.operation.name": verb,
    }
    if dialect != "sqlite":  # SQLite's database is a file path, not a name
        if url.database:
            attributes["db.namespace"] = str(url.database)
        if url.host:
            attributes["server.address"] = str(url.host)
        if url.port:
            attributes["server.port"] = int(url.port)
    return attributes


def current_span_context() -> Any:
    """The current span's context when it is sampled (an exemplar), else ``None``."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return context if context.is_valid and context.trace_flags & 1 else None


def cpu_time(options: CallbackOptions) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    times = os.times()
    yield Observation(times.user, {"cpu.mode": "user"})
    yield Observation(times.system, {"cpu.mode": "system"})


def memory_usage() -> int | None:
    """Resident bytes of this process (psutil, or ``/proc/self/statm``), ``None`` if unknown."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def memory_observations() -> list[Observation]:
    from opentelemetry.metrics import Observation

    rss = memory_usage()
    return [] if rss is None else [Observation(rss)]


def breaker_observations(breakers: Callable[[], Mapping[str, Any]]) -> list[Observation]:
    from opentelemetry.metrics import Observation

    return [
        Observation(_BREAKER_STATES.get(str(b.current_state), 0), {"flask_observe.breaker": name})
        for name, b in breakers().items()
    ]
