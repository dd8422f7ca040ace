"""One SQLite file the workers of a host share: the console's rollups and history.

Each process opens its own connection (again after a fork: a connection never crosses one),
in WAL mode so readers (the console's pages) never wait for a writer and a writer waits at
most ``busy_timeout`` for another. Only background threads write; a page only reads.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LocalDB"]

#: Milliseconds a writer waits for another process's write to finish.
BUSY_TIMEOUT_MS = 2000


class LocalDB:
    """A lazily opened, per-process connection to ``path`` with the console's schema.

    :param path: the SQLite file (its directory is made when missing).
    :param schema: ``CREATE … IF NOT EXISTS`` statements run when the file is opened.
    """

    def __init__(self, path: str, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0

    def _open(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        connection = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
            check_same_thread=False,  # shared by this process's threads, under self._lock
        )
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executescript(self._schema)
        return connection

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """This process's connection, held by this thread for the ``with`` block."""
        with self._lock:
            pid = os.getpid()
            if self._connection is None or self._pid != pid:
                # After a fork the parent's connection is not ours to use (or close).
                self._connection = self._open()
                self._pid = pid
            yield self._connection

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: one writer of the host at a time)."""
        with self.connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None
