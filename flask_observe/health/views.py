"""The health blueprint: ``<prefix>/live``, ``/ready``, ``/startup`` and ``<prefix>``.

200 for ``pass`` and ``warn``, 503 for ``fail``, ``Content-Type: application/health+json``.
Callers without credentials (``Observe.state(app).auth``) get ``{"status": …}`` only; a caller
whose wrong tokens got it throttled gets ``429`` (no body is read: ``413`` for a large one).
"""

from __future__ import annotations

import math
import time

import orjson
from flask import Blueprint, Response

from .._bodies import refuse_large_body
from .._internal import FailureLog
from ..auth import Authorizer
from .checks import LIVENESS, READINESS, STARTUP, Status
from .report import MEDIA_TYPE, Identity, document
from .results import HealthReport
from .runner import HealthRunner

__all__ = ["health_blueprint"]

BLUEPRINT_NAME = "observe_health"


def health_blueprint(
    runner: HealthRunner,
    identity: Identity,
    auth: Authorizer,
    *,
    url_prefix: str = "/health",
    public_details: bool = False,
) -> Blueprint:
    """The blueprint serving ``runner``'s probes under ``url_prefix``."""
    bp = Blueprint(BLUEPRINT_NAME, __name__, url_prefix=url_prefix)
    bp.before_request(refuse_large_body)
    failures = FailureLog()

    def respond(group: str | None) -> Response:
        try:
            decision = None if public_details else auth.decide()
            if decision is not None and decision.status == 429:
                return auth.deny(decision)
            details = decision is None or decision.granted
            report = runner.run(group, trends=details and group is None)
            body = orjson.dumps(document(report, identity, details=details))
            return _response(body, report, private=details)
        except Exception:
            failures(f"the health endpoint ({group or 'full report'})")
            body = orjson.dumps({"status": "fail", "output": "the health check itself failed"})
            return Response(body, status=503, mimetype=MEDIA_TYPE)

    @bp.get("/live")
    def live() -> Response:
        """The process can serve. Runs only checks in the liveness group (none by default)."""
        return respond(LIVENESS)

    @bp.get("/ready")
    def ready() -> Response:
        """The critical dependencies answer: 503 when one fails."""
        return respond(READINESS)

    @bp.get("/startup")
    def startup() -> Response:
        """Start-up work is done (see ``observe.startup_complete``)."""
        return respond(STARTUP)

    @bp.get("", strict_slashes=False)
    def full() -> Response:
        """Every check, the uptime and the health score."""
        return respond(None)

    return bp


def _response(body: bytes, report: HealthReport, *, private: bool) -> Response:
    status = 503 if report.status is Status.FAIL else 200
    response = Response(body, status=status, mimetype=MEDIA_TYPE)
    # The draft asks for a freshness lifetime: how long the answer's results stay cached here,
    # so a cache in front reuses it exactly as long as this server would give the same one (0
    # when a result is read at each request: no checks, the start-up flag, breaker states).
    # must-revalidate: a stale answer is never served, even with this server unreachable (a
    # cache may otherwise answer "pass" for a dead service, RFC 9111 section 4.2.4).
    now = time.time()
    fresh = min((r.timestamp + r.ttl - now for r in report.results), default=0.0)
    max_age = max(0, math.floor(fresh))
    response.headers["Cache-Control"] = (
        f"{'private' if private else 'public'}, max-age={max_age}, must-revalidate"
    )
    response.headers["Vary"] = "Authorization, Cookie"
    return response
