"""When Sentry is wanted, and whether the host initialised it itself."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import ErrorsSettings

__all__ = ["host_sentry_active", "sentry_wanted"]


def sentry_wanted(config: ErrorsSettings, environ: Mapping[str, str]) -> bool:
    """``OBSERVE_SENTRY_ENABLED``, or (unset) whether a DSN is configured or the host
    initialised Sentry itself."""
    if config.sentry_enabled is not None:
        return config.sentry_enabled
    return bool(config.sentry_dsn or environ.get("SENTRY_DSN")) or host_sentry_active()


def host_sentry_active() -> bool:
    """Whether the host initialised Sentry itself (looked for, never imported; a sentry-sdk
    older than 2.0, which flask_observe does not use, does not count)."""
    get_client = getattr(sys.modules.get("sentry_sdk"), "get_client", None)
    return get_client is not None and bool(get_client().is_active())
