"""Logger levels changed at run time, for every worker of the host, until the server restarts.

A change is a row of the console's SQLite file; each worker's flusher thread reads the rows
every second and applies them (and puts back the level a logger had before, when its row
goes). Rows carry the server's *boot*: the gunicorn (or uWSGI) master's PID and start time,
or this process's own without one; rows of another boot are ignored and removed, so a
restart resets every level while a recycled worker keeps them. Every change is logged
(``flask_observe.console``, WARNING) with what it was, what it is, and who asked.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import ConsoleDB

__all__ = ["LEVELS", "LevelChange", "LevelControl", "boot_id"]

logger = logging.getLogger("flask_observe.console")

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: A logger name the page accepts: dotted words, as ``logging.getLogger`` names are.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}")
#: Servers whose workers share a master: the master's life is the server's.
_MASTERS = (b"gunicorn", b"uwsgi")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS logger_levels (
        name TEXT PRIMARY KEY, level TEXT NOT NULL, previous TEXT, changed_at REAL NOT NULL,
        changed_by TEXT, boot TEXT NOT NULL)""",
)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), else ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _is_master(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _names_a_master(cmdline.split(b"\0"))


def _names_a_master(argv: list[bytes]) -> bool:
    """Whether a command line runs gunicorn or uWSGI: its program (``gunicorn``, ``uwsgi``),
    or the script or ``-m`` module a Python runs; not a mention anywhere in its arguments
    (``timeout 60 python -m pytest tests/test_gunicorn.py`` is no master)."""
    program = [arg for arg in argv if arg][:1]
    if not program:
        return False
    names = [os.path.basename(program[0])]
    if names[0].startswith(b"python"):
        rest = argv[1:]
        for i, arg in enumerate(rest):
            if arg == b"-m" and i + 1 < len(rest):
                names.append(rest[i + 1])
                break
            if not arg.startswith(b"-"):
                names.append(os.path.basename(arg))
                break
    return any(name.startswith(master) for name in names for master in _MASTERS)


def boot_id() -> str:
    """What a server restart changes and a worker's recycling does not: the master's PID and
    start time under gunicorn or uWSGI, else this process's."""
    parent = os.getppid()
    pid = parent if _is_master(parent) else os.getpid()
    return f"{pid}:{_start_time(pid) or 'unknown'}"


@dataclass(frozen=True)
class LevelChange:
    """A logger level changed at run time."""

    name: str
    level: str
    previous: str | None
    changed_at: float
    changed_by: str | None


def level_name(level: int) -> str:
    return logging.getLevelName(level) if level else "NOTSET"


def valid_name(name: str) -> bool:
    return name == "root" or _NAME.fullmatch(name) is not None


class LevelControl:
    """The shared logger levels of one app on one host.

    :param db: the console's SQLite file.
    :param boot: see :func:`boot_id`.
    """

    def __init__(self, db: ConsoleDB, boot: str | None = None) -> None:
        self.db = db
        self.boot = boot or boot_id()
        db.add_schema(*SCHEMA)
        self._lock = threading.Lock()
        #: Levels this process had before a change, by logger name (put back on reset).
        self._original: dict[str, int] = {}
        self._applied: dict[str, str] = {}

    @staticmethod
    def _logger(name: str) -> logging.Logger:
        return logging.getLogger() if name == "root" else logging.getLogger(name)

    def changes(self) -> list[LevelChange]:
        """The levels changed on this host since the server started, by logger name."""
        rows = self.db.read(
            "SELECT name, level, previous, changed_at, changed_by FROM logger_levels"
            " WHERE boot = ? ORDER BY name",
            (self.boot,),
        )
        return [LevelChange(*row) for row in rows]

    def set(self, name: str, level: str, by: str | None, now: float) -> LevelChange:
        """Set logger ``name`` to ``level`` on every worker of the host (this one now, the
        others within a second), and log it.

        :raises ValueError: not a logger name or not a level.
        """
        level = level.upper()
        if not valid_name(name) or level not in LEVELS:
            raise ValueError("expected a logger name and one of " + ", ".join(LEVELS))
        target = self._logger(name)
        previous = level_name(target.level)
        with self.db.write() as cur:
            cur.execute("DELETE FROM logger_levels WHERE boot != ?", (self.boot,))
            row = cur.execute(
                "SELECT previous FROM logger_levels WHERE name = ?", (name,)
            ).fetchone()
            first_previous = row[0] if row else previous
            cur.execute(
                "INSERT OR REPLACE INTO logger_levels VALUES (?, ?, ?, ?, ?, ?)",
                (name, level, first_previous, now, by, self.boot),
            )
        self.apply()
        logger.warning(
            "logger %s set to %s (was %s) from the console",
            name,
            level,
            previous,
            extra={"logger_name": name, "level_set": level, "level_was": previous, "by": by},
        )
        return LevelChange(name, level, first_previous, now, by)

    def reset(self, name: str, by: str | None) -> bool:
        """Put logger ``name`` back to the level it had before the console changed it, on
        every worker of the host; logged. Returns whether it had been changed."""
        with self.db.write() as cur:
            gone = cur.execute(
                "DELETE FROM logger_levels WHERE name = ? AND boot = ?", (name, self.boot)
            ).rowcount
        if not gone:
            return False
        self.apply()
        logger.warning(
            "logger %s reset from the console",
            name,
            extra={"logger_name": name, "level_set": "reset", "by": by},
        )
        return True

    def apply(self) -> None:
        """Make this process's loggers follow the shared rows (the flusher's task)."""
        rows = self.db.read("SELECT name, level FROM logger_levels WHERE boot = ?", (self.boot,))
        wanted = {row[0]: row[1] for row in rows if row[1] in LEVELS and valid_name(row[0])}
        with self._lock:
            for name, level in wanted.items():
                if self._applied.get(name) == level:
                    continue
                target = self._logger(name)
                self._original.setdefault(name, target.level)
                target.setLevel(level)
                self._applied[name] = level
            for name in [n for n in self._applied if n not in wanted]:
                self._logger(name).setLevel(self._original.pop(name, logging.NOTSET))
                del self._applied[name]
