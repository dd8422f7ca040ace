"""What the workers of one host share about sign-ins: failed attempts per client (for
throttling) and the sessions ended by sign-out. A small SQLite database (WAL mode, one
connection per process, opened on first use, so a fork never shares one).

Why SQLite: every worker of a gunicorn (or of a pod) sees the same file, a row is updated in one
atomic statement, nothing has to run beside the app, and revocations survive a restart (a
cookie revoked before a deploy stays revoked after it). Both tables are bounded: a client's
row goes once its failures have drained away, and at most :data:`MAX_CLIENTS` rows are kept
(the rows nearest to draining go first), so an attacker rotating addresses cannot grow it; a
revoked session's row goes when the session would have expired anyway.

Where: ``OBSERVE_AUTH_STATE_DIR``, else a directory of this user's own under the system's
temporary directory (``flask_observe-<uid>``, mode 0700, refused if another user owns it). The
file's name is the service's plus a digest of the token, so two apps on one host keep apart and
a new token starts afresh. All times are epoch seconds from the caller (its clock).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import stat
import tempfile
import threading
from pathlib import Path

from .config import ConfigError

__all__ = ["MAX_CLIENTS", "AuthStore", "check_dir", "default_dir", "store_path"]

#: Clients (addresses) whose failed attempts are remembered at most.
MAX_CLIENTS = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS failures (client TEXT PRIMARY KEY, drained REAL NOT NULL);
CREATE INDEX IF NOT EXISTS failures_drained ON failures (drained);
CREATE TABLE IF NOT EXISTS revoked (session TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS revoked_expires ON revoked (expires);
"""


def default_dir() -> Path:
    """This user's private directory under the system's temporary directory."""
    uid = os.geteuid() if hasattr(os, "geteuid") else 0
    return Path(tempfile.gettempdir()) / f"flask_observe-{uid}"


def check_dir(configured: str | None) -> Path:
    """The directory the store will use, checked without changing anything.

    :raises ConfigError: naming ``OBSERVE_AUTH_STATE_DIR`` when it cannot be used: not a
        directory, not writable, or (the default one) a symlink, another user's, or open to
        others.
    """
    path = Path(configured) if configured else default_dir()
    key = "OBSERVE_AUTH_STATE_DIR"
    try:
        info = path.lstat()
    except FileNotFoundError:
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: {str(path)!r} does not exist and cannot be made") from None
        return path
    if not configured:
        problem = _not_private(path, info)
        if problem:
            raise ConfigError(f"{key}: {str(path)!r} {problem}; set {key} to a private directory")
    if not path.is_dir():
        raise ConfigError(f"{key}: {str(path)!r} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {str(path)!r} is not writable")
    return path


def _not_private(path: Path, info: os.stat_result) -> str | None:
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        return "belongs to another user"
    if info.st_mode & 0o077:
        return "is open to other users"
    return None


def _check_private(path: Path) -> None:
    problem = _not_private(path, path.lstat())
    if problem:
        raise PermissionError(f"{path} {problem}: the sign-in state is not kept there")


def store_path(directory: Path, service: str, key: bytes) -> Path:
    """The database file of one app: its service name and a digest of its token's key."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", service)[:64] or "app"
    digest = hashlib.sha256(b"flask_observe.auth.store.v1" + key).hexdigest()[:16]
    return directory / f"auth-{name}-{digest}.sqlite3"


class AuthStore:
    """Failed attempts and revoked sessions, shared through one SQLite file.

    :param path: the database file (its directory is made, mode 0700, on first use).
    :param max_clients: the most clients remembered.
    :param private: the directory must be this user's alone (checked again when the file is
        opened: the default directory is in a place every user can write to).
    """

    def __init__(self, path: Path, max_clients: int = MAX_CLIENTS, private: bool = False) -> None:
        self.path = path
        self.max_clients = max_clients
        self.private = private
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _db(self) -> sqlite3.Connection:
        """This process's connection (made after a fork, never inherited)."""
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.private:
                _check_private(self.path.parent)
            # Made private before SQLite opens it; SQLite gives its -wal and -shm the same mode.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o600))
            conn = sqlite3.connect(
                self.path, timeout=5.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
            self._conn = None

    # -- failed attempts: a leaky bucket per client, as the time it will be empty again ---

    def drained_at(self, client: str, now: float) -> float:
        """When ``client``'s failures will have drained away (``now`` or earlier: none)."""
        with self._lock:
            row = (
                self._db()
                .execute("SELECT drained FROM failures WHERE client = ?", (client,))
                .fetchone()
            )
        return float(row[0]) if row else now

    def add_failure(self, client: str, now: float, cost: float) -> float:
        """Add one failure (``cost`` seconds to drain) to ``client``; the new drain time."""
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO failures (client, drained) VALUES (?, ?)"
                    " ON CONFLICT (client) DO UPDATE SET drained = max(drained, ?) + ?",
                    (client, now + cost, now, cost),
                )
                (drained,) = db.execute(
                    "SELECT drained FROM failures WHERE client = ?", (client,)
                ).fetchone()
                db.execute("DELETE FROM failures WHERE drained <= ?", (now,))
                (count,) = db.execute("SELECT count(*) FROM failures").fetchone()
                if count > self.max_clients:
                    db.execute(
                        "DELETE FROM failures WHERE client IN (SELECT client FROM failures"
                        " WHERE client != ? ORDER BY drained LIMIT ?)",
                        (client, count - self.max_clients),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return float(drained)

    def clients(self) -> int:
        """How many clients have failures remembered (drained or not)."""
        with self._lock:
            return int(self._db().execute("SELECT count(*) FROM failures").fetchone()[0])

    # -- sessions ended by sign-out --------------------------------------------------------

    def revoke(self, session: str, expires: float, now: float) -> None:
        """Remember that ``session`` ended (until ``expires``, when it would end anyway)."""
        with self._lock:
            db = self._db()
            db.execute(
                "INSERT INTO revoked (session, expires) VALUES (?, ?)"
                " ON CONFLICT (session) DO NOTHING",
                (session, expires),
            )
            db.execute("DELETE FROM revoked WHERE expires <= ?", (now,))

    def is_revoked(self, session: str) -> bool:
        with self._lock:
            if self._conn is None and not self.path.exists():
                return False  # nothing was ever revoked on this host
            row = (
                self._db().execute("SELECT 1 FROM revoked WHERE session = ?", (session,)).fetchone()
            )
        return row is not None

    def revoked(self) -> int:
        """How many ended sessions are remembered."""
        with self._lock:
            return int(self._db().execute("SELECT count(*) FROM revoked").fetchone()[0])
