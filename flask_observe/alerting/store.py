"""Who decides whether a notification goes out: per process, or shared through Redis.

One decision per (alert, status), atomic across every instance that shares the store:

- **firing**: a new incident is notified unless its alert name is in cooldown (then it is
  remembered as *quiet* and tried again on its next firing); an incident already notified is
  notified again only once the dedup window has passed (a reminder);
- **resolved**: notified only if its firing was notified; the incident is then closed.

With Redis, three instances seeing the same incident send one notification: the decision is a
Lua script, so exactly one of them wins. When Redis cannot be reached, :class:`RedisStore`
decides in this process instead (each process then notifies an incident at most once per
cooldown), says so once, tries Redis again every ``retry_interval`` seconds, and when it is
back hands it what this process notified and resolved meanwhile, so that each incident is
resolved once and a later one is not taken for it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from .._clock import SYSTEM, Clock

__all__ = ["DecisionStore", "MemoryStore", "Notified", "RedisStore"]

logger = logging.getLogger("flask_observe.alerting")

#: An incident not heard of for this long is forgotten (keeps Redis clean).
STATE_TTL = 7 * 24 * 3600


class DecisionStore(Protocol):
    def decide(
        self, fingerprint: str, name: str, firing: bool, dedup: float, cooldown: float
    ) -> bool:
        """Whether this notification should be sent (and record that it was)."""


@dataclass(frozen=True)
class Notified:
    """An incident whose firing this process notified, as a shared store needs to adopt it.

    :param at: epoch seconds of the notification.
    :param dedup_left: seconds of its dedup window still to run.
    :param cooldown_left: seconds of its name's cooldown still to run.
    """

    fingerprint: str
    name: str
    at: float
    dedup_left: float
    cooldown_left: float


class MemoryStore:
    """Decisions for this process only.

    :param clock: what dedup and cooldown windows are measured on.
    """

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, str] = {}
        self._until: dict[str, float] = {}
        #: fingerprint -> (alert name, epoch time) of each incident whose firing was notified.
        self._notified: dict[str, tuple[str, float]] = {}

    def _active(self, key: str, now: float) -> bool:
        until = self._until.get(key)
        if until is None or until <= now:
            self._until.pop(key, None)
            return False
        return True

    def decide(
        self, fingerprint: str, name: str, firing: bool, dedup: float, cooldown: float
    ) -> bool:
        now = self.clock.monotonic()
        with self._lock:
            state = self._state.get(fingerprint)
            dedup_key, cooldown_key = "d:" + fingerprint, "c:" + name
            if not firing:
                self._forget(fingerprint)
                return state == "sent"
            if state == "sent":
                if self._active(dedup_key, now):
                    return False
                self._until[dedup_key] = now + dedup
                return True
            if self._active(cooldown_key, now):
                self._state[fingerprint] = "quiet"
                return False
            self._sent(fingerprint, name, dedup, cooldown, now, self.clock.time())
            return True

    def record(self, fingerprint: str, name: str, dedup: float, cooldown: float, at: float) -> None:
        """Remember that this incident's firing was notified now, at epoch time ``at``
        (decided elsewhere)."""
        with self._lock:
            self._sent(fingerprint, name, dedup, cooldown, self.clock.monotonic(), at)

    def notified_at(self, fingerprint: str) -> tuple[str, float] | None:
        """``(name, epoch time)`` of the open incident's notified firing, if it was."""
        with self._lock:
            return self._notified.get(fingerprint)

    def forget(self, fingerprint: str) -> None:
        """Close the incident (its resolve was decided elsewhere)."""
        with self._lock:
            self._forget(fingerprint)

    def notified(self) -> list[Notified]:
        """The open incidents whose firing was notified, with what is left of their windows."""
        now = self.clock.monotonic()
        with self._lock:
            return [
                Notified(
                    fingerprint,
                    name,
                    at,
                    max(0.0, self._until.get("d:" + fingerprint, now) - now),
                    max(0.0, self._until.get("c:" + name, now) - now),
                )
                for fingerprint, (name, at) in self._notified.items()
            ]

    def _sent(
        self, fingerprint: str, name: str, dedup: float, cooldown: float, now: float, at: float
    ) -> None:
        self._until["c:" + name] = now + cooldown
        self._until["d:" + fingerprint] = now + dedup
        self._state[fingerprint] = "sent"
        self._notified[fingerprint] = (name, at)

    def _forget(self, fingerprint: str) -> None:
        self._state.pop(fingerprint, None)
        self._until.pop("d:" + fingerprint, None)
        self._notified.pop(fingerprint, None)


