"""One background thread per app that runs periodic work (sampling, rule evaluation).

Started lazily — by the first request, or explicitly — so a pre-fork server's master never
owns it: after a fork the child starts its own. Each round's tasks run in daemon threads of
their own with a deadline of one period; a task still running from an earlier round is skipped,
not stacked. (Daemon threads, not a ``ThreadPoolExecutor``, whose workers the interpreter joins
at exit: one task stuck for good would keep the process from ever exiting.)
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable

from ._clock import SYSTEM, Clock, wait_step
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
    :param clock: what the interval and the deadline are measured on.
    """

    def __init__(
        self, interval: float, name: str = "flask_observe-ticker", clock: Clock = SYSTEM
    ) -> None:
        self.interval = interval
        self.name = name
        self.clock = clock
        self.tasks: list[tuple[str, Callable[[], object]]] = []
        self.running = False
        self.rounds = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The thread of each task's latest run (a task still running is not started again).
        self._pending: dict[str, threading.Thread] = {}
        self._stuck: set[str] = set()
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
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.running = True
            self._thread.start()

    def _forked(self) -> None:
        # Threads do not survive fork: forget the parent's so the child starts its own.
        self.running = False
        self._thread = None
        self._pending = {}
        self._stuck = set()
        self._lock = threading.Lock()

    def run_once(self) -> None:
        """One round: every task, each within the round's deadline."""
        if self._thread is None or threading.current_thread() is not self._thread:
            for name, task in self.tasks:  # called directly (tests, CLI): in this thread
                self._call(name, task)
            return
        started: list[threading.Thread] = []
        for name, task in list(self.tasks):
            previous = self._pending.get(name)
            if previous is not None and previous.is_alive():
                if name not in self._stuck:  # once per stuck run, not every round
                    self._stuck.add(name)
                    logger.warning(
                        "flask_observe: periodic task %s is still running from an earlier"
                        " round; skipped until it returns",
                        name,
                    )
                continue
            self._stuck.discard(name)
            thread = threading.Thread(
                target=self._call, args=(name, task), name=f"{self.name}-task", daemon=True
            )
            self._pending[name] = thread
            thread.start()
            started.append(thread)
        deadline = self.clock.monotonic() + self.interval
        for thread in started:
            while thread.is_alive():
                remaining = deadline - self.clock.monotonic()
                if remaining <= 0:
                    break
                thread.join(wait_step(self.clock, remaining))
        self.rounds += 1

    def _call(self, name: str, task: Callable[[], object]) -> object:
        try:
            return task()
        except Exception:
            self._failures(f"periodic task {name}")
            return None

    def _run(self) -> None:
        # The first round at once: a gauge the tasks set (free disk, RSS) reading 0 until the
        # first period has passed would look like a full disk to an alert rule.
        due = self.clock.monotonic()
        while not self._stop.is_set():
            remaining = due - self.clock.monotonic()
            if remaining > 0:
                self._stop.wait(wait_step(self.clock, remaining))
                continue
            self.run_once()
            due = self.clock.monotonic() + self.interval

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (waits up to ``timeout``; a task still running is left to finish,
        in a daemon thread)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        self.running = False
