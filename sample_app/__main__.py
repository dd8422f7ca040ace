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
    base = f"http://{args.host}:{args.port}"
    scraped = app.config.get("SCRAPER_PLATFORM_URL")
    platform_note = "" if args.no_platform else f" (the demo platform it scrapes: {scraped})"
    print(f" * The scraper: {base}/{platform_note}", file=sys.stderr)
    urls = Observe.urls(app)
    if urls:
        print(" * flask_observe serves:", file=sys.stderr)
        for name, url in _openable(urls):
            print(f"     {name:<12} {base}{url}", file=sys.stderr)
    if token is not None:
        use = (
            "the log viewer's sign-in, /health details"
            if "logviewer" in urls
            else "/health details"
        )
        print(
            f" * Access token for this process ({use}; set FLASK_OBSERVE_AUTH_TOKEN to choose"
            f" one): {token}",
            file=sys.stderr,
        )
    sys.stderr.flush()
    app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)


#: How the start-up lines name the paths of ``Observe.urls()``, in this order; any other name
#: (a feature added later) follows under its own name.
_LABELS = {
    "logviewer": ("log viewer", ""),
    "health": ("health", ""),
    "readiness": ("readiness", ""),
    "liveness": ("liveness", ""),
    "metrics": ("metrics", ""),
    "logs_api": ("logs API", "/files"),  # the prefix itself is no page
}


def _openable(urls: dict[str, str]) -> list[tuple[str, str]]:
    """``(label, path)`` for each URL flask_observe serves, the log viewer first."""
    known = [
        (label, urls[name] + suffix) for name, (label, suffix) in _LABELS.items() if name in urls
    ]
    others = [(name.replace("_", " "), path) for name, path in urls.items() if name not in _LABELS]
    return known + others


if __name__ == "__main__":
    main()
