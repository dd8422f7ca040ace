"""One background thread per app that runs periodic work (sampling, rule evaluation).

Started lazily — by the first request, or explicitly — so a pre-fork server's master never
owns it: after a fork the child starts its own. Each round's tasks run in a small pool with a
deadline of one period; a task still running from an earlier round is skipped, not stacked.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from ._internal import FailureLog

__all__ = ["Ticker"]

logger = logging.getLogger("flask_observe")

_TICKERS: weakref.WeakSet[Ticker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for ticker in list(_TICKERS):
        ticker._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Ticker:
    """Runs ``tasks`` every ``interval`` seconds in a daemon thread.

    :param interval: seconds between rounds (also each round's deadline).
    :param name: thread name.
    """

    def __init__(self, interval: float, name: str = "flask_observe-ticker") -> None:
        self.interval = interval
        self.name = name
        self.tasks: list[tuple[str, Callable[[], object]]] = []
        self.running = False
        self.rounds = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[str, Future[object]] = {}
        self._failures = FailureLog()
        _TICKERS.add(self)

    def add(self, name: str, task: Callable[[], object]) -> None:
        """Run ``task`` every round (exceptions are logged, rate-limited)."""
        self.tasks.append((name, task))

    def ensure_started(self) -> None:
        """Start the thread in this process if it is not running (cheap when it is)."""
        if self.running or not self.tasks:
            return
        with self._lock:
            if self.running or self._stop.is_set():
                return
            self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=self.name)
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.running = True
            self._thread.start()

    def _forked(self) -> None:
        # Threads do not survive fork: forget the parent's so the child starts its own.
        self.running = False
        self._thread = None
        self._pool = None
        self._pending = {}
        self._lock = threading.Lock()

    def run_once(self) -> None:
        """One round: every task, each within the round's deadline."""
        pool = self._pool
        if pool is None:
            for name, task in self.tasks:
                self._call(name, task)
            return
        started: list[Future[object]] = []
        for name, task in self.tasks:
            previous = self._pending.get(name)
            if previous is not None and not previous.done():
                self._failures(f"periodic task {name} (still running from an earlier round)")
                continue
            future = pool.submit(self._call, name, task)
            self._pending[name] = future
            started.append(future)
        wait(started, timeout=self.interval)
        self.rounds += 1

    def _call(self, name: str, task: Callable[[], object]) -> object:
        try:
            return task()
        except Exception:
            self._failures(f"periodic task {name}")
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (waits up to ``timeout``)."""
        self._stop.set()
        thread, pool = self._thread, self._pool
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self.running = False
