"""Small helpers shared by the features: guarded calls with rate-limited failure logs."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("flask_observe")

_FAILURE_LOG_INTERVAL = 60.0


class FailureLog:
    """Logs a failure of one kind at most once per interval, with its traceback.

    Guards around enrichment and export use it so a broken piece is visible in the logs but a
    failure on every request cannot flood them.
    """

    def __init__(self, interval: float = _FAILURE_LOG_INTERVAL) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, what: str) -> None:
        """Record a failure of ``what``; call from inside an ``except`` block."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(what)
            if last is not None and now - last < self._interval:
                self._suppressed[what] = self._suppressed.get(what, 0) + 1
                return
            self._last[what] = now
            suppressed = self._suppressed.pop(what, 0)
        with contextlib.suppress(Exception):  # logging itself broken: nothing left to tell
            logger.exception(
                "flask_observe: %s failed (the host carried on)",
                what,
                extra={"suppressed_since_last": suppressed},
            )


def run_with_deadline(function: Callable[[], object], timeout: float, name: str) -> bool:
    """Run ``function`` in a daemon thread and wait for it at most ``timeout`` seconds.

    :returns: whether it finished in time (a late one goes on, and dies with the process).
    """
    done = threading.Event()

    def target() -> None:
        try:
            function()
        except Exception:
            logger.exception("flask_observe: %s failed", name)
        finally:
            done.set()

    thread = threading.Thread(target=target, name=f"flask-observe-{name}", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # interpreter shutting down: no new threads
        return False
    return done.wait(timeout)
