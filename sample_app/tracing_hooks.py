"""Tracing hooks of the host's own: one attribute each, as a team would add its own.

Turn them on by configuration (docs/tracing.md, "Hooks of your own"), e.g.
``FLASK_OBSERVE_TRACING_REQUEST_HOOK=sample_app.tracing_hooks:on_request``. flask_observe
runs them after its own and guards them: one that raises is logged, the request goes on.
"""

from __future__ import annotations

from typing import Any


def on_request(span: Any, environ: dict[str, Any]) -> None:
    """The server span: which tenant asked (``X-Tenant``), when the caller says."""
    tenant = environ.get("HTTP_X_TENANT")
    if tenant:
        span.set_attribute("app.tenant", str(tenant)[:64])


def on_response(span: Any, status: str, headers: list[tuple[str, str]]) -> None:
    """The server span: the response's content type (a header the conventions name)."""
    for name, value in headers:
        if name.lower() == "content-type":
            span.set_attribute("http.response.header.content-type", [value])


def on_call(span: Any, request: Any) -> None:
    """A call to the platform API: which platform (``/v1/<platform>/…``)."""
    parts = str(getattr(request, "path_url", "")).split("/")
    if len(parts) > 2 and parts[1] == "v1":
        span.set_attribute("app.platform", parts[2])


def on_answer(span: Any, request: Any, response: Any) -> None:
    """A call's answer: its body size, from ``Content-Length``."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit():
        span.set_attribute("http.response.body.size", int(length))


def on_query(
    span: Any, conn: Any, cursor: Any, statement: Any, parameters: Any, context: Any
) -> None:
    """An SQL statement: the rows it changed, as the driver counts them (-1: not known)."""
    rows = getattr(cursor, "rowcount", -1)
    if isinstance(rows, int) and rows >= 0:
        span.set_attribute("app.db.rowcount", rows)
