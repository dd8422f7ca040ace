"""Lazy imports of optional packages, with errors that name the extra to install."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

logger = logging.getLogger("flask_observe")


class MissingDependencyError(ImportError):
    """A feature that was asked for needs a package that is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for a feature that was explicitly turned on.

    :raises MissingDependencyError: naming the pip extra that provides it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the '{module}' package: pip install \"flask-observe[{extra}]\""
        ) from exc


def detect(module: str, feature: str) -> ModuleType | None:
    """Import ``module`` for an auto-detected feature; ``None`` (logged at debug) if missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        logger.debug("%s is off: '%s' is not installed", feature, module)
        return None
