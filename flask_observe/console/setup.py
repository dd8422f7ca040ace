"""The console feature: traces, errors and runtime controls of one app in the browser,
behind the log viewer's sign-in, with nothing else running (docs/console.md)."""

from __future__ import annotations

import importlib
import logging
import re
from typing import TYPE_CHECKING, Any

from .._routes import Claim, refuse_taken, routes, watch
from ..config import ConfigError
from ..feature import Feature, Plan, Wiring
from ..hooks import Stage
from ..logviewer.settings import LogViewerSettings
from .settings import ConsoleSettings

if TYPE_CHECKING:
    from .pages import Console

__all__ = ["FEATURE", "SECTIONS", "claim"]

#: The modules of the console's pages (``flask_observe.console.<name>``), each with
#: ``pages(wiring, console) -> list[Page]``; the navigation follows each page's ``order``
#: (the overview, order 0, is the landing page). Add a page: a module here, one line.
SECTIONS: tuple[str, ...] = (
    "overview",  # first: it sets up the rollups and history the alerts page reads
    "traces",
    "errors",
    "loggers",
    "info",
    "alerts",
)


def _wanted(plan: Plan) -> bool:
    enabled = plan.settings(ConsoleSettings).console_enabled
    if enabled is None:
        return "logviewer" in plan.on
    return enabled


def claim(settings: ConsoleSettings) -> Claim:
    base = settings.console_path
    return Claim(
        "OBSERVE_CONSOLE_PATH",
        "the console",
        routes(base, f"{base}/static/<name>")
        + routes(f"{base}/<slug>", f"{base}/<slug>/<path:rest>", methods=("GET", "POST")),
        "/_observe/console",
    )


def _check(plan: Plan) -> None:
    settings = plan.settings(ConsoleSettings)
    if settings.console_spans and "tracing" not in plan.on:
        raise ConfigError(
            "OBSERVE_CONSOLE_SPANS: the span store keeps the spans tracing records; turn"
            " tracing on (OBSERVE_TRACING_ENABLED=true; no collector is needed)"
        )
    if "logviewer" not in plan.on:
        raise ConfigError(
            "OBSERVE_CONSOLE_ENABLED: the console is behind the log viewer's sign-in; turn the"
            " log viewer on (OBSERVE_LOGVIEWER_ENABLED=true, with OBSERVE_AUTH_TOKEN and"
            " OBSERVE_LOG_DIR)"
        )
    viewer = plan.settings(LogViewerSettings)
    base = settings.console_path
    for other in (viewer.logviewer_ui_path, viewer.logviewer_api_prefix):
        if base == other or base.startswith(other + "/") or other.startswith(base + "/"):
            raise ConfigError(
                f"OBSERVE_CONSOLE_PATH: must not be or contain a path of the log viewer"
                f" ({base!r} and {other!r})"
            )
    refuse_taken(plan.app, claim(settings))


def _excluded(plan: Plan) -> tuple[str, ...]:
    # The console's own answers stay out of the traces and the access log it shows.
    return (rf"^{re.escape(plan.settings(ConsoleSettings).console_path)}(?:/|$)",)


def _setup(wiring: Wiring) -> None:
    from ..logviewer.signin import SignIn
    from .pages import Console
    from .views import register

    settings = wiring.settings(ConsoleSettings)
    sign_in = wiring.get(SignIn)
    if sign_in is None:  # the check makes sure the viewer is on
        raise RuntimeError("the console needs the log viewer's sign-in")
    sign_in.add_scope(settings.console_path)
    viewer = wiring.settings(LogViewerSettings)
    console = Console(
        settings.console_path,
        sign_in,
        wiring.service_name,
        logs_url=viewer.logviewer_ui_path,
        trace_url=_trace_url(wiring),
    )
    _stores(wiring, settings, console)
    for name in SECTIONS:
        module = importlib.import_module(f"{__package__}.{name}")
        for page in module.pages(wiring, console):
            console.add_page(page)
    register(wiring.app, console)
    _make_schema(console)
    wiring.on_close(watch(wiring.app, claim(settings)))
    wiring.provide(console)
    wiring.publish_url("console", settings.console_path)


