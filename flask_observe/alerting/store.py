"""Who decides whether a notification goes out: per process, or shared through Redis.

One decision per (alert, status), atomic across every instance that shares the store:

- **firing**: a new incident is notified unless its alert name is in cooldown (then it is
  remembered as *quiet* and tried again on its next firing); an incident already notified is
  notified again only once the dedup window has passed (a reminder);
- **resolved**: notified only if its firing was notified; the incident is then forgotten.

With Redis, three instances seeing the same incident send one notification: the decision is a
Lua script, so exactly one of them wins.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from .._clock import SYSTEM, Clock

__all__ = ["DecisionStore", "MemoryStore", "RedisStore"]

#: An incident not heard of for this long is forgotten (keeps Redis clean).
STATE_TTL = 7 * 24 * 3600


class DecisionStore(Protocol):
    def decide(
        self, fingerprint: str, name: str, firing: bool, dedup: float, cooldown: float
    ) -> bool:
        """Whether this notification should be sent (and record that it was)."""


class MemoryStore:
    """Decisions for this process only.

    :param clock: what dedup and cooldown windows are measured on.
    """

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, str] = {}
        self._until: dict[str, float] = {}

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
                self._state.pop(fingerprint, None)
                self._until.pop(dedup_key, None)
                return state == "sent"
            if state == "sent":
                if self._active(dedup_key, now):
                    return False
                self._until[dedup_key] = now + dedup
                return True
            if self._active(cooldown_key, now):
                self._state[fingerprint] = "quiet"
                return False
            self._until[cooldown_key] = now + cooldown
            self._until[dedup_key] = now + dedup
            self._state[fingerprint] = "sent"
            return True


_DECIDE = """
local state = redis.call('GET', KEYS[1])
local firing = ARGV[1] == '1'
local dedup_ms = tonumber(ARGV[2])
local cooldown_ms = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
if not firing then
  redis.call('DEL', KEYS[1], KEYS[2])
  if state == 'sent' then return 1 end
  return 0
end
if state == 'sent' then
  if dedup_ms > 0 and redis.call('SET', KEYS[2], '1', 'NX', 'PX', dedup_ms) then return 1 end
  return 0
end
if cooldown_ms > 0 and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[1], 'quiet', 'EX', ttl)
  return 0
end
if cooldown_ms > 0 then redis.call('SET', KEYS[3], '1', 'PX', cooldown_ms) end
if dedup_ms > 0 then redis.call('SET', KEYS[2], '1', 'PX', dedup_ms) end
redis.call('SET', KEYS[1], 'sent', 'EX', ttl)
return 1
"""


class RedisStore:
    """Decisions shared by every instance using the same Redis and key prefix.

    :param url: ``redis://…``; connections time out fast and do not retry (the sender thread
        must not hang on Redis).
    :param prefix: key prefix (several services can share a Redis).
    """

    def __init__(self, url: str, prefix: str, timeout: float = 2.0, client: Any = None) -> None:
        if client is None:
            import redis

            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
            )
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_DECIDE)

    def decide(
        self, fingerprint: str, name: str, firing: bool, dedup: float, cooldown: float
    ) -> bool:
        p = self.prefix
        keys = [f"{p}:state:{fingerprint}", f"{p}:dedup:{fingerprint}", f"{p}:cooldown:{name}"]
        args = ["1" if firing else "0", int(dedup * 1000), int(cooldown * 1000), STATE_TTL]
        return bool(self._script(keys=keys, args=args))

    def close(self) -> None:
        self.client.close()
