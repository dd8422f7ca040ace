"""Structured logging: one JSON object per line from every logger, rotated files, the access
line (see docs/logging.md).

- :mod:`.formatter` — :class:`ObserveFormatter`, :func:`get_logger`;
- :mod:`.handlers` — stdout and file handlers on the root logger, shared across apps;
- :mod:`.files` — the rotating file handler, compression and retention;
- :mod:`.access` — one line per finished request;
- :mod:`.setup` — the feature.
"""

from __future__ import annotations

from .formatter import ObserveFormatter, get_logger

__all__ = ["ObserveFormatter", "get_logger"]
