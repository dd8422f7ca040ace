"""The one sign-in of flask_observe's browser pages: the log viewer's, shared with the
pages other features serve (the console) through :class:`SignIn`.

A request is let in by the shared auth (bearer token or the host's callback) or by the
page's signed session cookie (:mod:`.session`). The cookie is scoped to the paths of the
pages that use it (:meth:`SignIn.add_scope`); sign-in sets it on each, sign-out ends it on
every worker and clears it on each.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue

from ..auth import GRANTED, Decision
from .session import COOKIE_NAME

if TYPE_CHECKING:
    from ..auth import Authorizer
    from .session import SessionSigner

__all__ = ["CSP", "SignIn", "same_origin"]

#: The Content-Security-Policy of every page behind the sign-in (``{nonce}``: empty, or
#: `` 'nonce-…'`` for the sign-in page's one inline script and style).
CSP = (
    "default-src 'none'; script-src 'self'{nonce}; style-src 'self'{nonce}; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def same_origin() -> bool:
    """A form post from this site, not a cross-site one (login CSRF, logout CSRF).

    Browsers say where a request comes from in ``Sec-Fetch-Site``; older ones only in
    ``Origin``. A client that sends neither is not a browser (curl, a script): nothing to
    forge there."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


class SignIn:
    """Who may see the browser pages, and the sign-in page for those who may not yet.

    ``Observe.find(SignIn, app)`` (set up with the log viewer).

    :param auth: the app's shared auth.
    :param signer: issues and checks session cookies; ``None`` with ``OBSERVE_AUTH_CALLBACK``
        (the host's own sign-in decides).
    :param ui: the log viewer's page, where sign-in and sign-out are posted
        (``<ui>/login``, ``<ui>/logout``).
    :param scopes: the path prefixes the session cookie is sent to.
    :param service: the service's name, shown on the sign-in page.
    """

    def __init__(
        self,
        auth: Authorizer,
        signer: SessionSigner | None,
        ui: str,
        scopes: tuple[str, ...],
        service: str,
    ) -> None:
        self.auth = auth
        self.signer = signer
        self.ui = ui
        self._scopes = list(scopes)
        self.service = service

    @property
    def scopes(self) -> tuple[str, ...]:
        """The paths the session cookie is set on (the viewer's page and API, and each
        added)."""
        return tuple(self._scopes)

    def add_scope(self, path: str) -> None:
        """Send the session cookie to ``path`` (and below) as well: a page of another
        feature behind this sign-in. Sessions begun before see it after their next sign-in."""
        if path not in self._scopes:
            self._scopes.append(path)

    def safe_next(self, target: str | None) -> str:
        """Where to go after sign-in or sign-out: ``target`` when it is a path under one of
        the scopes (never another site), else the log viewer's page."""
        if not target or not target.startswith("/") or target.startswith("//"):
            return self.ui
        if "\\" in target or any(ord(c) < 0x20 for c in target):
            return self.ui
        path = target.split("?", 1)[0].split("#", 1)[0]
        for scope in self._scopes:
            if path == scope or path.startswith(scope.rstrip("/") + "/"):
                return target
        return self.ui

    def allowed(self) -> Decision:
        """The decision for the current request: the shared auth's, or granted by a live
        session cookie."""
        decision = self.auth.decide()
        if decision.granted:
            return decision
        if self.signer is not None and self.signer.valid(
            request.cookies.get(COOKIE_NAME), self.auth.clock.time()
        ):
            return GRANTED
        return decision

    def guarded(
        self, view: Callable[..., ResponseReturnValue]
    ) -> Callable[..., ResponseReturnValue]:
        """``view`` for signed-in callers only; others get the shared auth's 401/403/429
        (an API: no sign-in page)."""

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            decision = self.allowed()
            if not decision.granted:
                return self.auth.deny(decision)
            return view(*args, **kwargs)

        return wrapper

    def page(self, view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
        """``view`` for signed-in callers only; others get the sign-in page (401, or 429
        with ``Retry-After`` for a throttled client) that comes back here afterwards."""

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            decision = self.allowed()
            if decision.status == 429:
                return self.throttled_page(decision)
            if not decision.granted:
                return self.sign_in_page(401, back=request.full_path.rstrip("?"))
            return view(*args, **kwargs)

        return wrapper

    def sign_in_page(
        self,
        status: int,
        message: str | None = None,
        retry_after: int | None = None,
        back: str | None = None,
    ) -> Response:
        """The sign-in form (posting to ``<ui>/login``), with the given status."""
        nonce = secrets.token_urlsafe(12)
        back_to = self.safe_next(back)
        html = render_template(
            "observe_logviewer/login.html",
            ui=self.ui,
            can_sign_in=self.signer is not None,
            message=message,
            nonce=nonce,
            service=self.service,
            next=back_to if back_to != self.ui else "",
        )
        response = Response(html, status=status, mimetype="text/html")
        response.headers["Content-Security-Policy"] = CSP.format(nonce=f" 'nonce-{nonce}'")
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    def throttled_page(self, decision: Decision, back: str | None = None) -> Response:
        message = (
            "Too many wrong tokens from your address. Try again in"
            f" {decision.retry_after} second{'s' if decision.retry_after != 1 else ''}."
        )
        return self.sign_in_page(429, message, decision.retry_after, back=back)