# State of an incident in Redis: 'sent:<epoch ms>' (notified then), 'quiet', or
# 'resolved:<epoch ms>' (a tombstone: its resolve was notified then; a later firing is a new
# incident). Plain 'sent' (written by earlier versions) counts as sent at 0.
_STATE = """
local function sent_at(state)
  if state == 'sent' then return 0 end
  if state and string.sub(state, 1, 5) == 'sent:' then return tonumber(string.sub(state, 6)) end
  return nil
end
local function resolved_at(state)
  if state and string.sub(state, 1, 9) == 'resolved:' then
    return tonumber(string.sub(state, 10))
  end
  return nil
end
"""

_DECIDE = (
    _STATE
    + """
local state = redis.call('GET', KEYS[1])
local firing = ARGV[1] == '1'
local dedup_ms = tonumber(ARGV[2])
local cooldown_ms = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local sent = sent_at(state)
if not firing then
  if sent then
    redis.call('SET', KEYS[1], 'resolved:' .. ARGV[5], 'EX', ttl)
    redis.call('DEL', KEYS[2])
    return 1
  end
  if state == 'quiet' then redis.call('DEL', KEYS[1]) end
  return 0
end
if sent then
  if dedup_ms > 0 and redis.call('SET', KEYS[2], '1', 'NX', 'PX', dedup_ms) then return 1 end
  return 0
end
if cooldown_ms > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[1], 'quiet', 'EX', ttl)
  return 0
end
if cooldown_ms > 0 then redis.call('SET', KEYS[3], '1', 'PX', cooldown_ms) end
if dedup_ms > 0 then redis.call('SET', KEYS[2], '1', 'PX', dedup_ms) end
redis.call('SET', KEYS[1], 'sent:' .. ARGV[5], 'EX', ttl)
return 1
"""
)

# An incident this process notified while Redis was unreachable: record it as sent (with what
# is left of its windows) unless Redis knows it as sent, or resolved since (returns 1: forget).
_ADOPT = (
    _STATE
    + """
local state = redis.call('GET', KEYS[1])
if sent_at(state) then return 0 end
local resolved = resolved_at(state)
if resolved and resolved >= tonumber(ARGV[1]) then return 1 end
redis.call('SET', KEYS[1], 'sent:' .. ARGV[1], 'EX', tonumber(ARGV[4]))
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) end
return 0
"""
)

# An incident this process notified (at ARGV[1]) and resolved while Redis was unreachable (at
# ARGV[2]): close it in Redis too, unless Redis knows a later incident or a later resolve.
_CLOSE = (
    _STATE
    + """
local state = redis.call('GET', KEYS[1])
local sent = sent_at(state)
if sent and sent > tonumber(ARGV[1]) then return 0 end
local resolved = resolved_at(state)
if resolved and resolved >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], 'resolved:' .. ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('DEL', KEYS[2])
return 1
"""
)


