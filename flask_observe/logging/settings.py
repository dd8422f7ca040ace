"""Keys of the logging feature: format, destinations, rotation, retention, the access line.

Each field is the key ``OBSERVE_`` + its name in capitals; see docs/configuration.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import boolean, choice, file_name, integer, key, number, opt_text

LOG_FORMATS = ("auto", "json", "console")
_LEVEL_NAMES = frozenset(("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"))
ROTATE_INTERVALS = ("hourly", "daily")


def level(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        name = logging.getLevelName(value)
        if isinstance(name, str) and not name.startswith("Level "):
            return name
    if isinstance(value, str) and value.strip().upper() in _LEVEL_NAMES:
        return value.strip().upper()
    raise ValueError("expected a log level name (DEBUG, INFO, WARNING, ERROR, CRITICAL)")


def level_map(value: Any) -> Mapping[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("expected a mapping of logger name to level") from None
        else:
            pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("expected 'logger=LEVEL,other=LEVEL' or a JSON object")
            value = {k.strip(): v for k, v in pairs}
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of logger name to level")
    return {str(k): level(v) for k, v in value.items()}


@dataclass(frozen=True)
class LoggingSettings:
    """Keys of the logging feature."""

    logging_enabled: bool = key(True, boolean)
    log_level: str = key("INFO", level)
    #: Standard output's format: ``auto`` is ``console`` on a terminal or in debug mode, else
    #: ``json``. Files are always JSON lines (the log viewer and shippers read them).
    log_format: str = key("auto", choice(*LOG_FORMATS))
    log_stdout: bool = key(True, boolean)
    log_dir: str | None = key(None, opt_text)
    log_file_name: str = key("app.log", file_name)
    #: Rotate the active file when it reaches this size; 0 turns size rotation off.
    log_rotate_bytes: int = key(10 * 1024 * 1024, integer(0))
    #: Rotate at the start of each UTC hour or day; ``None`` turns time rotation off.
    log_rotate_interval: str | None = key(None, choice(*ROTATE_INTERVALS, optional=True))
    log_compress: bool = key(True, boolean)
    #: Write each line to the file without releasing the GIL (until one write is slow): see
    #: docs/configuration.md. Off for a log directory on a file system that may hang.
    log_file_holds_gil: bool = key(True, boolean)
    #: Retention of rotated files; 0 means no limit of that kind.
    log_retention_days: float = key(14.0, number(0.0))
    log_retention_files: int = key(50, integer(0))
    log_retention_bytes: int = key(1024 * 1024 * 1024, integer(0))
    #: Lines younger than this are never deleted for the number of files (only the disk
    #: budget may delete them, and that is logged and counted).
    log_retention_min_seconds: float = key(3600.0, number(0.0))
    #: Keep the error and critical lines of rotated files this many days (longer than
    #: ``log_retention_days``); past ``log_retention_days`` a file keeps only those. 0: off.
    log_retention_error_days: float = key(0.0, number(0.0))
    #: Per-logger levels, e.g. ``{"sqlalchemy.engine": "WARNING"}``.
    log_levels: Mapping[str, str] = key({}, level_map)
    access_log: bool = key(True, boolean)
    #: The client address is personal data: off unless asked for.
    access_log_remote_addr: bool = key(False, boolean)
    #: Longest value written from request data (the access line's path, method and address,
    #: werkzeug's request line); longer ones are cut and marked ``…[truncated N bytes]``.
    log_max_field_bytes: int = key(2048, integer(256, 65536))
