"""Runs the checks: in parallel, each against its own deadline, cached, and coalesced.

- Each check runs in a daemon thread of its own and the caller waits until the check's
  deadline at most (threads, not SIGALRM: it works in any thread and any server). A check still
  running at its deadline fails with "timed out"; its thread is left to finish (drivers have
  their own timeouts set, so it does) and its late answer is dropped.
- At most one run of a check is in flight at any time: a probe that finds one running waits for
  it instead of starting another, and a check still hung past its deadline is reported failed
  at once without a new thread. So a probe storm is one run per check per cache period.
- A run hung for ``retry_hung_after`` seconds (a check without driver timeouts, stuck on a
  socket for good) is given up on and the next probe starts a fresh one, so a dependency that
  recovers is seen again; at most ``MAX_ABANDONED`` given-up runs per check may still be
  running, after which probes fail at once as above. A check holds at most
  ``1 + MAX_ABANDONED`` threads, however many probes arrive over however long.
- Results are kept for ``cache_ttl`` seconds, and the last ``HISTORY`` of each check for the
  recent trend.
- Every change of a check's status is logged (``flask_observe.health``: check, from, to,
  duration, output; WARNING when it gets worse, INFO when it recovers) before the listeners
  hear of it (the metrics feature counts them).

Caching and uptime read the runner's ``clock`` (tests move it); deadlines are real time: a
dependency that hangs, hangs on the wall clock.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flask import has_app_context

from .._clock import SYSTEM, Clock
from .._internal import FailureLog
from .checks import HealthCheck, StartupGate, Status
from .results import CheckResult, HealthReport, Trend, call_check, make_result

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["CheckResult", "HealthReport", "HealthRunner", "Trend"]

logger = logging.getLogger("flask_observe.health")

#: How many past results of each check are kept for the trend.
HISTORY = 20
#: Given-up (still hung) runs a check may have before probes stop starting new ones.
MAX_ABANDONED = 2

Listener = Callable[[CheckResult, "CheckResult | None"], None]


class _Run:
    __slots__ = ("abandoned", "deadline", "done", "expired", "result", "started")

    def __init__(self, started: float, deadline: float) -> None:
        self.started = started
        self.deadline = deadline
        self.done = threading.Event()
        self.result: CheckResult | None = None
        self.expired: CheckResult | None = None
        self.abandoned = False


class _Slot:
    __slots__ = ("abandoned", "check", "fresh_until", "history", "inflight", "result")

    def __init__(self, check: HealthCheck) -> None:
        self.check = check
        self.result: CheckResult | None = None
        self.fresh_until = 0.0
        self.inflight: _Run | None = None
        self.history: deque[CheckResult] = deque(maxlen=HISTORY)
        #: Runs given up on (hung past ``retry_hung_after``) whose threads still run.
        self.abandoned = 0


class HealthRunner:
    """The checks of one app and the machinery that runs them.

    Reached as ``Observe.state(app).health``. Besides the endpoints, other features use it:
    :meth:`add` to register checks (an error-budget check, say), :meth:`latest` to read the
    last results without running anything, :meth:`add_listener` to hear each new result.

    :param app: the app whose context the checks run in (held weakly).
    :param cache_ttl: default seconds a result is reused.
    :param default_timeout: deadline of checks that set none.
    :param retry_hung_after: seconds after which a run still hung is given up on and the next
        probe starts a new one (``None``: 10 deadlines of the check, at least 30 s).
    """

    def __init__(
        self,
        app: Flask,
        *,
        cache_ttl: float = 3.0,
        default_timeout: float = 2.0,
        wait_for_startup: bool = False,
        retry_hung_after: float | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self._app = weakref.ref(app)
        self._clock = clock
        self.cache_ttl = cache_ttl
        self.default_timeout = default_timeout
        self.retry_hung_after = retry_hung_after
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._failures = FailureLog()
        self._born = clock.monotonic()
        self._started = threading.Event()
        if wait_for_startup:
            self.add(StartupGate("startup", started=self._started))
        else:
            self._started.set()

    # -- registry ---------------------------------------------------------------------------

    def add(self, check: HealthCheck, *, replace: bool = False) -> HealthCheck:
        """Register ``check``.

        :raises ValueError: the name is taken (unless ``replace``).
        :raises MissingDependencyError: a package the check needs is not installed.
        """
        check.check_requirements()
        if check.timeout is None:
            check.timeout = self.default_timeout
        with self._lock:
            old = self._slots.get(check.name)
            if old is not None and not replace:
                raise ValueError(f"a health check named {check.name!r} is already registered")
            self._slots[check.name] = _Slot(check)
        if old is not None and old.check is not check:
            self._close(old.check)
        return check

    def remove(self, name: str) -> HealthCheck | None:
        """Unregister the check called ``name`` (and close it); returns it, if it was there."""
        with self._lock:
            slot = self._slots.pop(name, None)
        if slot is None:
            return None
        self._close(slot.check)
        return slot.check

    @property
    def checks(self) -> tuple[HealthCheck, ...]:
        """The registered checks, in registration order."""
        with self._lock:
            return tuple(slot.check for slot in self._slots.values())

    def get(self, name: str) -> HealthCheck | None:
        slot = self._slots.get(name)
        return slot.check if slot is not None else None

    # -- start-up ----------------------------------------------------------------------------

    def mark_started(self) -> None:
        """Start-up work is done: the ``startup`` gate (if configured) passes from now on."""
        self._started.set()
        with self._lock:
            slot = self._slots.get("startup")
            if slot is not None and isinstance(slot.check, StartupGate):
                slot.fresh_until = 0.0

    @property
    def started(self) -> bool:
        return self._started.is_set()

    # -- listening and reading ---------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(result, previous)`` after each new result (not for cache hits).

        It runs in the thread that produced the result; keep it quick. Exceptions are logged.
        """
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def latest(self) -> dict[str, CheckResult]:
        """The last result of every check that has run, without running anything."""
        with self._lock:
            return {n: s.result for n, s in self._slots.items() if s.result is not None}

    def trend(self, name: str) -> Trend | None:
        with self._lock:
            slot = self._slots.get(name)
            history = list(slot.history) if slot is not None else None
        return Trend.of(history) if history is not None else None

    @property
    def uptime(self) -> float:
        """Seconds since this runner (i.e. ``Observe`` on this app) was set up."""
        return self._clock.monotonic() - self._born

    # -- running -------------------------------------------------------------------------------

    def run(
        self, group: str | None = None, *, fresh: bool = False, trends: bool = False
    ) -> HealthReport:
        """Run (or reuse) the checks of ``group`` (``None``: all) and return the report.

        Takes as long as the slowest deadline among the checks that must run, at most.

        :param fresh: ignore cached results (a run already in flight is still shared).
        :param trends: include each check's recent trend in the report.
        """
        now = self._clock.monotonic()  # for the cache
        real = time.monotonic()  # for deadlines
        results: dict[str, CheckResult] = {}
        to_start: list[tuple[_Slot, _Run]] = []
        to_wait: list[tuple[_Slot, _Run]] = []
        inline: list[_Slot] = []
        notify: list[tuple[CheckResult, CheckResult | None]] = []
        with self._lock:
            slots = [s for s in self._slots.values() if group is None or group in s.check.groups]
            for slot in slots:
                check = slot.check
                if not fresh and slot.result is not None and now < slot.fresh_until:
                    results[check.name] = slot.result
                elif check.inline:
                    inline.append(slot)
                elif slot.inflight is None or self._give_up(slot, real):
                    run = _Run(real, real + self._timeout(check))
                    slot.inflight = run
                    to_start.append((slot, run))
                    to_wait.append((slot, run))
                elif real >= slot.inflight.deadline:
                    # Hung past its deadline: fail now, start nothing (bounded threads).
                    result = self._hung(slot, slot.inflight, real)
                    notify.append((result, self._record(slot, result, now)))
                    results[check.name] = result
                else:
                    to_wait.append((slot, slot.inflight))
        # Slowest first (by the last run): a thread started later may wait for the GIL while
        # earlier ones work (e.g. a database handshake), and that wait adds to the probe only
        # when it delays the slowest check.
        to_start.sort(key=_expected_duration, reverse=True)
        for slot, run in to_start:
            thread = threading.Thread(
                target=self._execute,
                args=(slot, run),
                name=f"flask_observe-health-{slot.check.name}",
                daemon=True,
            )
            thread.start()
        for slot in inline:
            results[slot.check.name] = self._run_inline(slot)
        self._notify(notify)
        for slot, run in to_wait:
            remaining = run.deadline - time.monotonic()
            if run.done.wait(remaining if remaining > 0 else 0):
                assert run.result is not None
                results[slot.check.name] = run.result
            else:
                results[slot.check.name] = self._expire(slot, run)
        ordered = tuple(results[s.check.name] for s in slots)
        trend_map: dict[str, Trend] = {}
        if trends:
            with self._lock:
                histories = {s.check.name: list(s.history) for s in slots}
            trend_map = {name: Trend.of(history) for name, history in histories.items()}
        return HealthReport(group, ordered, trend_map, self.uptime)

    def close(self) -> None:
        """Close every check (engines, clients). In-flight threads are left to finish."""
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
            self._listeners.clear()
        for slot in slots:
            self._close(slot.check)

    # -- internals -----------------------------------------------------------------------------

    def _timeout(self, check: HealthCheck) -> float:
        return check.timeout if check.timeout is not None else self.default_timeout

    def _ttl(self, check: HealthCheck) -> float:
        return check.cache_ttl if check.cache_ttl is not None else self.cache_ttl

    def _give_up(self, slot: _Slot, now: float) -> bool:
        """Whether the slot's hung run is old enough to be abandoned for a new one (call with
        the lock held; marks it abandoned)."""
        run = slot.inflight
        assert run is not None
        retry_after = self.retry_hung_after
        if retry_after is None:
            retry_after = max(30.0, 10 * self._timeout(slot.check))
        if now < run.deadline or now - run.started < retry_after:
            return False
        if slot.abandoned >= MAX_ABANDONED:
            return False
        if run.expired is None:
            timeout = run.deadline - run.started
            run.expired = self._make(
                slot.check, Status.FAIL, timeout, f"timed out after {timeout:g}s", True
            )
        run.abandoned = True
        slot.abandoned += 1
        logger.warning(
            "health check %s: a run hung for %.0fs was given up on; starting a new one",
            slot.check.name,
            now - run.started,
        )
        return True

    def _execute(self, slot: _Slot, run: _Run) -> None:
        app = self._app()
        if app is None:
            result = self._make(slot.check, Status.FAIL, 0.0, "the app is gone")
        else:
            with app.app_context():
                result = call_check(slot.check, self._ttl(slot.check), self._failures)
        with self._lock:
            if slot.inflight is run:
                slot.inflight = None
            if run.abandoned:
                slot.abandoned -= 1
            if run.expired is not None:
                logger.debug(
                    "health check %s finished after its deadline (%s)",
                    slot.check.name,
                    result.status,
                )
                return
            run.result = result
            previous = self._record(slot, result, self._clock.monotonic())
        # Listeners before waking the waiters: when a probe returns, they have heard it.
        self._notify([(result, previous)])
        run.done.set()

    def _run_inline(self, slot: _Slot) -> CheckResult:
        app = self._app()
        if app is not None and not has_app_context():
            # Like the threaded checks, an inline one runs in its app's context (the CLI
            # and the alert rules call the runner outside a request).
            with app.app_context():
                result = call_check(slot.check, self._ttl(slot.check), self._failures)
        else:
            result = call_check(slot.check, self._ttl(slot.check), self._failures)
        with self._lock:
            previous = self._record(slot, result, self._clock.monotonic())
        self._notify([(result, previous)])
        return result

    def _expire(self, slot: _Slot, run: _Run) -> CheckResult:
        with self._lock:
            if run.result is not None:
                return run.result
            if run.expired is None:
                timeout = run.deadline - run.started
                run.expired = self._make(
                    slot.check, Status.FAIL, timeout, f"timed out after {timeout:g}s", True
                )
                previous = self._record(slot, run.expired, self._clock.monotonic())
            else:
                return run.expired
        self._notify([(run.expired, previous)])
        return run.expired

    def _hung(self, slot: _Slot, run: _Run, now: float) -> CheckResult:
        age = now - run.started
        message = f"timed out: the previous run has not finished after {age:.1f}s"
        return self._make(slot.check, Status.FAIL, self._timeout(slot.check), message, True)

    def _record(self, slot: _Slot, result: CheckResult, now: float) -> CheckResult | None:
        """Store ``result`` as the slot's latest (call with the lock held)."""
        previous = slot.result
        slot.result = result
        slot.fresh_until = now + self._ttl(slot.check)
        slot.history.append(result)
        return previous

    def _notify(self, events: Iterable[tuple[CheckResult, CheckResult | None]]) -> None:
        for result, previous in events:
            _log_transition(result, previous)
            for listener in list(self._listeners):
                try:
                    listener(result, previous)
                except Exception:
                    self._failures("a health result listener")

    def _make(
        self,
        check: HealthCheck,
        status: Status,
        duration: float,
        output: str,
        timed_out: bool = False,
    ) -> CheckResult:
        return make_result(
            check, status, (), duration, output, ttl=self._ttl(check), timed_out=timed_out
        )

    def _close(self, check: HealthCheck) -> None:
        try:
            check.close()
        except Exception:
            self._failures(f"closing health check {check.name!r}")


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def _log_transition(result: CheckResult, previous: CheckResult | None) -> None:
    """Log a change of a check's status (a first result only when it is not a pass)."""
    before = previous.status if previous is not None else None
    if before is result.status or (before is None and result.status is Status.PASS):
        return
    worse = before is None or _RANK[result.status] > _RANK[before]
    logger.log(
        logging.WARNING if worse else logging.INFO,
        "health check %s: %s -> %s",
        result.name,
        before.value if before is not None else "none",
        result.status.value,
        extra={
            "check": result.name,
            "from_status": before.value if before is not None else None,
            "to_status": result.status.value,
            "duration_ms": round(result.duration * 1000.0, 3),
            "output": (result.output or "")[:1000] or None,
            "critical": result.critical,
        },
    )


def _expected_duration(item: tuple[_Slot, _Run]) -> float:
    slot, run = item
    if slot.result is not None and not slot.result.timed_out:
        return slot.result.duration
    return run.deadline - run.started
