"""The console's info page: what runs — versions, git revision, the effective settings
(secrets masked, as ``flask observe config`` prints them) and the features that are on."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
from importlib import metadata
from typing import TYPE_CHECKING, Any

from flask import abort
from flask.typing import ResponseReturnValue

from ..cli import effective_config
from .pages import Console, Page

if TYPE_CHECKING:
    from ..feature import Wiring

__all__ = ["git_revision", "library_versions", "pages"]

#: Distributions whose versions the page shows (those installed).
LIBRARIES = (
    "flask-observe",
    "flask",
    "werkzeug",
    "opentelemetry-sdk",
    "opentelemetry-api",
    "sentry-sdk",
    "prometheus-client",
    "structlog",
    "sqlalchemy",
    "flask-sqlalchemy",
    "requests",
    "celery",
    "redis",
    "pybreaker",
    "gunicorn",
    "orjson",
    "google-re2",
)
#: Variables deployment tools set to the revision being run.
REVISION_VARS = ("GIT_COMMIT", "GIT_SHA", "SOURCE_VERSION", "COMMIT_SHA", "REVISION")


#: A password in a URL (``scheme://user:password@host``): shown as ``<set>`` as well.
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^/\s@]+(@)")


def masked(config: dict[str, Any]) -> dict[str, Any]:
    """``flask observe config``'s settings, with passwords in URLs hidden too."""
    text = json.dumps(config, default=str)
    return json.loads(_URL_PASSWORD.sub(r"\1<set>\2", text))  # type: ignore[no-any-return]


def library_versions() -> list[tuple[str, str]]:
    """``(distribution, version)`` of each of :data:`LIBRARIES` that is installed."""
    found = []
    for name in LIBRARIES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return found


def git_revision(root: str, environ: dict[str, str] | os._Environ[str]) -> str | None:
    """The revision the app runs: a deployment variable (:data:`REVISION_VARS`), else
    ``git rev-parse HEAD`` in ``root`` (1 s at most), else ``None``."""
    for name in REVISION_VARS:
        value = environ.get(name, "").strip()
        if value:
            return value[:64]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=1.0,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def pages(wiring: Wiring, console: Console) -> list[Page]:
    state = wiring.state
    root = wiring.app.root_path
    environ = dict(wiring.environ)
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def facts() -> dict[str, Any]:
        with lock:  # asked once per process: a subprocess and the installed metadata
            if not cache:
                cache["revision"] = git_revision(root, environ)
                cache["libraries"] = library_versions()
            return cache

    def info(rest: str) -> ResponseReturnValue:
        if rest not in ("", "config.json"):
            abort(404)
        config = masked(effective_config(state))
        if rest == "config.json":
            return console.json(config)
        known = facts()
        settings = [
            (name, json.dumps(value, default=str))
            for name, value in config.items()
            if name != "features_on"
        ]
        return console.render(
            "observe_console/info.html",
            page="info",
            service=state.service_name,
            version=state.config.service_version,
            environment=state.config.environment,
            revision=known["revision"],
            python=f"{platform.python_implementation()} {sys.version.split()[0]}",
            pid=os.getpid(),
            libraries=known["libraries"],
            features=state.features,
            settings=settings,
        )

    return [Page("info", "Info", info, order=90)]
