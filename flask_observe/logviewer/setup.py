"""The log viewer feature: a JSON API and a browser page over the app's own log files, behind
the shared auth; ``flask observe logs`` in the shell."""

from __future__ import annotations

import click

from .. import _optional
from .._routes import Claim, refuse_taken, routes, watch
from ..config import ConfigError, CoreSettings
from ..feature import Feature, Plan, Wiring
from ..logging.settings import LoggingSettings
from .settings import LogViewerSettings

__all__ = ["FEATURE"]


def _wanted(plan: Plan) -> bool:
    return plan.settings(LogViewerSettings).logviewer_enabled


def _claims(settings: LogViewerSettings) -> tuple[Claim, Claim]:
    api, ui = settings.logviewer_api_prefix, settings.logviewer_ui_path
    return (
        Claim(
            "OBSERVE_LOGVIEWER_API_PREFIX",
            "the log viewer's API",
            routes(f"{api}/files", f"{api}/search", f"{api}/tail/<file_name>"),
            "/_observe/api/logs",
        ),
        Claim(
            "OBSERVE_LOGVIEWER_UI_PATH",
            "the log viewer's page",
            routes(ui, f"{ui}/static/<name>")
            + routes(f"{ui}/login", f"{ui}/logout", methods=("POST",)),
            "/_observe/logs",
        ),
    )


def _check(plan: Plan) -> None:
    settings = plan.settings(LogViewerSettings)
    core = plan.settings(CoreSettings)
    if not (core.auth_token or core.auth_callback):
        raise ConfigError(
            "OBSERVE_LOGVIEWER_ENABLED: the log viewer is never public; set OBSERVE_AUTH_TOKEN"
            " (a bearer token of 16+ characters) or OBSERVE_AUTH_CALLBACK (your own check)"
        )
    if not (settings.logviewer_dir or plan.settings(LoggingSettings).log_dir):
        raise ConfigError(
            "OBSERVE_LOGVIEWER_ENABLED: there are no log files to show; set OBSERVE_LOG_DIR"
            " (or OBSERVE_LOGVIEWER_DIR to read another directory)"
        )
    api, ui = settings.logviewer_api_prefix, settings.logviewer_ui_path
    if api == ui or api.startswith(ui + "/") or ui.startswith(api + "/"):
        raise ConfigError(
            "OBSERVE_LOGVIEWER_UI_PATH: must not be or contain OBSERVE_LOGVIEWER_API_PREFIX"
            f" ({ui!r} and {api!r})"
        )
    _optional.require("re2", "logviewer", "OBSERVE_LOGVIEWER_ENABLED")
    for claim in _claims(settings):
        refuse_taken(plan.app, claim)


def _setup(wiring: Wiring) -> None:
    from .signing import Signer
    from .viewer import LogViewer
    from .views import register

    settings = wiring.settings(LogViewerSettings)
    # Cursors and tail positions are signed with a key every worker shares where there is
    # one (the token, else the host's SECRET_KEY): see signing.py.
    core = wiring.settings(CoreSettings)
    signer = Signer.for_app(core.auth_token, wiring.app.secret_key)
    viewer = LogViewer.from_config(settings, wiring.settings(LoggingSettings), signer)
    wiring.provide(register(wiring.app, wiring.state, settings, viewer))
    for claim in _claims(settings):
        wiring.on_close(watch(wiring.app, claim))
    wiring.provide(viewer)
    wiring.publish_url("logviewer", settings.logviewer_ui_path)
    wiring.publish_url("logs_api", settings.logviewer_api_prefix)
    wiring.on_close(viewer.close)


def _commands() -> list[click.Command]:
    from .cli import logs

    return [logs]


FEATURE = Feature(
    "logviewer", LogViewerSettings, _setup, wanted=_wanted, check=_check, commands=_commands
)
