"""Lazy imports of optional packages, with errors that name the extra to install."""

from __future__ import annotations

import importlib
import logging
import threading
from types import ModuleType

logger = logging.getLogger("flask_observe")

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


class MissingDependencyError(ImportError):
    """A feature that was asked for needs a package that is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for a feature that was explicitly turned on.

    :param feature: what asked for it (the setting's key, or the API called).
    :raises MissingDependencyError: naming the pip extra that provides it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the '{module}' package: pip install \"flask-observe[{extra}]\""
        ) from exc


def detect(
    module: str, feature: str, *, extra: str | None = None, loud: bool = False
) -> ModuleType | None:
    """Import ``module`` for an auto-detected feature; ``None`` if it is missing.

    :param loud: the environment asked for the feature (a DSN or an endpoint is set): a
        missing package is said once per process at WARNING, naming the extra; otherwise at
        DEBUG (the feature is simply not installed).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        hint = f': pip install "flask-observe[{extra}]"' if extra else ""
        if not loud:
            logger.debug("%s is off: '%s' is not installed%s", feature, module, hint)
            return None
        with _warned_lock:
            first = (module, feature) not in _warned
            _warned.add((module, feature))
        if first:
            logger.warning(
                "flask_observe: %s is off: the '%s' package is not installed%s",
                feature,
                module,
                hint,
            )
        return None
