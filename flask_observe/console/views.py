"""The console over HTTP: one blueprint, every route behind the log viewer's sign-in.

- ``GET <console>`` — leads to the first page (:attr:`Console.landing`);
- ``GET <console>/static/<name>`` — the pages' assets (no CDN);
- ``<console>/<slug>[/<rest>]`` — a page (:class:`~.pages.Page`); a ``POST`` must come
  from the same site (``Sec-Fetch-Site`` / ``Origin``), as the viewer's sign-in does.

Pages get the viewer's Content-Security-Policy and the same security headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, abort, redirect, request, send_file
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from .._bodies import refuse_large_body
from ..logviewer.signin import CSP, same_origin

if TYPE_CHECKING:
    from .pages import Console

__all__ = ["BLUEPRINT", "register"]

BLUEPRINT = "observe_console"


def register(app: Flask, console: Console) -> None:
    """Register the console's blueprint on ``app``."""
    base = console.base
    sign_in = console.sign_in
    bp = Blueprint(BLUEPRINT, __name__, template_folder="templates")

    @bp.get(base, endpoint="index")
    @sign_in.page
    def index() -> ResponseReturnValue:
        landing = console.landing
        if landing is None:
            abort(404)
        return redirect(console.url(landing.slug), code=302)

    @bp.get(f"{base}/static/<name>", endpoint="asset")
    @sign_in.guarded
    def asset(name: str) -> ResponseReturnValue:
        found = console.assets.get(name)
        if found is None:
            abort(404)
        return send_file(found[0], mimetype=found[1], max_age=0)

    def dispatch(slug: str, rest: str = "") -> ResponseReturnValue:
        page = console.page(slug)
        if page is None or request.method not in page.methods:
            abort(404 if page is None else 405)
        if request.method == "POST" and not same_origin():
            abort(403, "cross-site request refused")
        return page.view(rest)

    guarded_page = sign_in.page(dispatch)
    methods = ["GET", "POST"]
    bp.add_url_rule(f"{base}/<slug>", "page", guarded_page, methods=methods)
    bp.add_url_rule(f"{base}/<slug>/<path:rest>", "page_rest", guarded_page, methods=methods)

    bp.before_request(refuse_large_body)  # the pages' forms are small

    @bp.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> ResponseReturnValue:
        status = error.code or 500
        if error.code in (301, 302, 303, 307, 308):
            return error.get_response()
        wants_json = request.accept_mimetypes.best == "application/json"
        if wants_json:
            return console.json({"error": error.description or error.name}, status)
        return console.render(
            "observe_console/error.html",
            page="",
            title=f"{status} {error.name}",
            status=status,
            description=error.description,
        )

    @bp.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Cache-Control", "no-store")
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "same-origin"
        headers["X-Frame-Options"] = "DENY"
        headers.setdefault("Content-Security-Policy", CSP.format(nonce=""))
        return response

    app.register_blueprint(bp)
