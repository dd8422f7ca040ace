"""Exit flushes share one deadline: however many features have something queued, and however
stuck their peers are, the process's exit handler returns within the longest timeout."""

from __future__ import annotations

import threading
import time

import pytest

from flask_observe._internal import EXIT_RESERVE, ExitFlushes


@pytest.mark.realtime
def test_stuck_flushes_share_one_deadline_and_each_sees_what_is_left() -> None:
    """Two flushes (one stuck for good, one that waits as long as it may) of 0.5 s and 0.3 s:
    the handler returns within 0.5 s, less the teardown reserve — not 0.5 s plus slack; a
    flush asking later is given only what is left."""
    flushes = ExitFlushes()
    forever = threading.Event()
    seen: list[float] = []

    def stuck() -> None:
        forever.wait(30)

    def polite() -> None:
        time.sleep(0.1)
        wait = flushes.remaining(0.3)
        seen.append(wait)
        time.sleep(wait)

    flushes.add(stuck, 0.5)
    flushes.add(polite, 0.3)
    assert flushes.remaining(0.3) == 0.3  # not exiting: a flush may use its whole timeout
    started = time.monotonic()
    flushes.run()
    elapsed = time.monotonic() - started
    forever.set()
    assert elapsed <= 0.5, elapsed
    assert elapsed >= 0.5 - EXIT_RESERVE - 0.05, elapsed
    assert len(seen) == 1
    assert seen[0] <= 0.5 - EXIT_RESERVE - 0.1 + 0.02, seen
