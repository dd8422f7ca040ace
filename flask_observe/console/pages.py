"""The console's pages and how a feature adds one (:class:`Console`, :class:`Page`).

Every page is served at ``<OBSERVE_CONSOLE_PATH>/<slug>`` (and below it: ``<slug>/<rest>``),
behind the log viewer's sign-in, with the viewer's Content-Security-Policy, inside the shared
layout (``observe_console/layout.html``: the navigation of every page, by ``order``). The
first page in that order is where ``<OBSERVE_CONSOLE_PATH>`` itself leads.

A page module offers ``pages(wiring, console)`` returning its :class:`Page` objects, and is
named in :data:`flask_observe.console.setup.SECTIONS`::

    def pages(wiring: Wiring, console: Console) -> list[Page]:
        def overview(rest: str) -> ResponseReturnValue:
            if rest:
                abort(404)
            return console.render("observe_console/overview.html", page="overview", rows=...)

        return [Page("overview", "Overview", overview, order=0)]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson
from flask import Response, render_template
from flask.typing import ResponseReturnValue

from ..logviewer.signin import CSP

if TYPE_CHECKING:
    from ..logviewer.signin import SignIn
    from .errorstore import ErrorStore
    from .flusher import Flusher
    from .levels import LevelControl
    from .spanstore import SpanStore, StoreSpanProcessor
    from .store import ConsoleDB

__all__ = ["Console", "Page", "PageView"]

#: ``view(rest)``: ``rest`` is what follows ``<slug>/`` in the path ("" for the page itself).
PageView = Callable[[str], ResponseReturnValue]

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Page:
    """One page of the console.

    :param slug: its path segment (``traces`` → ``<console>/traces``): letters, digits, ``-``.
    :param title: its name in the navigation and its ``<h1>``.
    :param view: answers ``GET`` (and ``POST`` when in ``methods``) for the page and below it.
    :param order: place in the navigation (smaller first; the first is the landing page).
    :param methods: HTTP methods it answers; a ``POST`` must come from the same site.
    :param nav: listed in the navigation.
    """

    slug: str
    title: str
    view: PageView
    order: int = 100
    methods: tuple[str, ...] = ("GET",)
    nav: bool = True

    def __post_init__(self) -> None:
        if not self.slug or not all(c.isalnum() or c == "-" for c in self.slug):
            raise ValueError(f"a page's slug is letters, digits and '-': {self.slug!r}")
        if self.slug in ("static", "api"):
            raise ValueError(f"{self.slug!r} is reserved")


class Console:
    """The console of one app: its pages, its layout and the links between its parts.

    ``Observe.find(Console, app)``.

    :param base: ``OBSERVE_CONSOLE_PATH``.
    :param sign_in: the log viewer's sign-in, which every page is behind.
    :param service: the service's name, in every page's header.
    :param logs_url: the log viewer's page (links to a request's log lines).
    :param trace_url: a trace in the tracing UI (``…/trace/{trace_id}``), when configured.
    :param sentry_url: Sentry's issues page, when a DSN is set.
    """

    def __init__(
        self,
        base: str,
        sign_in: SignIn,
        service: str,
        *,
        logs_url: str | None = None,
        trace_url: str | None = None,
        sentry_url: str | None = None,
    ) -> None:
        self.base = base
        self.sign_in = sign_in
        self.service = service
        self.logs_url = logs_url
        self.trace_url = trace_url
        self.sentry_url = sentry_url
        self._pages: dict[str, Page] = {}
        #: The host's shared store, its writer thread, and what the features feed into it
        #: (``None``: that part is off).
        self.db: ConsoleDB | None = None
        self.flusher: Flusher | None = None
        self.spans: SpanStore | None = None
        self.span_processor: StoreSpanProcessor | None = None
        self.errors: ErrorStore | None = None
        self.levels: LevelControl | None = None
        #: Why the span store is off, for the Traces page.
        self.spans_off: str | None = None
        #: A request slower than this is listed as slow (``OBSERVE_CONSOLE_SLOW_MS``).
        self.slow_ms = 500.0
        self.assets: dict[str, tuple[Path, str]] = {
            "console.css": (STATIC / "console.css", "text/css"),
            "console.js": (STATIC / "console.js", "text/javascript"),
        }

    # -- pages -----------------------------------------------------------------------------

    def add_page(self, page: Page) -> Page:
        """Serve ``page`` from now on.

        :raises ValueError: a page with that slug exists.
        """
        if page.slug in self._pages:
            raise ValueError(f"the console has a page {page.slug!r} already")
        self._pages[page.slug] = page
        return page

    def add_asset(self, name: str, path: Path, mimetype: str) -> None:
        """Serve the file ``path`` at ``<console>/static/<name>`` (a script, a style sheet)."""
        self.assets[name] = (path, mimetype)

    def page(self, slug: str) -> Page | None:
        return self._pages.get(slug)

    @property
    def pages(self) -> list[Page]:
        """Every page, in navigation order."""
        return sorted(self._pages.values(), key=lambda p: (p.order, p.slug))

    @property
    def landing(self) -> Page | None:
        """Where ``<console>`` leads: the first page of the navigation."""
        listed = [p for p in self.pages if p.nav]
        return listed[0] if listed else None

    # -- URLs ------------------------------------------------------------------------------

    def url(self, slug: str, rest: str = "", **query: Any) -> str:
        """The URL of a page (or below it), with ``query`` (``None`` values left out)."""
        path = f"{self.base}/{slug}" + (f"/{rest}" if rest else "")
        args = {k: v for k, v in query.items() if v is not None and v != ""}
        return f"{path}?{urlencode(args)}" if args else path

    def logs_link(
        self, *, correlation_id: str | None = None, trace_id: str | None = None
    ) -> str | None:
        """The log viewer's search for one request's lines (a deep link the page reads)."""
        if self.logs_url is None or not (correlation_id or trace_id):
            return None
        args = {"correlation_id": correlation_id} if correlation_id else {"trace_id": trace_id}
        return f"{self.logs_url}#{urlencode(args)}"

    def external_trace_link(self, trace_id: str | None) -> str | None:
        """The trace in Jaeger (or another tracing UI), when its URL is configured."""
        if self.trace_url is None or not trace_id:
            return None
        return self.trace_url.replace("{trace_id}", trace_id)

    # -- answers ---------------------------------------------------------------------------

    @staticmethod
    def pid() -> int:
        """This worker's process ID (each page says which worker served it)."""
        return os.getpid()

    def render(
        self,
        template: str,
        *,
        page: str,
        status: int = 200,
        title: str | None = None,
        **context: Any,
    ) -> Response:
        """A page inside the layout: ``template`` extends ``observe_console/layout.html``.

        :param page: the slug of the page (marked current in the navigation).
        :param title: the ``<title>`` and ``<h1>`` (default: the page's title).
        """
        current = self._pages.get(page)
        html = render_template(
            template,
            console=self,
            current=page,
            title=title or (current.title if current else page),
            nav=[p for p in self.pages if p.nav],
            **context,
        )
        return self.with_csp(Response(html, status=status, mimetype="text/html"))

    @staticmethod
    def json(body: Any, status: int = 200) -> Response:
        """A JSON answer (orjson)."""
        return Response(orjson.dumps(body), status=status, mimetype="application/json")

    @staticmethod
    def with_csp(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP.format(nonce="")
        return response

    def links(self) -> Mapping[str, str | None]:
        """The outside places pages link to."""
        return {"logs": self.logs_url, "trace": self.trace_url, "sentry": self.sentry_url}
