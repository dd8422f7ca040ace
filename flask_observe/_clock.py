"""The clock that code which waits or expires reads, so its tests can move time by hand.

Components that expire entries, throttle, dedup or measure windows take a ``clock``
(default :data:`SYSTEM`); tests give them a :class:`ManualClock` and advance it instead of
sleeping and racing the machine.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["SYSTEM", "Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """What a component reads of time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes back (for durations and deadlines)."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (for timestamps shown to people and peers)."""
        ...


class SystemClock:
    """The machine's clocks (the functions of :mod:`time` themselves: a call on a hot path
    costs no Python frame)."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


#: The clock every component uses unless given another.
SYSTEM: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`); thread-safe.

    :param start: the epoch time it starts at (its monotonic reading starts at 0).
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._epoch = start
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def time(self) -> float:
        with self._lock:
            return self._epoch + self._elapsed

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._elapsed += seconds


#: Longest real wait between two looks at a clock other than the system's.
_STEP = 0.05


def wait_step(clock: Clock, seconds: float) -> float:
    """Real seconds to wait for ``seconds`` to pass on ``clock``: all of them on the system
    clock; a short step on another (a test's clock moves while a thread waits for it)."""
    return seconds if isinstance(clock, SystemClock) else min(seconds, _STEP)
