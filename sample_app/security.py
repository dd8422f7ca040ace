"""The web habits the scraper shows: no cross-site writes, a page that cannot be framed or
run injected code, and a debug route behind the operator's credentials.

- **Cross-site requests** (CSRF): a browser says where a request comes from in
  ``Sec-Fetch-Site`` (every current browser) or, older ones, ``Origin``. A write (POST, PUT,
  PATCH, DELETE) from another site is refused with 403 — the page's "Scrape now" form and
  ``POST /api/scrapes`` alike. A client that sends neither header is not a browser (curl, a
  script, another service): there is no ambient cookie to abuse, so it is let through.
- **Headers**: a strict ``Content-Security-Policy`` on the page (scripts: none; styles: the
  app's own file), ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (no clickjacking),
  ``nosniff`` and ``Referrer-Policy: same-origin`` everywhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, abort, request

__all__ = ["install"]

UNSAFE_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " base-uri 'none'; frame-ancestors 'none'"
)


def same_origin() -> bool:
    """Whether the current request comes from this site (or from no browser at all)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def install(app: Flask) -> None:
    """Refuse cross-site writes and add the security headers to every response of ``app``."""

    @app.before_request
    def refuse_cross_site_writes() -> None:
        if request.method in UNSAFE_METHODS and not same_origin():
            abort(403, description="cross-site request refused")

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            headers.setdefault("Content-Security-Policy", PAGE_CSP)
            headers.setdefault("X-Frame-Options", "DENY")
        return response
