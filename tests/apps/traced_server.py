"""A small traced app run as a real server process by the fault and fork tests.

Configured from the environment (``FLASK_OBSERVE_*`` through ``from_prefixed_env`` and the
``OTEL_*``/``SENTRY_DSN`` variables the libraries read themselves).

- ``gunicorn tests.apps.traced_server:app`` (the ``--preload`` test);
- ``python -m tests.apps.traced_server``: werkzeug on a free port, printing ``READY <port>``;
  SIGTERM exits the way servers do (``sys.exit`` in the main thread), so the process's exit
  handlers — flask_observe's bounded flushes among them — run.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from flask import Flask
from opentelemetry import trace

from flask_observe import Observe

app = Flask("traced-server")
app.config["OBSERVE_LOG_STDOUT"] = False
app.config.from_prefixed_env()
Observe(app)
logger = logging.getLogger("traced_server")


@app.get("/work")
def work() -> dict[str, Any]:
    trace.get_current_span().set_attribute("worker.pid", os.getpid())
    logger.info("worked")
    return {"pid": os.getpid()}


@app.get("/fail")
def fail() -> str:
    raise RuntimeError("failed on purpose")


def main() -> None:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)

    def stop(signum: int, frame: Any) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"READY {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
