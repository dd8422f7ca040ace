"""Apps run in a subprocess by the error-reporting tests (Sentry's setup is process-wide).

``python -m tests.apps.sentry_peer_app MODE DSN`` prints one JSON line with what it did:

- ``leaky``: the stock ``sentry_sdk.init`` with ``FlaskIntegration`` (``send_default_pii``
  off, other options default), no flask_observe — the control that shows the privacy
  canaries do leak when nothing keeps them home;
- ``host``: the host initialises Sentry itself, then ``Observe(app)`` — flask_observe must
  leave the host's client in charge and only add its IDs to the events;
- ``host-manual``: the same, and the view captures a handled error with
  ``flask_observe.capture_exception`` before it fails: the host's client sends both.
"""

from __future__ import annotations

import json
import sys

from flask import Flask, request

from tests.canaries import CANARIES, canary_request


def make_failing_app(manual: bool = False) -> Flask:
    app = Flask("sentry-peer")

    @app.post("/fail")
    def fail() -> str:
        if manual:
            from flask_observe import capture_exception

            try:
                raise LookupError("handled before failing")
            except LookupError as exc:
                capture_exception(exc, step="lookup")
        body = request.get_json()
        secret_local = CANARIES["local"]
        raise RuntimeError(f"failed on purpose ({len(body)} fields, {len(secret_local)} chars)")

    return app


def main(mode: str, dsn: str) -> None:
    import sentry_sdk

    app = make_failing_app(manual=mode == "host-manual")
    if mode == "leaky":
        from sentry_sdk.integrations.flask import FlaskIntegration

        sentry_sdk.init(dsn=dsn, integrations=[FlaskIntegration()], send_default_pii=False)
    elif mode in ("host", "host-manual"):
        sentry_sdk.init(dsn=dsn, traces_sample_rate=None)
        from flask_observe import Observe

        app.config["OBSERVE_LOG_STDOUT"] = False
        Observe(app)
    else:
        raise SystemExit(f"unknown mode {mode}")
    response = canary_request(app.test_client(), "/fail", rid="peer-rid-1")
    sentry_sdk.flush(timeout=5)
    print(json.dumps({"status": response.status_code}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
