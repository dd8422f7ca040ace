"""The ``/metrics`` endpoint (optionally behind the shared auth)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue

from .._bodies import refuse_large_body

if TYPE_CHECKING:
    from ..auth import Authorizer
    from . import Metrics

__all__ = ["ENDPOINT", "register"]

ENDPOINT = "flask_observe_metrics"


def register(app: Flask, metrics: Metrics, path: str, auth: Authorizer | None) -> None:
    """Serve ``metrics`` at ``path``, behind ``auth`` when given."""

    def metrics_view() -> ResponseReturnValue:
        body, content_type = metrics.render(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    guarded = auth.require(metrics_view) if auth is not None else metrics_view

    def view() -> ResponseReturnValue:
        return refuse_large_body() or guarded()

    app.add_url_rule(path, ENDPOINT, view, methods=["GET"])
