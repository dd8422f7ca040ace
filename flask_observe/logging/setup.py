"""The logging feature: one JSON line per record from every logger, to stdout and/or rotated
files, and one access line per request."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask.globals import _cv_app

from ..config import ConfigError
from ..feature import Feature, Plan, Wiring
from ..hooks import Stage
from ..state import EXTENSION_KEY
from .settings import LoggingSettings

__all__ = ["FEATURE"]


def _wanted(plan: Plan) -> bool:
    return plan.settings(LoggingSettings).logging_enabled


def _check(plan: Plan) -> None:
    settings = plan.settings(LoggingSettings)
    if settings.log_dir:
        _check_writable(Path(settings.log_dir), settings.log_file_name)
    days, error_days = settings.log_retention_days, settings.log_retention_error_days
    if error_days and (not days or error_days <= days):
        raise ConfigError(
            f"OBSERVE_LOG_RETENTION_ERROR_DAYS ({error_days:g}) keeps errors longer than the"
            f" rest: it must be more than OBSERVE_LOG_RETENTION_DAYS ({days:g}, which must not"
            " be 0); set it to 0 to keep errors as long as the rest"
        )
    budget, rotate = settings.log_retention_bytes, settings.log_rotate_bytes
    if budget and rotate and rotate >= budget:
        raise ConfigError(
            f"OBSERVE_LOG_ROTATE_BYTES ({rotate}) must be smaller than"
            f" OBSERVE_LOG_RETENTION_BYTES ({budget}): the active file alone may grow to the"
            " rotation size, which would leave no room for a single rotated file"
        )


def _check_writable(directory: Path, file_name: str) -> None:
    """The log directory can be made (or exists) and written to, without making it here."""
    path = directory.absolute()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"OBSERVE_LOG_DIR: {str(path)!r} exists and is not a directory")
        target = path / file_name
        writable = (
            os.access(target, os.W_OK) if target.exists() else os.access(path, os.W_OK | os.X_OK)
        )
        if not writable:
            raise ConfigError(
                f"OBSERVE_LOG_DIR: {str(target if target.exists() else path)!r} is not writable"
                f" by this process (user id {os.geteuid()}); fix its permissions or choose another"
                " directory"
            )
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"OBSERVE_LOG_DIR: {str(path)!r} does not exist and cannot be made: {str(parent)!r}"
            " is not a writable directory"
        )


def _current_identity() -> Mapping[str, Any] | None:
    # state_or_none(), inlined: this runs for every log line.
    ctx = _cv_app.get(None)
    if ctx is None:
        return None
    state = ctx.app.extensions.get(EXTENSION_KEY)
    return state.log_identity if state is not None else None


def _setup(wiring: Wiring) -> None:
    from flask.logging import default_handler

    from .access import AccessLog
    from .formatter import configure_structlog
    from .handlers import LoggingSetup

    settings = wiring.settings(LoggingSettings)
    state = wiring.state
    configure_structlog()
    handlers = LoggingSetup(
        settings,
        state.log_identity,
        _current_identity,
        debug=wiring.app.debug,
        environ=wiring.environ,
    )
    wiring.provide(handlers)
    wiring.on_close(handlers.close)
    # Flask's own handler on app.logger would print every app.logger line a second time.
    wiring.app.logger.removeHandler(default_handler)
    if settings.access_log:
        access = AccessLog(
            state.excluded,
            settings.access_log_remote_addr,
            identity=state.log_identity,
            max_field_bytes=settings.log_max_field_bytes,
        )
        wiring.provide(access)
        wiring.request_hook(Stage.LOG, access)


FEATURE = Feature("logging", LoggingSettings, _setup, wanted=_wanted, check=_check)
