"""The console feature: traces, errors and runtime controls of one app in the browser,
behind the log viewer's sign-in, with nothing else running (docs/console.md)."""

from __future__ import annotations

import importlib
import re

from .._routes import Claim, refuse_taken, routes, watch
from ..config import ConfigError
from ..feature import Feature, Plan, Wiring
from ..logviewer.settings import LogViewerSettings
from .settings import ConsoleSettings

__all__ = ["FEATURE", "SECTIONS", "claim"]

#: The modules of the console's pages (``flask_observe.console.<name>``), each with
#: ``pages(wiring, console) -> list[Page]``; the navigation follows each page's ``order``
#: (the overview, order 0, is the landing page). Add a page: a module here, one line.
SECTIONS: tuple[str, ...] = ("overview", "info", "alerts")


def _wanted(plan: Plan) -> bool:
    enabled = plan.settings(ConsoleSettings).console_enabled
    if enabled is None:
        return "logviewer" in plan.on
    return enabled


def claim(settings: ConsoleSettings) -> Claim:
    base = settings.console_path
    return Claim(
        "OBSERVE_CONSOLE_PATH",
        "the console",
        routes(base, f"{base}/static/<name>")
        + routes(f"{base}/<slug>", f"{base}/<slug>/<path:rest>", methods=("GET", "POST")),
        "/_observe/console",
    )


def _check(plan: Plan) -> None:
    settings = plan.settings(ConsoleSettings)
    if "logviewer" not in plan.on:
        raise ConfigError(
            "OBSERVE_CONSOLE_ENABLED: the console is behind the log viewer's sign-in; turn the"
            " log viewer on (OBSERVE_LOGVIEWER_ENABLED=true, with OBSERVE_AUTH_TOKEN and"
            " OBSERVE_LOG_DIR)"
        )
    viewer = plan.settings(LogViewerSettings)
    base = settings.console_path
    for other in (viewer.logviewer_ui_path, viewer.logviewer_api_prefix):
        if base == other or base.startswith(other + "/") or other.startswith(base + "/"):
            raise ConfigError(
                f"OBSERVE_CONSOLE_PATH: must not be or contain a path of the log viewer"
                f" ({base!r} and {other!r})"
            )
    refuse_taken(plan.app, claim(settings))


def _excluded(plan: Plan) -> tuple[str, ...]:
    # The console's own answers stay out of the traces and the access log it shows.
    return (rf"^{re.escape(plan.settings(ConsoleSettings).console_path)}(?:/|$)",)


def _setup(wiring: Wiring) -> None:
    from ..logviewer.signin import SignIn
    from .pages import Console
    from .views import register

    settings = wiring.settings(ConsoleSettings)
    sign_in = wiring.get(SignIn)
    if sign_in is None:  # the check makes sure the viewer is on
        raise RuntimeError("the console needs the log viewer's sign-in")
    sign_in.add_scope(settings.console_path)
    viewer = wiring.settings(LogViewerSettings)
    console = Console(
        settings.console_path,
        sign_in,
        wiring.service_name,
        logs_url=viewer.logviewer_ui_path,
        trace_url=_trace_url(wiring),
    )
    for name in SECTIONS:
        module = importlib.import_module(f"{__package__}.{name}")
        for page in module.pages(wiring, console):
            console.add_page(page)
    register(wiring.app, console)
    wiring.on_close(watch(wiring.app, claim(settings)))
    wiring.provide(console)
    wiring.publish_url("console", settings.console_path)


def _trace_url(wiring: Wiring) -> str | None:
    """The tracing UI's link to a trace: the viewer's, else the tracing feature's."""
    url = wiring.settings(LogViewerSettings).logviewer_trace_url
    if url is None:
        from ..tracing.settings import TracingSettings

        url = wiring.settings(TracingSettings).tracing_trace_url
    return url


FEATURE = Feature(
    "console",
    ConsoleSettings,
    _setup,
    wanted=_wanted,
    check=_check,
    excluded_paths=_excluded,
)
