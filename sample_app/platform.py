"""The demo platform API: a stand-in for a social network's API, so the scraper runs offline
and still makes real HTTP calls.

It is a Flask app of its own (service ``demo-platform``, with its own ``Observe``), served on
a second port, so traces and logs show two services talking. Data is made up but stable: an
account's numbers derive from its handle and grow slowly with time. Handles starting with
``ghost`` do not exist (404). Latency and failure rate are set at start-up and can be changed
while it runs (``PUT /admin/chaos``), to see what the scraper and the observability around it
do when the platform is slow or broken.

Run it alone: ``python -m sample_app.platform --port 5001``.
"""

from __future__ import annotations

import argparse
import logging
import random
import threading
import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any

from flask import Flask, abort, jsonify, request

from flask_observe import Observe

from .models import PLATFORMS

logger = logging.getLogger("demo_platform")

EXTENSION_KEY = "demo_platform"


@dataclass
class Chaos:
    """How badly the platform behaves: added latency and the share of requests that fail."""

    latency_ms: float = 0.0
    failure_rate: float = 0.0
    #: Status code of a failed request (503 by default; 429 to play rate limiting).
    failure_status: int = 503
    #: Requests allowed per rate-limit window, like the real platforms' APIs announce in
    #: ``X-RateLimit-*`` headers; over it: 429 with ``Retry-After``.
    rate_limit: int = 100_000
    rate_window_seconds: float = 900.0


class PlatformState:
    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.lock = threading.Lock()
        self.random = random.Random()
        self.window_start = time.time()
        self.used = 0

    def take(self) -> tuple[int, float]:
        """Count one request against the rate limit: (requests left, when the window
        resets), ``left < 0`` when over the limit. Call with the lock held."""
        now = time.time()
        if now - self.window_start >= self.chaos.rate_window_seconds:
            self.window_start, self.used = now, 0
        self.used += 1
        return self.chaos.rate_limit - self.used, self.window_start + self.chaos.rate_window_seconds


def account_data(platform: str, handle: str, now: float) -> dict[str, Any]:
    """Stable, slowly growing numbers for ``platform``/``handle`` at time ``now``."""
    seed = zlib.crc32(f"{platform}:{handle.lower()}".encode())
    hours = now / 3600.0
    base = 1_000 + seed % 5_000_000
    growth = 1.0 + ((seed >> 8) % 50) / 10_000.0  # 0 to 0.5 % per day
    followers = int(base * growth ** ((hours % (24 * 365)) / 24.0))
    return {
        "platform": platform,
        "handle": handle,
        "display_name": handle.replace("_", " ").title(),
        "followers": followers,
        "following": 50 + seed % 2_000,
        "posts": 10 + (seed >> 4) % 20_000 + int(hours) % 100,
        "engagement_rate": round(0.5 + (seed % 700) / 100.0, 2),
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
    }


def create_platform_app(
    *, latency_ms: float = 0.0, failure_rate: float = 0.0, observe: bool = True, **config: Any
) -> Flask:
    """The demo platform as a Flask app.

    :param latency_ms: added to every API response.
    :param failure_rate: share (0 to 1) of API requests answered with ``failure_status``.
    :param observe: put ``Observe`` on it (service ``demo-platform``).
    :param config: extra Flask config (``OBSERVE_*`` keys for example).
    """
    app = Flask("demo_platform")
    app.config["OBSERVE_SERVICE_NAME"] = "demo-platform"
    app.config.update(config)
    app.extensions[EXTENSION_KEY] = PlatformState(Chaos(latency_ms, failure_rate))
    if observe:
        Observe(app)

    def state() -> PlatformState:
        return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]

    @app.get("/v1/<platform>/users/<handle>")
    def get_user(platform: str, handle: str) -> Any:
        if platform not in PLATFORMS:
            abort(404, description=f"unknown platform {platform!r}")
        current = state()
        with current.lock:
            chaos = Chaos(**asdict(current.chaos))
            roll = current.random.random()
            left, reset = current.take()
        limits = {
            "X-RateLimit-Limit": str(chaos.rate_limit),
            "X-RateLimit-Remaining": str(max(0, left)),
            "X-RateLimit-Reset": str(int(reset)),
        }
        if left < 0:
            response = jsonify(error="rate limit exceeded")
            response.status_code = 429
            response.headers.update(limits)
            response.headers["Retry-After"] = str(max(1, int(reset - time.time())))
            return response
        if chaos.latency_ms:
            time.sleep(chaos.latency_ms / 1000.0)
        if roll < chaos.failure_rate:
            logger.warning(
                "injected failure",
                extra={"platform": platform, "handle": handle, "status": chaos.failure_status},
            )
            response = jsonify(error="temporarily unavailable", injected=True)
            response.status_code = chaos.failure_status
            response.headers.update(limits)
            if chaos.failure_status == 429:
                response.headers["Retry-After"] = "1"
            return response
        if handle.lower().startswith("ghost"):
            logger.info("no such user", extra={"platform": platform, "handle": handle})
            abort(404, description=f"no user {handle!r} on {platform}")
        data = account_data(platform, handle, time.time())
        logger.info(
            "served user",
            extra={"platform": platform, "handle": handle, "followers": data["followers"]},
        )
        response = jsonify(data)
        response.headers.update(limits)
        return response

    @app.get("/admin/chaos")
    def get_chaos() -> Any:
        return jsonify(asdict(state().chaos))

    @app.put("/admin/chaos")
    def set_chaos() -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, description="expected a JSON object")
        current = state()
        with current.lock:
            updated = asdict(current.chaos)
            try:
                if "latency_ms" in body:
                    updated["latency_ms"] = max(0.0, float(body["latency_ms"]))
                if "failure_rate" in body:
                    updated["failure_rate"] = min(1.0, max(0.0, float(body["failure_rate"])))
                if "failure_status" in body:
                    status = int(body["failure_status"])
                    if not 400 <= status <= 599:
                        raise ValueError(status)
                    updated["failure_status"] = status
                if "rate_limit" in body:
                    updated["rate_limit"] = max(0, int(body["rate_limit"]))
            except (TypeError, ValueError):
                abort(
                    400,
                    description="latency_ms, failure_rate: numbers; failure_status: 4xx/5xx;"
                    " rate_limit: requests per window",
                )
            current.chaos = Chaos(**updated)
        logger.warning("chaos changed", extra=updated)
        return jsonify(updated)

    @app.errorhandler(400)
    @app.errorhandler(404)
    def json_error(error: Any) -> Any:
        response = jsonify(error=getattr(error, "description", str(error)))
        response.status_code = getattr(error, "code", 500)
        return response

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the demo platform API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--log-dir", default="logs", help="JSON logs go to DIR/platform.log")
    args = parser.parse_args(argv)
    app = create_platform_app(
        latency_ms=args.latency_ms,
        failure_rate=args.failure_rate,
        OBSERVE_LOG_DIR=args.log_dir,
        OBSERVE_LOG_FILE_NAME="platform.log",
    )
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