def _make_schema(console: Console) -> None:
    """The store's tables, made at setup (every part has added its own by now); a file that
    cannot be written now is left to the writer, which retries at each round."""
    import sqlite3

    if console.db is None:
        return
    try:
        console.db.make_schema()
    except (OSError, sqlite3.Error) as exc:
        logging.getLogger("flask_observe.console").warning(
            "the console's store %s could not be made at setup (%s): the console's writer"
            " retries at each round",
            console.db.path,
            exc,
        )


def _stores(wiring: Wiring, settings: ConsoleSettings, console: Console) -> None:
    """The host's shared SQLite file, the flusher thread, and what feeds them: the span
    store on the tracing feature's provider, the error groups on the errors feature."""
    from ..errors.capture import ErrorCapture
    from ..logging.settings import LoggingSettings
    from .errorstore import ErrorStore
    from .flusher import Flusher
    from .store import ConsoleDB

    directory = settings.console_dir or wiring.settings(LoggingSettings).log_dir
    if directory is None:  # the log viewer's check makes sure there is a log directory
        raise RuntimeError("the console needs OBSERVE_CONSOLE_DIR or OBSERVE_LOG_DIR")
    db = console.db = ConsoleDB(directory)
    flusher = console.flusher = Flusher()
    flusher.prepare("store", db.connection)  # the writer's own connection, and the schema
    console.slow_ms = settings.console_slow_ms
    wiring.on_close(db.close)
    wiring.on_close(flusher.close)  # runs first: the last round writes, then the file closes
    # Each worker's flusher starts with its first request (logger levels are applied by it).
    wiring.request_hook(Stage.START, lambda record: flusher.ensure_started())
    capture = wiring.get(ErrorCapture)
    if capture is not None:
        errors = console.errors = ErrorStore(db, settings.console_errors_max_groups)
        errors.wake = flusher.ensure_started
        flusher.add("error groups", errors.flush)
        capture.add_listener(errors.listener)
        wiring.on_close(lambda: capture.remove_listener(errors.listener))
    _span_store(wiring, settings, console, flusher, db)


def _span_store(
    wiring: Wiring, settings: ConsoleSettings, console: Console, flusher: Any, db: Any
) -> None:
    if settings.console_spans is False:
        console.spans_off = "OBSERVE_CONSOLE_SPANS is false"
        return
    if "tracing" not in wiring.state.features:
        console.spans_off = (
            "tracing is off: set OBSERVE_TRACING_ENABLED=true (no collector is needed)"
        )
        return
    from ..tracing.handle import TracingSetup
    from ..tracing.settings import TracingSettings
    from .spanstore import SpanStore, StoreSpanProcessor

    tracing = wiring.get(TracingSetup)
    store = SpanStore(
        db,
        settings.console_spans_max,
        settings.console_spans_max_age,
        redact=wiring.settings(TracingSettings).tracing_redact,
    )
    processor = StoreSpanProcessor(
        store, settings.console_spans_buffer, wake=flusher.ensure_started, nudge=flusher.nudge
    )
    # A fork the at-fork hooks did not see (uWSGI's) is found by the flusher some requests
    # later: the buffer holds this worker's spans by then, kept.
    flusher.after_fork(lambda: processor.forked(clear=False))
    if tracing is None or not tracing.add_span_processor(processor):
        console.spans_off = (
            "the host installed its own TracerProvider: add"
            " console.span_processor to it to see its spans here"
        )
        console.span_processor = processor
        console.spans = store
        flusher.add("span store", processor.flush)
        return
    console.spans, console.span_processor = store, processor
    flusher.add("span store", processor.flush)
    wiring.on_close(processor.shutdown)


def _trace_url(wiring: Wiring) -> str | None:
    """The tracing UI's link to a trace: the viewer's, else the tracing feature's."""
    url = wiring.settings(LogViewerSettings).logviewer_trace_url
    if url is None:
        from ..tracing.settings import TracingSettings

        url = wiring.settings(TracingSettings).tracing_trace_url
    return url


FEATURE = Feature(
    "console",
    ConsoleSettings,
    _setup,
    wanted=_wanted,
    check=_check,
    excluded_paths=_excluded,
)
