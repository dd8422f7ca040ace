"""An app with the log viewer on, served by real servers in tests/test_auth_servers.py.

Configured from the environment (``FLASK_OBSERVE_*``: the token, the log and state
directories). Every response says which process served it (``X-Worker-PID``), and the host has
a route of its own that reads whole bodies (``POST /upload``), whose limits are the host's,
and one that reads nothing (``POST /ignore``).
``python -m tests.apps.auth_app PORT`` serves it with werkzeug's threaded server.
"""

from __future__ import annotations

import os
import sys

from flask import Flask, Response, request

from flask_observe import Observe

app = Flask("auth-app")
app.config.from_prefixed_env()
app.config.setdefault("OBSERVE_LOG_STDOUT", False)
app.config.setdefault("OBSERVE_LOGVIEWER_ENABLED", True)
observe = Observe(app)


@app.post("/upload")
def upload() -> dict[str, int]:
    return {"bytes": len(request.get_data())}


@app.post("/ignore")
def ignore() -> tuple[str, int]:
    """Reads nothing of its body (what the server does with the rest is the server's)."""
    return "", 204


@app.after_request
def worker_pid(response: Response) -> Response:
    response.headers["X-Worker-PID"] = str(os.getpid())
    return response


if __name__ == "__main__":
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True)
    print("serving", flush=True)
    server.serve_forever()
