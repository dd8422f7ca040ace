"""The console's background thread: what it prepares when it starts, before its first
round, and a preparation that fails does not stop the rounds."""

from __future__ import annotations

import threading

from flask_observe.console.flusher import Flusher


def test_a_started_thread_prepares_before_its_first_round_and_survives_a_failure() -> None:
    flusher = Flusher(interval=3600.0)  # no round comes from the interval in this test
    order: list[str] = []
    prepared, ran = threading.Event(), threading.Event()

    def broken() -> None:
        order.append("broken")
        raise OSError("no such directory")

    def prepare() -> None:
        order.append("prepare")
        prepared.set()

    def task() -> None:
        order.append("round")
        ran.set()

    flusher.prepare("broken", broken)
    flusher.prepare("store", prepare)
    flusher.add("task", task)
    try:
        flusher.ensure_started()
        assert prepared.wait(10)
        assert flusher.rounds == 0  # prepared before any round, not by one
        flusher.nudge()
        assert ran.wait(10)
        assert order[:3] == ["broken", "prepare", "round"]
    finally:
        flusher.close()
