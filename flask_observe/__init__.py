"""flask_observe: production observability for Flask in one line.

>>> from flask import Flask
>>> from flask_observe import Observe
>>> app = Flask(__name__)
>>> observe = Observe(app)
"""

from __future__ import annotations

from .config import ConfigError, ObserveConfig
from .correlation import get_correlation_id, new_correlation_id
from .extension import Observe, ObserveState
from .logging import ObserveFormatter, get_logger

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Observe",
    "ObserveConfig",
    "ObserveFormatter",
    "ObserveState",
    "__version__",
    "get_correlation_id",
    "get_logger",
    "new_correlation_id",
]