class RedisStore:
    """Decisions shared by every instance using the same Redis and key prefix; decided in
    this process while Redis is unreachable.

    :param url: ``redis://…``; connections time out fast and do not retry (the sender thread
        must not hang on Redis).
    :param prefix: key prefix (several services can share a Redis).
    :param retry_interval: seconds between two tries of an unreachable Redis (meanwhile each
        decision is this process's own, without waiting on Redis).
    :param clock: what windows and retries are measured on.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        timeout: float = 2.0,
        client: Any = None,
        *,
        retry_interval: float = 5.0,
        clock: Clock = SYSTEM,
    ) -> None:
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
                retry=Retry(NoBackoff(), 0),
            )
        self.client = client
        self.prefix = prefix
        self.retry_interval = retry_interval
        self.clock = clock
        self._decide = client.register_script(_DECIDE)
        self._adopt = client.register_script(_ADOPT)
        self._close = client.register_script(_CLOSE)
        #: fingerprint -> (name, notified, resolved: epoch times) of incidents this process
        #: resolved while Redis was unreachable, to close there when it is back.
        self._closed: dict[str, tuple[str, float, float]] = {}
        #: What this process notified, and the decisions while Redis is unreachable.
        self.local = MemoryStore(clock)
        #: Monotonic time Redis became unreachable; ``None`` while it answers.
        self.degraded_since: float | None = None
        #: How many times Redis became unreachable (for a metric).
        self.degradations = 0
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        """Whether decisions are currently this process's own (Redis unreachable)."""
        return self.degraded_since is not None

    def _keys(self, fingerprint: str, name: str) -> list[str]:
        p = self.prefix
        return [f"{p}:state:{fingerprint}", f"{p}:dedup:{fingerprint}", f"{p}:cooldown:{name}"]

    def decide(
        self, fingerprint: str, name: str, firing: bool, dedup: float, cooldown: float
    ) -> bool:
        with self._lock:
            now = self.clock.monotonic()
            if self.degraded_since is None or now >= self._retry_at:
                handed = 0
                try:
                    if self.degraded_since is not None:
                        handed = self._hand_back()
                    send, at = self._shared(fingerprint, name, firing, dedup, cooldown)
                except Exception as exc:
                    self._degrade(exc, now)
                else:
                    if self.degraded_since is not None:
                        self._recovered(now, handed)
                    if not firing:
                        self.local.forget(fingerprint)
                    elif send:
                        self.local.record(fingerprint, name, dedup, cooldown, at)
                    return send
            notified = None if firing else self.local.notified_at(fingerprint)
            send = self.local.decide(fingerprint, name, firing, dedup, cooldown)
            if notified is not None and send:
                self._closed[fingerprint] = (notified[0], notified[1], self.clock.time())
            return send

    def _shared(
        self, fingerprint: str, name: str, firing: bool, dedup: float, cooldown: float
    ) -> tuple[bool, float]:
        """Redis's decision, and the epoch time it was made at."""
        at = self.clock.time()
        args = ["1" if firing else "0", int(dedup * 1000), int(cooldown * 1000), STATE_TTL]
        args.append(int(at * 1000))
        return bool(self._decide(keys=self._keys(fingerprint, name), args=args)), at

    def _hand_back(self) -> int:
        """Give Redis what happened while it was away: the incidents this process resolved
        (closed there too), then those it notified (adopted); how many it took."""
        taken = 0
        for fingerprint, (name, notified, resolved) in list(self._closed.items()):
            args = [int(notified * 1000), int(resolved * 1000), STATE_TTL]
            taken += int(self._close(keys=self._keys(fingerprint, name)[:2], args=args))
            del self._closed[fingerprint]
        for incident in self.local.notified():
            args = [
                int(incident.at * 1000),
                int(incident.dedup_left * 1000),
                int(incident.cooldown_left * 1000),
                STATE_TTL,
            ]
            keys = self._keys(incident.fingerprint, incident.name)
            if self._adopt(keys=keys, args=args):  # resolved by another instance since
                self.local.forget(incident.fingerprint)
            else:
                taken += 1
        return taken

    def _degrade(self, exc: Exception, now: float) -> None:
        self._retry_at = now + self.retry_interval
        if self.degraded_since is not None:
            logger.debug("alert state store still unreachable: %s", type(exc).__name__)
            return
        self.degraded_since = now
        self.degradations += 1
        logger.warning(
            "alert state store unreachable (%s: %s): deduplicating in this process until it"
            " is back (each process notifies an alert at most once per cooldown); trying it"
            " again every %gs",
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
            self.retry_interval,
        )

    def _recovered(self, now: float, handed: int) -> None:
        assert self.degraded_since is not None
        logger.info(
            "alert state store reachable again after %.0fs: shared dedup resumed (%d"
            " incident(s) notified or resolved meanwhile handed to it)",
            now - self.degraded_since,
            handed,
        )
        self.degraded_since = None

    def close(self) -> None:
        self.client.close()
