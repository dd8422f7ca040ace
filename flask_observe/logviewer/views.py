"""The log viewer over HTTP: a JSON API and a browser page, every route behind the shared
auth (bearer token or host callback, or the page's signed session cookie).

API (prefix ``OBSERVE_LOGVIEWER_API_PREFIX``, default ``/api/logs``):

- ``GET /files`` — the readable files, newest first;
- ``GET /search`` — one page of matching lines (see :mod:`.query` for the parameters);
- ``GET /tail/<file_name>?lines=100[&follow=1]`` — the last lines and ``next``, where the
  tail goes on; with ``follow``, a ``text/event-stream`` of new lines that survives rotation
  (409 where the server cannot hold a stream, see :func:`stream_refusal`);
  ``?after=<next>`` — the polling tail: the lines since, and the next ``next``.

Page (``OBSERVE_LOGVIEWER_UI_PATH``, default ``/observe/logs``): the UI, its two assets,
and ``POST login`` / ``POST logout`` for the session cookie (:mod:`.session`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from flask import Blueprint, Flask, Response, redirect, render_template, request, send_file
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from .._bodies import read_form, refuse_large_body
from .._optional import MissingDependencyError
from .positions import Position
from .query import QueryError
from .session import COOKIE_NAME, SessionSigner
from .signin import CSP, SignIn
from .signin import same_origin as _same_origin
from .store import BadName, NoSuchFile
from .streams import sse, stream_refusal
from .viewer import Busy, LogViewer

if TYPE_CHECKING:
    from ..state import ObserveState
    from .settings import LogViewerSettings

__all__ = ["register"]

BLUEPRINT = "observe_logviewer"
STATIC = Path(__file__).parent / "static"
ASSETS = {"logviewer.js": "text/javascript", "logviewer.css": "text/css"}


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _flag(value: str) -> bool:
    low = value.strip().lower()
    if low in ("", "1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise QueryError("follow: expected true or false")


def _loopback(host: str) -> bool:
    """Whether ``host`` (a Host header or an origin's netloc, maybe with a port) names this
    machine."""
    try:
        name = (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _plain_http_origin() -> bool:
    """The browser says (``Origin``) it is on plain HTTP, to a host that is not this
    machine."""
    origin = request.headers.get("Origin", "")
    parts = urlsplit(origin)
    return parts.scheme == "http" and not _loopback(parts.netloc)


def register(
    app: Flask, state: ObserveState, config: LogViewerSettings, viewer: LogViewer
) -> SignIn:
    """Register the viewer's blueprint (API and page) on ``app``; returns its sign-in, for
    the other pages behind it."""
    auth = state.auth
    core = state.config
    signer = (
        SessionSigner(core.auth_token, config.logviewer_session_seconds, auth.store)
        if core.auth_token and core.auth_callback is None
        else None
    )
    api, ui = config.logviewer_api_prefix, config.logviewer_ui_path
    sign_in = SignIn(auth, signer, ui, (api, ui), state.service_name)
    allowed, guarded = sign_in.allowed, sign_in.guarded
    sign_in_page, throttled_page = sign_in.sign_in_page, sign_in.throttled_page
    bp = Blueprint(BLUEPRINT, __name__, template_folder="templates")

    def cookie_secure() -> bool:
        """``Secure`` unless set otherwise, or plain HTTP on this machine (development)."""
        if config.logviewer_cookie_secure is not None:
            return config.logviewer_cookie_secure
        return request.is_secure or not _loopback(request.host)

    # -- API -------------------------------------------------------------------------------

    @bp.get(f"{api}/files", endpoint="files")
    @guarded
    def files() -> ResponseReturnValue:
        return _json({"files": viewer.list_files()})

    @bp.get(f"{api}/search", endpoint="search")
    @guarded
    def search() -> ResponseReturnValue:
        query = viewer.parse(request.args.to_dict(flat=False))
        body = viewer.search(query).as_dict()
        body["query"] = {
            "since": query.since,
            "until": query.until,
            "order": "newest" if query.newest_first else "oldest",
            "limit": query.limit,
        }
        return _json(body)

    def position(text: str, name: str) -> Position:
        try:
            return Position.decode(text, viewer.signer)
        except ValueError:
            raise QueryError(
                f"{name}: not a position of this log viewer (altered, or signed by another"
                " process: see docs/logviewer.md, 'Cursors and event IDs')"
            ) from None

    @bp.get(f"{api}/tail/<file_name>", endpoint="tail")
    @guarded
    def tail(file_name: str) -> ResponseReturnValue:
        args = request.args.to_dict(flat=False)
        lines_text = (args.pop("lines", None) or ["100"])[-1]
        follow = _flag((args.pop("follow", None) or ["false"])[-1])
        after_values = args.pop("after", None)
        after = after_values[-1] if after_values else None
        try:
            lines = int(lines_text)
        except ValueError:
            raise QueryError("lines: expected an integer") from None
        if not 0 <= lines <= viewer.limits.max_results:
            raise QueryError(f"lines: expected 0 to {viewer.limits.max_results}")
        log_file = viewer.store.resolve(file_name)
        if (follow or after) and not log_file.active:
            raise QueryError("follow: only an active file grows; this one is rotated")
        if after is not None:  # the polling tail
            if follow:
                raise QueryError("after: polls without a stream; not with follow")
            start = position(after, "after")
            query = viewer.tail_query(file_name, args)
            polled = viewer.poll(file_name, query, start, max(lines, 1))
            assert polled.position is not None
            return _json(
                {
                    "file": file_name,
                    "results": polled.results,
                    "notices": polled.notices,
                    "next": polled.position.encode(viewer.signer),
                    "more": polled.more,
                }
            )
        if follow:
            refusal = stream_refusal(request.environ, config.logviewer_follow_mode)
            if refusal is None and viewer.max_followers == 0:
                refusal = (
                    "live tail streams are off (OBSERVE_LOGVIEWER_MAX_FOLLOWERS=0); poll"
                    " GET …/tail/<file>?after=<next> instead"
                )
            if refusal is not None:
                return _json({"error": refusal, "poll": True}, 409)
        header = request.headers.get("Last-Event-ID", "")
        resume = position(header, "Last-Event-ID") if follow and header else None
        if resume is not None:  # a reconnect: go on after the last event the client got
            lines = 0
        page, query, start = viewer.tail(file_name, args, lines)
        if not follow:
            following = start.encode(viewer.signer) if log_file.active else None
            return _json({"file": file_name, **page.as_dict(), "next": following})
        if resume is not None:
            start = resume
        events = viewer.follow(file_name, query, start)
        return Response(
            sse(
                page.results,
                start.encode(viewer.signer),
                events,
                lambda where: where.encode(viewer.signer),
            ),
            mimetype="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    # -- page ------------------------------------------------------------------------------

    @bp.get(ui, endpoint="page")
    def page() -> ResponseReturnValue:
        decision = allowed()
        if decision.status == 429:
            return throttled_page(decision)
        if not decision.granted:
            return sign_in_page(401)
        html = render_template(
            "observe_logviewer/index.html",
            api=api,
            ui=ui,
            trace_url=config.logviewer_trace_url or "",
            max_results=viewer.limits.max_results,
            follow_mode="poll"
            if viewer.max_followers == 0
            or stream_refusal(request.environ, config.logviewer_follow_mode)
            else "stream",
            can_sign_out=signer is not None,
            service=state.service_name,
        )
        response = Response(html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = CSP.format(nonce="")
        return response

    @bp.get(f"{ui}/static/<name>", endpoint="asset")
    @guarded
    def asset(name: str) -> ResponseReturnValue:
        mimetype = ASSETS.get(name)
        if mimetype is None:
            return _error(404, "no such asset")
        return send_file(STATIC / name, mimetype=mimetype, max_age=0)

    @bp.post(f"{ui}/login", endpoint="login")
    def login() -> ResponseReturnValue:
        if signer is None:
            return auth.deny()
        if not _same_origin():
            return _error(403, "cross-site sign-in refused")
        form = read_form()  # a few KiB at most: 413 beyond
        token = form.get("token", "")
        back = sign_in.safe_next(form.get("next"))
        if not token:
            return sign_in_page(401, back=back)
        decision = auth.attempt(token)
        if decision.status == 429:
            return throttled_page(decision, back=back)
        if not decision.granted:
            return sign_in_page(403, "That token is not the right one.", back=back)
        secure = cookie_secure()
        if secure and not request.is_secure and _plain_http_origin():
            return sign_in_page(
                400,
                "This page came over plain HTTP, and the session cookie is Secure: your"
                " browser would not keep it. Open the page over HTTPS (see the deployment"
                " docs: ProxyFix, X-Forwarded-Proto), or set OBSERVE_LOGVIEWER_COOKIE_SECURE"
                "=false on a network you trust.",
                back=back,
            )
        response = redirect(back, code=303)
        value = signer.issue(auth.clock.time())
        for path in sign_in.scopes:
            response.set_cookie(
                COOKIE_NAME,
                value,
                max_age=signer.lifetime,
                path=path,
                secure=secure,
                httponly=True,
                samesite="Strict",
            )
        return response

    @bp.post(f"{ui}/logout", endpoint="logout")
    @guarded
    def logout() -> ResponseReturnValue:
        if not _same_origin():
            return _error(403, "cross-site sign-out refused")
        if signer is not None:  # ended on every worker, not only forgotten by this browser
            signer.revoke(request.cookies.get(COOKIE_NAME), auth.clock.time())
        response = redirect(ui, code=303)
        for path in sign_in.scopes:
            response.delete_cookie(
                COOKIE_NAME, path=path, secure=cookie_secure(), httponly=True, samesite="Strict"
            )
        return response

    # -- errors and headers ----------------------------------------------------------------

    bp.before_request(refuse_large_body)  # no route here reads more than a sign-in form

    @bp.errorhandler(QueryError)
    @bp.errorhandler(BadName)
    def bad_request(error: Exception) -> ResponseReturnValue:
        return _error(400, str(error))

    @bp.errorhandler(NoSuchFile)
    def not_found(error: Exception) -> ResponseReturnValue:
        return _error(404, "no such log file")

    @bp.errorhandler(Busy)
    def busy(error: Exception) -> ResponseReturnValue:
        response = _error(429, str(error))
        response.headers["Retry-After"] = "1"
        return response

    @bp.errorhandler(MissingDependencyError)
    def missing(error: Exception) -> ResponseReturnValue:
        return _error(501, str(error))

    @bp.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        return _error(error.code or 500, error.description or error.name)

    @bp.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Cache-Control", "no-store")
        headers["X-Content-Type-Options"] = "nosniff"
        # Same-origin requests keep their Origin (sign-in checks it); a link out to the
        # tracing UI carries no URL of ours.
        headers["Referrer-Policy"] = "same-origin"
        headers["X-Frame-Options"] = "DENY"
        return response

    app.register_blueprint(bp)
    return sign_in
