"""The alert router: routing by severity, dedup and cooldown, a bounded queue and one sender
thread, so raising an alert never blocks (or fails) the code that raises it.

Failures to send are logged (``flask_observe.alerting``, rate-limited) and never become
alerts themselves. A receiver answering 429 is left alone for its ``Retry-After``; what is
routed to it meanwhile is held (a bounded number, the rest counted and dropped) and sent as one
summary when it opens (:mod:`.hold`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .._clock import SYSTEM, Clock, wait_step
from .._internal import FailureLog
from .channels import Channel, DeliveryError, repeats
from .hold import Hold
from .model import FIRING, Alert
from .store import DecisionStore, MemoryStore

__all__ = ["AlertRouter", "Listener"]

logger = logging.getLogger("flask_observe.alerting")

MAX_ATTEMPTS = 3
_BACKOFF = (1.0, 5.0)
_STOP = object()
#: Seconds between two log lines about alerts dropped for one throttled channel.
_DROP_LOG_INTERVAL = 60.0

#: ``listener(event, alert, channel, detail)``: ``event`` is ``queued`` (raised; ``channel``
#: ``None``), ``dropped`` (the queue is full, or a throttled channel's hold; ``channel`` then
#: names it), ``suppressed`` (dedup or cooldown), or a channel's outcome: ``sent``,
#: ``retrying``, ``failed`` (given up), ``held`` (its receiver throttles it).
Listener = Callable[[str, Alert, "str | None", str], None]


class AlertRouter:
    """Sends alerts to the channels that take their severity.

    :param channels: the destinations.
    :param store: dedup/cooldown decisions (:class:`MemoryStore` or a shared ``RedisStore``).
    :param service: stamped on alerts that do not name one.
    :param dedup: seconds during which the same alert and status is not notified again.
    :param cooldown: seconds between two firing notifications of the same alert name.
    :param queue_size: alerts waiting beyond this are dropped (and the drop logged).
    :param backoff: seconds before the 2nd, 3rd… attempt after a failure without Retry-After.
    :param hold_size: alerts kept per channel while its receiver throttles it (429); beyond,
        the least important are dropped and counted (:attr:`held_dropped`).
    :param clock: what windows, retries and throttling are measured on.
    :param on_event: called with ``(event, alert, channel name)`` for each ``fired`` (an alert
        raised firing; channel ``""``), ``sent``, ``failed`` (not delivered) and ``dropped``
        (queue full: channel ``"<queue>"``; a throttled channel's hold full) — the alerting
        counters of the metrics; exceptions in it are logged, never raised.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        store: DecisionStore | None = None,
        *,
        service: str = "",
        dedup: float = 3600.0,
        cooldown: float = 300.0,
        queue_size: int = 1000,
        backoff: Sequence[float] = _BACKOFF,
        hold_size: int = 100,
        clock: Clock = SYSTEM,
        on_event: Callable[[str, Alert, str], object] | None = None,
    ) -> None:
        self.channels = list(channels)
        self._on_event = on_event
        self._backoff = tuple(backoff)
        self.clock = clock
        self.store: DecisionStore = store or MemoryStore(clock)
        #: Decides when ``store`` fails (a store that handles its own failures never does).
        self._fallback = MemoryStore(clock)
        self.service = service
        self.dedup = dedup
        self.cooldown = cooldown
        self._queue_size = queue_size
        self._queue: queue.Queue[object] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False
        self._failures = FailureLog()
        #: channel name -> monotonic time before which it is not called (429 Retry-After).
        self.blocked_until: dict[str, float] = {}
        self._retries: list[tuple[float, int, Channel, Alert, int]] = []
        self._seq = itertools.count()
        self.sent = 0
        self.hold_size = hold_size
        #: channel name -> what is held for it while it is throttled.
        self._held: dict[str, Hold] = {}
        #: channel name -> (when it opens, the channel), for channels holding alerts.
        self._reopen: dict[str, tuple[float, Channel]] = {}
        #: channel name -> alerts dropped while it was throttled (since start-up).
        self.held_dropped: Counter[str] = Counter()
        self._drop_logged: dict[str, float] = {}
        #: Channels whose receiver dedups and groups (Alertmanager): they get every alert and
        #: say themselves what is due (resends while an incident is open).
        self._repeating: list[Any] = [c for c in self.channels if repeats(c)]
        self._listeners: list[Listener] = []

    # -- listeners -------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, alert, channel, detail)`` for each alert raised and each
        channel's outcome (see :data:`Listener`). It runs in the thread raising the alert or
        in the sender thread: keep it quick (the console's history only queues it).
        Exceptions are logged, rate-limited."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _tell(self, event: str, alert: Alert, channel: str | None = None, detail: str = "") -> None:
        for listener in list(self._listeners):
            try:
                listener(event, alert, channel, detail)
            except Exception:
                self._failures("an alert router listener")

    # -- producer side (any thread) --------------------------------------------------------

    def notify(self, alert: Alert) -> bool:
        """Queue ``alert``; returns ``False`` if it was dropped (queue full or closed)."""
        if self._closed:
            return False
        if not alert.service and self.service:
            alert = replace(alert, service=self.service)
        if alert.status == FIRING:
            self._event("fired", alert, "")
        self._ensure_thread()
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self._failures("alert queue full: an alert was dropped")
            self._tell("dropped", alert, None, "the alert queue is full")
            self._event("dropped", alert, "<queue>")
            return False
        self._tell("queued", alert)
        return True

    def _event(self, event: str, alert: Alert, channel: str) -> None:
        on_event = self._on_event
        if on_event is None:
            return
        try:
            on_event(event, alert, channel)
        except Exception:
            self._failures("counting alerts")

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._thread is not None and self._pid == pid and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == pid and self._thread.is_alive():
                return
            if self._pid != pid:  # forked: the parent's queue and thread are not ours
                self._queue = queue.Queue(self._queue_size)
                self._retries = []
                self._held = {}
                self._reopen = {}
                for channel in self._repeating:
                    channel.forget_all()
            self._pid = pid
            self._thread = threading.Thread(
                target=self._run, name="flask_observe-alerts", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the sender thread, giving queued alerts up to ``timeout`` seconds."""
        self._closed = True
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    #: Seconds a process exiting normally gives queued alerts.
    EXIT_TIMEOUT = 2.0

    def flush_at_exit(self) -> None:
        """At interpreter exit: give queued alerts up to ``EXIT_TIMEOUT`` seconds."""
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            self.flush(self.EXIT_TIMEOUT)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty and no retry is pending (tests, CLI); alerts held for
        a throttled channel wait for the channel, not for this (:meth:`held`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self._queue.unfinished_tasks == 0
                and not self._retries
                and not any(c.pending() and not self._blocked(c) for c in self._repeating)
            ):
                return True
            time.sleep(0.01)
        return False

    # -- the sender thread -----------------------------------------------------------------

    def held(self) -> dict[str, int]:
        """Alerts held now, by channel (channels throttled by their receiver)."""
        return {name: len(hold) for name, hold in list(self._held.items())}

    def _run(self) -> None:
        while True:
            wait = None
            due = [when for when, _ in list(self._reopen.values())]
            if self._retries:
                due.append(self._retries[0][0])
            for channel in self._repeating:
                when = channel.next_due()
                if when is not None:
                    due.append(max(when, self.blocked_until.get(channel.name, 0.0)))
            if due:
                wait = wait_step(self.clock, max(0.0, min(due) - self.clock.monotonic()))
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                self._guarded_due()
                continue
            try:
                if item is _STOP:
                    return
                assert isinstance(item, Alert)
                self._dispatch(item)
                self._due()
            except Exception:
                self._failures("the alert sender")
            finally:
                self._queue.task_done()

    def _guarded_due(self) -> None:
        try:
            self._due()
        except Exception:
            self._failures("the alert sender")

    def _dispatch(self, alert: Alert) -> None:
        targets = []
        for channel in self.channels:
            if not channel.accepts(alert):
                continue
            if repeats(channel):
                self._record(channel, alert)
            else:
                targets.append(channel)
        if not targets:
            return
        cooldown = alert.cooldown if alert.cooldown is not None else self.cooldown
        decision = (alert.fingerprint, alert.name, alert.status == FIRING, self.dedup, cooldown)
        try:
            send = self.store.decide(*decision)
        except Exception:
            # A store that cannot decide: this process's dedup, never a storm.
            self._failures("the alert state store (deciding in this process)")
            send = self._fallback.decide(*decision)
        if not send:
            logger.debug("alert suppressed (dedup/cooldown)", extra={"alert": alert.name})
            self._tell("suppressed", alert)
            return
        for channel in targets:
            self._attempt(channel, alert, 1)

    def _attempt(self, channel: Channel, alert: Alert, attempt: int) -> None:
        now = self.clock.monotonic()
        blocked = self.blocked_until.get(channel.name, 0.0)
        if blocked > now:
            self._hold(channel, alert, blocked)
            return
        try:
            channel.send(alert)
        except DeliveryError as exc:
            if exc.retry_after is not None:
                until = self.clock.monotonic() + exc.retry_after
                self.blocked_until[channel.name] = until
                logger.warning(
                    "alert channel throttled for %gs: holding what is routed to it until then",
                    exc.retry_after,
                    extra={"alert": alert.name, "channel": channel.name},
                )
                self._hold(channel, alert, until)
                return
            if attempt >= MAX_ATTEMPTS:
                logger.error(
                    "alert not delivered: %s",
                    exc,
                    extra={"alert": alert.name, "channel": channel.name, "attempts": attempt},
                )
                self._tell("failed", alert, channel.name, f"{exc} (after {attempt} attempts)")
                self._event("failed", alert, channel.name)
                return
            logger.warning(
                "alert delivery failed, will retry: %s",
                exc,
                extra={"alert": alert.name, "channel": channel.name, "attempt": attempt},
            )
            backoff = self._backoff[min(attempt, len(self._backoff)) - 1]
            self._schedule(self.clock.monotonic() + backoff, channel, alert, attempt + 1)
            self._tell("retrying", alert, channel.name, f"{exc} (attempt {attempt})")
            return
        except Exception as exc:
            self._failures(f"alert channel {channel.name}")
            self._tell("failed", alert, channel.name, f"{type(exc).__name__}: {exc}")
            self._event("failed", alert, channel.name)
            return
        self.sent += 1
        self._tell("sent", alert, channel.name)
        self._event("sent", alert, channel.name)
        logger.info(
            "alert sent",
            extra={"alert": alert.name, "status": alert.status, "channel": channel.name},
        )

    def _schedule(self, when: float, channel: Channel, alert: Alert, attempt: int) -> None:
        heapq.heappush(self._retries, (when, next(self._seq), channel, alert, attempt))

    def _due(self) -> None:
        now = self.clock.monotonic()
        while self._retries and self._retries[0][0] <= now:
            _, _, channel, alert, attempt = heapq.heappop(self._retries)
            self._attempt(channel, alert, attempt)
        for name, (when, channel) in list(self._reopen.items()):
            if when <= now:
                del self._reopen[name]
                self._release(channel)
        for channel in self._repeating:
            self._post_due(channel)

    # -- channels that repeat (Alertmanager) -----------------------------------------------

    def _blocked(self, channel: Any) -> bool:
        return bool(self.blocked_until.get(channel.name, 0.0) > self.clock.monotonic())

    def _record(self, channel: Any, alert: Alert) -> None:
        try:
            channel.record(alert)
        except DeliveryError as exc:
            self._failures(f"alert channel {channel.name}: {exc}")
            return
        self._post_due(channel)

    def _post_due(self, channel: Any) -> None:
        """Post what the channel has due, unless its receiver asked us to wait."""
        now = self.clock.monotonic()
        if self._blocked(channel):
            return
        try:
            posted = channel.post_due(now, self.clock.time())
        except DeliveryError as exc:
            channel.failures += 1
            if exc.retry_after is not None:
                until = self.clock.monotonic() + exc.retry_after
                self.blocked_until[channel.name] = until
                channel.retry_at = until
                logger.warning(
                    "alert channel throttled for %gs: its open alerts are posted after that",
                    exc.retry_after,
                    extra={"channel": channel.name},
                )
                return
            backoff = self._backoff[min(channel.failures, len(self._backoff)) - 1]
            # The next try: the backoff, then every resend interval while it stays down.
            wait = backoff if channel.failures <= len(self._backoff) else channel.resend
            channel.retry_at = self.clock.monotonic() + wait
            logger.warning(
                "alert delivery failed, will retry in %gs: %s",
                wait,
                exc,
                extra={"channel": channel.name, "attempt": channel.failures},
            )
            return
        except Exception:
            channel.retry_at = self.clock.monotonic() + channel.resend
            self._failures(f"alert channel {channel.name}")
            return
        for alert, news in posted:
            self.sent += 1
            if news:
                self._tell("sent", alert, channel.name)
            self._event("sent", alert, channel.name)
            logger.log(
                logging.INFO if news else logging.DEBUG,
                "alert sent" if news else "alert sent again (still firing)",
                extra={"alert": alert.name, "status": alert.status, "channel": channel.name},
            )

    # -- throttled channels ----------------------------------------------------------------

    def _hold(self, channel: Channel, alert: Alert, until: float) -> None:
        name = channel.name
        hold = self._held.get(name)
        if hold is None:
            hold = self._held[name] = Hold(self.hold_size)
        self._reopen[name] = (until, channel)
        dropped = hold.add(alert)
        if dropped is not alert:
            self._tell("held", alert, name, "its receiver throttles the channel (429)")
        if dropped is None:
            return
        self.held_dropped[name] += 1
        self._tell("dropped", dropped, name, "its channel is throttled and its hold is full")
        self._event("dropped", dropped, name)
        extra = {"alert": dropped.name, "channel": name, "dropped": sum(hold.dropped.values())}
        now = self.clock.monotonic()
        if now - self._drop_logged.get(name, -_DROP_LOG_INTERVAL) >= _DROP_LOG_INTERVAL:
            self._drop_logged[name] = now
            logger.warning(
                "alert dropped: its channel is throttled and already holds %d alerts (more"
                " important ones are kept; the count goes into the summary sent when it opens)",
                len(hold),
                extra=extra,
            )
        else:
            logger.debug("alert dropped: its channel is throttled and its hold full", extra=extra)

    def _release(self, channel: Channel) -> None:
        """The channel opens: send what it holds, as one alert."""
        hold = self._held.pop(channel.name, None)
        self._drop_logged.pop(channel.name, None)
        if hold is None:
            return
        if hold.total > 1:
            logger.warning(
                "alert channel open again: %d alerts were routed to it while it was throttled"
                " (%d dropped); sending one summary",
                hold.total,
                sum(hold.dropped.values()),
                extra={"channel": channel.name},
            )
        self._attempt(channel, hold.release(channel.name, self.service, self.clock.time()), 1)

    # -- synchronous test ------------------------------------------------------------------

    def send_test(self) -> dict[str, str]:
        """Send a test alert to every channel now, bypassing dedup; ``{channel: "ok"|error}``."""
        alert = Alert(
            name="FlaskObserveTestAlert",
            severity="info",
            summary="Test alert from flask observe alerts test",
            description="If you can read this, this channel works.",
            service=self.service,
        )
        results: dict[str, str] = {}
        for channel in self.channels:
            try:
                channel.send(alert)
                results[channel.name] = "ok"
            except Exception as exc:
                results[channel.name] = str(exc) or type(exc).__name__
        return results
