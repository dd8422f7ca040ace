"""Who may see the sensitive endpoints: health details, the log viewer, ``/metrics`` if asked.

One mechanism for all of them: a bearer token from config (``OBSERVE_AUTH_TOKEN``, compared in
constant time) or a host-supplied ``callable(request) -> bool`` (``OBSERVE_AUTH_CALLBACK``),
which is asked instead when set — plug in the host's own session or API-key check there.
With neither configured, nobody is authorised over HTTP (safe default).

Guessing is throttled per client: each wrong token (bearer header or sign-in form) fills the
client's bucket, which drains at ``OBSERVE_AUTH_MAX_FAILURES`` per
``OBSERVE_AUTH_FAILURE_WINDOW_SECONDS``; a full bucket means ``429`` with ``Retry-After`` and
no comparison at all (a right token is refused too, so a throttled guess learns nothing). The
client is ``request.remote_addr``: the peer, or what the host's ``ProxyFix`` made of
``X-Forwarded-For`` (the header is never read here), an IPv6 client by its /64. The buckets
live in the :class:`~flask_observe._authstore.AuthStore` every worker of the host shares.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Request, Response, jsonify, request
from flask.typing import ResponseReturnValue

from ._clock import SYSTEM, Clock
from ._internal import FailureLog

if TYPE_CHECKING:
    from ._authstore import AuthStore
    from .config import CoreSettings

__all__ = ["Authorizer", "Decision", "client_key"]

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])

REALM = 'Bearer realm="flask_observe"'
logger = logging.getLogger("flask_observe")


@dataclass(frozen=True)
class Decision:
    """The answer to one request's credentials.

    :param status: 200 (granted), 401 (none given), 403 (wrong), 429 (too many wrong ones).
    :param retry_after: seconds to wait, with 429.
    """

    status: int
    retry_after: int = 0

    @property
    def granted(self) -> bool:
        return self.status == 200


GRANTED = Decision(200)
MISSING = Decision(401)
WRONG = Decision(403)


def client_key(req: Request) -> str:
    """Whose failures a request adds to: its address (IPv6: its /64, the block one host
    usually holds; an IPv4-mapped address as IPv4)."""
    addr = req.remote_addr or "unknown"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class Authorizer:
    """Decides whether a request may see sensitive data.

    :param token: the bearer token that grants access, or ``None``.
    :param callback: ``callable(request) -> bool``; asked instead of the token when set.
    :param store: where failed attempts (and ended sessions) are shared; ``None``: no
        throttling.
    :param max_failures: wrong tokens a client may send in a burst; afterwards one per
        ``window / max_failures`` seconds.
    :param window: seconds in which ``max_failures`` wrong tokens drain away.
    :param clock: read for every decision (tests replace :attr:`clock` to move time).
    """

    def __init__(
        self,
        token: str | None,
        callback: Callable[[Request], bool] | None,
        *,
        store: AuthStore | None = None,
        max_failures: int = 10,
        window: float = 60.0,
        clock: Clock = SYSTEM,
    ) -> None:
        self._token = token.encode() if token else None
        self._callback = callback
        self._failures = FailureLog()
        self.store = store
        self.max_failures = max_failures
        self.window = window
        self.clock = clock

    @classmethod
    def from_config(cls, config: CoreSettings, service: str) -> Authorizer:
        """The app's authorizer; its store when a token is the way in.

        :raises ConfigError: ``OBSERVE_AUTH_STATE_DIR`` cannot be used (nothing is made yet).
        """
        store = None
        if config.auth_token and config.auth_callback is None:
            from ._authstore import AuthStore, check_dir, store_path

            directory = check_dir(config.auth_state_dir)
            key = hmac.new(config.auth_token.encode(), b"flask_observe", hashlib.sha256).digest()
            store = AuthStore(
                store_path(directory, service, key), private=config.auth_state_dir is None
            )
        return cls(
            config.auth_token,
            config.auth_callback,
            store=store,
            max_failures=config.auth_max_failures,
            window=config.auth_failure_window_seconds,
        )

    @property
    def configured(self) -> bool:
        """Whether any way of granting access is set up."""
        return self._token is not None or self._callback is not None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def token_matches(self, value: str | None) -> bool:
        """Constant-time comparison of ``value`` with the configured token (no throttling:
        :meth:`attempt` is the way for anything a client sent)."""
        if self._token is None or not value:
            return False
        return hmac.compare_digest(value.encode("utf-8", "replace"), self._token)

    # -- decisions -------------------------------------------------------------------------

    def decide(self, req: Request | None = None) -> Decision:
        """The decision for ``req`` (default: the current request): its callback, or its
        bearer token (throttled). A callback that raises counts as a refusal (logged,
        rate-limited)."""
        req = req if req is not None else request
        if self._callback is not None:
            try:
                return GRANTED if self._callback(req) else WRONG
            except Exception:
                self._failures("the OBSERVE_AUTH_CALLBACK")
                return WRONG
        return self.attempt(bearer_token(req), req)

    def attempt(self, value: str | None, req: Request | None = None) -> Decision:
        """Check a token ``req``'s client sent (a header, a form field): 401 without one,
        429 while the client is throttled (nothing compared), else 200 or 403 (counted)."""
        if not value:
            return MISSING
        if self._token is None:
            return WRONG
        req = req if req is not None else request
        client = client_key(req)
        now = self.clock.time()
        wait = self._wait(client, now)
        if wait > 0:
            return Decision(429, max(1, math.ceil(wait)))
        if self.token_matches(value):
            return GRANTED
        self._fail(client, now)
        return WRONG

    def is_authorized(self, req: Request | None = None) -> bool:
        """Whether ``req`` (default: the current request) may see sensitive data."""
        return self.decide(req).granted

    @property
    def _interval(self) -> float:
        return self.window / self.max_failures

    def _wait(self, client: str, now: float) -> float:
        """Seconds before ``client`` may try again (0: now)."""
        if self.store is None:
            return 0.0
        try:
            drained = self.store.drained_at(client, now)
        except Exception:  # the store is broken: throttling is off, the host goes on
            self._failures(
                f"the shared sign-in state at {self.store.path} (reading failed attempts)"
            )
            return 0.0
        return drained - now - (self.window - self._interval) - 1e-9

    def _fail(self, client: str, now: float) -> None:
        if self.store is None:
            return
        try:
            drained = self.store.add_failure(client, now, self._interval)
        except Exception:
            self._failures(
                f"the shared sign-in state at {self.store.path} (counting a failed attempt)"
            )
            return
        full = self.window - self._interval
        # Said when a burst fills the bucket, not again for each guess trickling in after.
        if drained - now > full + 1e-9 and drained - now - self._interval <= max(
            0.0, full - self._interval
        ):
            logger.warning(
                "flask_observe: %d wrong tokens from %s; refusing its tokens for %.0f s",
                self.max_failures,
                client,
                drained - now - self.window + self._interval,
                extra={"client": client},
            )

    # -- views -----------------------------------------------------------------------------

    def require(self, view: F) -> F:
        """Decorate a view: 401 without credentials, 403 with wrong ones, 429 when throttled."""

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            decision = self.decide()
            if decision.granted:
                return view(*args, **kwargs)
            return self.deny(decision)

        return guarded  # type: ignore[return-value]

    def deny(self, decision: Decision | None = None) -> Response:
        """The response for a refused request: 401, 403 or 429, JSON bodies.

        :param decision: what :meth:`decide` said; ``None``: judged from the headers alone.
        """
        if decision is None:
            no_token = self._callback is None and bearer_token(request) is None
            decision = MISSING if no_token else WRONG
        if decision.status == 401:
            response = jsonify(error="authentication required")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = REALM
            return response
        if decision.status == 429:
            response = jsonify(error="too many wrong tokens from this address; try again later")
            response.status_code = 429
            response.headers["Retry-After"] = str(decision.retry_after)
            return response
        response = jsonify(error="forbidden")
        response.status_code = 403
        return response


def bearer_token(req: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = req.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
