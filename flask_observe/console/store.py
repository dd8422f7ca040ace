"""The console's SQLite file: one per host (``OBSERVE_CONSOLE_DIR`` or the log directory),
written by every worker process, read by every page.

WAL mode lets the pages read while a worker writes; writes take ``BEGIN IMMEDIATE`` so two
workers never interleave one batch; every wait is bounded (``busy_timeout``). Each thread
has its own connection (SQLite connections are not shared between threads); a forked child
opens its own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FILE_NAME", "ConsoleDB"]

FILE_NAME = "observe-console.sqlite3"
#: The longest a write or a read waits for another process's write, in milliseconds.
BUSY_TIMEOUT_MS = 2000


class ConsoleDB:
    """Connections to the console's SQLite file.

    :param directory: where the file lives (made if missing).
    :param schema: ``CREATE … IF NOT EXISTS`` statements run once per process.
    """

    def __init__(self, directory: str | os.PathLike[str], schema: tuple[str, ...] = ()) -> None:
        self.path = Path(directory) / FILE_NAME
        self._schema = list(schema)
        self._retired: list[str] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._ready_pid: int | None = None
        self._closed = False

    def add_schema(self, *statements: str) -> None:
        """More statements to run before first use (a part of the console's own tables)."""
        with self._lock:
            self._schema.extend(statements)
            self._ready_pid = None

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
        with contextlib.suppress(sqlite3.OperationalError):  # another process switches it
            conn.execute("PRAGMA journal_mode = WAL")
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened, and the schema made, on first use)."""
        if self._closed:
            raise sqlite3.ProgrammingError("the console's store is closed")
        pid = os.getpid()
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None or getattr(local, "pid", None) != pid:
            conn = self._connect()
            local.conn, local.pid = conn, pid
        if self._ready_pid != pid:
            with self._lock:
                if self._ready_pid != pid:
                    self._make_schema(conn)
                    self._ready_pid = pid
        return conn

    def make_schema(self) -> None:
        """Make the schema now, on a connection of its own (at setup: a worker's writer then
        finds it made and runs one statement, not the schema's, while its request threads
        keep the GIL busy)."""
        with self._lock:
            conn = self._connect()
            try:
                self._make_schema(conn)
            finally:
                conn.close()
            self._ready_pid = os.getpid()

    def retire(self, *names: str) -> None:
        """Tables or indexes the schema drops: an earlier version running beside this one (a
        rolling deploy, a rollback) makes them again without looking at ``user_version``,
        so finding one runs the schema again."""
        with self._lock:
            self._retired.extend(names)
            self._ready_pid = None

    def _current(self, cur: sqlite3.Cursor | sqlite3.Connection, version: int) -> bool:
        """Whether the file has this schema: its ``user_version`` and none of the retired."""
        if not self._retired:
            return bool(cur.execute("PRAGMA user_version").fetchone()[0] == version)
        marks = ", ".join("?" * len(self._retired))
        found = cur.execute(
            "SELECT (SELECT user_version FROM pragma_user_version),"
            f" (SELECT count(*) FROM sqlite_master WHERE name IN ({marks}))",
            self._retired,
        ).fetchone()
        return bool(found[0] == version and not found[1])

    def _make_schema(self, conn: sqlite3.Connection) -> None:
        """Run the schema's statements unless the file says (``user_version``) it has them;
        looked at again inside the transaction, so workers starting together run them once."""
        version = zlib.crc32("\n".join(self._schema).encode()) & 0x7FFFFFFF or 1
        if self._current(conn, version):
            return
        with self.write(conn) as cur:
            if self._current(cur, version):  # another process made it meanwhile
                return
            for statement in self._schema:
                cur.execute(statement)
            cur.execute(f"PRAGMA user_version = {version}")

    @contextlib.contextmanager
    def write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Cursor]:
        """One write transaction (``BEGIN IMMEDIATE``: one writer of the host at a time)."""
        conn = conn or self.connection()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    def read(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Rows of one query (as :class:`sqlite3.Row`)."""
        conn = self.connection()
        cur = conn.cursor()
        cur.row_factory = sqlite3.Row
        try:
            return cur.execute(sql, args).fetchall()
        finally:
            cur.close()

    def close(self) -> None:
        """Close this thread's connection; later use raises (other threads' connections are
        closed when collected)."""
        self._closed = True
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._local.conn = None
