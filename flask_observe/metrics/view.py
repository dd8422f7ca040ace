"""The ``/metrics`` endpoint (optionally behind the shared auth)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, Response, request

if TYPE_CHECKING:
    from ..extension import ObserveState

__all__ = ["ENDPOINT", "register"]

ENDPOINT = "flask_observe_metrics"


def register(app: Flask, state: ObserveState) -> None:
    """Serve ``state.metrics`` at ``OBSERVE_METRICS_PATH``."""
    metrics = state.metrics
    assert metrics is not None

    def metrics_view() -> Response:
        body, content_type = metrics.render(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    view = state.auth.require(metrics_view) if state.config.metrics_auth else metrics_view
    app.add_url_rule(state.config.metrics_path, ENDPOINT, view, methods=["GET"])
