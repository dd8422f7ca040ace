"""flask_observe: production observability for Flask in one line.

>>> from flask import Flask
>>> from flask_observe import Observe
>>> app = Flask(__name__)
>>> observe = Observe(app)

The public API is what this module exports (docs/api.md); everything else is wiring.
"""

from __future__ import annotations

from ._optional import MissingDependencyError
from ._version import __version__
from .config import ConfigError
from .context import bind_correlation_id, get_correlation_id, new_correlation_id
from .errors.api import capture_exception, capture_message
from .extension import Observe, ObserveConfig
from .logging import ObserveFormatter, get_logger
from .metrics.operations import FailureStreak, Timing, timed

__all__ = [
    "ConfigError",
    "FailureStreak",
    "MissingDependencyError",
    "Observe",
    "ObserveConfig",
    "ObserveFormatter",
    "Timing",
    "__version__",
    "bind_correlation_id",
    "capture_exception",
    "capture_message",
    "get_correlation_id",
    "get_logger",
    "new_correlation_id",
    "timed",
]
