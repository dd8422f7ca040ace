"""``python -m sample_app``: serve the scraper on 127.0.0.1:5000 and the demo platform API
next to it (127.0.0.1:5001), on embedded defaults: SQLite in the instance folder, JSON logs in
``./logs``, no external service needed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading

from werkzeug.serving import make_server

from flask_observe import Observe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sample_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--platform-port", type=int, default=5001)
    parser.add_argument(
        "--no-platform",
        action="store_true",
        help="do not serve the demo platform (FLASK_SCRAPER_PLATFORM_URL points elsewhere)",
    )
    parser.add_argument("--platform-latency-ms", type=float, default=25.0)
    parser.add_argument("--platform-failure-rate", type=float, default=0.1)
    args = parser.parse_args(argv)

    from . import create_app
    from .platform import create_platform_app

    config = {}
    if not args.no_platform and "FLASK_SCRAPER_PLATFORM_URL" not in os.environ:
        config["SCRAPER_PLATFORM_URL"] = f"http://{args.host}:{args.platform_port}"
    token = None
    if not (
        os.environ.get("FLASK_OBSERVE_AUTH_TOKEN") or os.environ.get("FLASK_OBSERVE_AUTH_CALLBACK")
    ):
        # One process, on a laptop: a token of its own for the log viewer and /health
        # details, new at every start, printed here and never logged.
        token = config["OBSERVE_AUTH_TOKEN"] = secrets.token_urlsafe(24)
    app = create_app(config)
    if not args.no_platform:
        # Same log destination as the app: both write to logs/app.log, told apart by `service`.
        platform = create_platform_app(
            latency_ms=args.platform_latency_ms,
            failure_rate=args.platform_failure_rate,
            OBSERVE_LOG_DIR=app.config["OBSERVE_LOG_DIR"],
            OBSERVE_LOG_STDOUT=app.config.get("OBSERVE_LOG_STDOUT", True),
        )
        server = make_server(args.host, args.platform_port, platform, threaded=True)
        threading.Thread(target=server.serve_forever, name="demo-platform", daemon=True).start()
    viewer = Observe.urls(app).get("logviewer")
    if token is not None:
        use = (
            f"Log viewer: {viewer} — access token (also for /health details)"
            if viewer
            else "Access token for /health details"
        )
        print(
            f" * {use} for this process (set FLASK_OBSERVE_AUTH_TOKEN to choose one): {token}",
            file=sys.stderr,
            flush=True,
        )
    if viewer:
        print(
            f" * Log viewer on http://{args.host}:{args.port}{viewer}", file=sys.stderr, flush=True
        )
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
