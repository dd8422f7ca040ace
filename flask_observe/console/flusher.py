"""The console's background thread: every second, what the request threads buffered goes
to the store, and the shared logger levels are applied; nothing of it on the request path.

Started by the first thing that needs it in each process (a forked gunicorn worker starts
its own); stopped at shutdown after one last round, bounded by a deadline.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

from .._internal import FailureLog, run_with_deadline

__all__ = ["Flusher"]

logger = logging.getLogger("flask_observe.console")


class Flusher:
    """Runs ``tasks`` every ``interval`` seconds in one daemon thread per process.

    :param interval: seconds between rounds.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.tasks: list[tuple[str, Callable[[], object]]] = []
        self._prepare: list[tuple[str, Callable[[], object]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._started = False  # in this process (reset in a forked child)
        self._pid = 0  # the process that started the thread
        self._calls = 0
        #: Run in a forked child, after the flusher's own reset (see :meth:`after_fork`).
        self._fork_hooks: list[Callable[[], None]] = []
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forked(ref))
        self._failures = FailureLog()
        self.rounds = 0

    def add(self, name: str, task: Callable[[], object]) -> None:
        self.tasks.append((name, task))

    def prepare(self, name: str, hook: Callable[[], object]) -> None:
        """Run ``hook`` once as each process's thread starts, before its first round: the
        store's connection and schema are made while the first spans are still buffered
        (in a process that keeps its request threads busy, each SQLite call waits for the
        GIL, and the schema took 0.8 s there where it takes 4 ms alone: made at the first
        write, it left a full buffer dropping spans)."""
        self._prepare.append((name, hook))

    def after_fork(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` in a forked child (what the parent left behind is not the child's)."""
        self._fork_hooks.append(hook)

    def ensure_started(self) -> None:
        """Start this process's thread if it is not running (cheap when it is: it runs on
        every request, and looks at the process ID once in 256 calls)."""
        if self._started:
            self._calls += 1
            if self._calls & 0xFF or self._pid == os.getpid():
                return
            # Forked without Python's fork hooks (uWSGI's default): do what they would.
            self._forked()
        if self._stop.is_set():
            return
        with self._lock:
            if self._started or self._stop.is_set():
                return
            self._started = True
            self._pid = os.getpid()
            self._wake = threading.Event()
            thread = threading.Thread(target=self._run, name="flask_observe-console", daemon=True)
            thread.start()

    def _forked(self) -> None:
        """In a forked child: threads do not survive fork(), the next call starts its own;
        then the hooks of :meth:`after_fork`."""
        self._started = False
        self._lock = threading.Lock()
        for hook in self._fork_hooks:
            try:
                hook()
            except Exception:
                self._failures("resetting the console after a fork")

    def run_once(self) -> None:
        """One round, here and now (tests, shutdown)."""
        for name, task in self.tasks:
            try:
                task()
            except Exception:
                self._failures(f"the console's {name}")
        self.rounds += 1

    def nudge(self) -> None:
        """Run the next round now rather than at the end of the interval."""
        self._wake.set()

    def _run(self) -> None:
        for name, hook in self._prepare:
            try:
                hook()
            except Exception:
                self._failures(f"preparing the console's {name}")
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.run_once()

    def close(self, timeout: float = 2.0) -> None:
        """Stop, after a last round in this process (at most ``timeout`` seconds)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        run_with_deadline(self.run_once, timeout, "console-flush")


def _forked(ref: weakref.ref[Flusher]) -> None:
    flusher = ref()
    if flusher is not None:
        flusher._forked()
