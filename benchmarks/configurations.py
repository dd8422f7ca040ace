"""The app every request-path benchmark serves, and the configurations it is measured in.

``overhead.py`` times them, ``opcount.py`` counts their bytecodes, ``tracing_faults.py`` serves
the same app. Each configuration is ``setup(app, log_dir)``, registered with
``@config("name", "one-line description")``; it runs in a fresh interpreter, so it may patch,
install and leave behind whatever it likes.

flask_observe is configured through ``Observe`` and ``OBSERVE_*`` keys only; the one exception
(the discarding exporter of the ``observe+tracing*`` configurations) is in ``_internals.py``.
Logs never reach a terminal: flask_observe writes through ``OBSERVE_LOG_DIR`` with
``OBSERVE_LOG_STDOUT=False``, the others through python-json-logger on a root ``FileHandler``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

#: The one view every configuration serves, and the path requested.
VIEW_RULE = "/users/<int:user_id>"
REQUEST_PATH = "/users/42"
#: A DSN nothing listens on (port 9, loopback): nothing leaves the machine.
DEAD_DSN = "http://public@127.0.0.1:9/1"
#: An OTLP collector nothing listens on (port 9, loopback): every export is refused.
DEAD_COLLECTOR = "http://127.0.0.1:9"
#: Distributions whose versions a report names.
PACKAGES = (
    "structlog",
    "orjson",
    "Flask-Log-Request-ID",
    "python-json-logger",
    "prometheus-flask-exporter",
    "prometheus_client",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-flask",
    "opentelemetry-exporter-otlp-proto-grpc",
    "sentry-sdk",
)

Setup = Callable[[Flask, Path], None]


@dataclass(frozen=True)
class Config:
    name: str
    description: str
    setup: Setup


CONFIGS: dict[str, Config] = {}


def config(name: str, description: str) -> Callable[[Setup], Setup]:
    """Register ``setup(app, log_dir)`` as the configuration ``name``."""

    def register(setup: Setup) -> Setup:
        if name in CONFIGS:
            raise ValueError(f"configuration {name!r} registered twice")
        CONFIGS[name] = Config(name, description, setup)
        return setup

    return register


# -- the app --------------------------------------------------------------------------------


def make_app(view_logs: bool = True) -> Flask:
    """The app every configuration starts from: one small JSON view that logs one line
    (``view_logs=False``: writes none, so only what the middleware adds is measured)."""
    app = Flask(__name__)

    @app.get(VIEW_RULE)
    def get_user(user_id: int) -> dict[str, Any]:
        if view_logs:
            app.logger.info("user fetched", extra={"user_id": user_id})
        return {"id": user_id, "name": f"user-{user_id}", "active": True}

    return app


# -- building blocks a user would write -----------------------------------------------------

#: python-json-logger fields, the same ones flask_observe writes on every line.
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


def json_file_logs(app: Flask, log_dir: Path, fmt: str = JSON_FIELDS) -> logging.Handler:
    """JSON lines to ``log_dir/app.log`` from every logger: python-json-logger's formatter on a
    ``FileHandler`` on the root logger, root at INFO, Flask's stderr handler removed."""
    from flask.logging import default_handler
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.FileHandler(log_dir / "app.log", encoding="utf-8")
    handler.setFormatter(JsonFormatter(fmt))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Flask adds its stderr handler to app.logger when no handler is configured at first use;
    # with one on the root logger it would not, but make it explicit.
    app.logger.removeHandler(default_handler)
    return handler


def warnings_to_file(log_dir: Path) -> None:
    """For a configuration that logs nothing: the root logger stays at WARNING (the view's
    INFO line is dropped, as in ``bare``), and the warnings a library logs (an exporter that
    cannot reach its collector) go to ``log_dir/warnings.log`` instead of the terminal."""
    handler = logging.FileHandler(log_dir / "warnings.log", encoding="utf-8")
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)


def json_access_log(
    app: Flask, request_id: Callable[[], str | None], header: str = "X-Request-ID"
) -> None:
    """One access line per request from ``after_request`` (method, path, status, duration,
    size; the request ID comes from the handler's filter), and the ID echoed in ``header``."""
    from flask import g, request

    access = logging.getLogger("access")

    @app.before_request
    def start_timer() -> None:
        g.access_start = time.perf_counter()

    @app.after_request
    def log_access(response: Any) -> Any:
        duration = time.perf_counter() - g.access_start
        status = response.status_code
        access.info(
            "%s %s %s",
            request.method,
            request.path,
            status,
            extra={
                "method": request.method,
                "path": request.path,
                "status": status,
                "duration_ms": round(duration * 1000.0, 3),
                "response_size": response.content_length,
            },
        )
        response.headers[header] = request_id()
        return response


def patch_flask_log_request_id() -> None:
    """Flask-Log-Request-ID 0.10.1 (its latest release, 2020) reads the app context through
    ``from flask import _app_ctx_stack``, which Flask 2.3 deprecated and Flask 3.0 removed:
    ``current_request_id()`` — and so ``RequestIDLogFilter`` — raises ImportError on every
    call. Its ``before_request`` hook still works. Put back the one attribute it needs (its
    ``.top``: the current app context) so its own code runs unchanged."""
    import flask
    from flask.globals import _cv_app

    if "_app_ctx_stack" in vars(flask):
        return

    class AppCtxStack:
        @property
        def top(self) -> Any:
            return _cv_app.get(None)

    flask._app_ctx_stack = AppCtxStack()  # type: ignore[attr-defined]


def discarding_exporter() -> Any:
    """A span exporter that receives every batch and keeps nothing."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class DiscardingExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return DiscardingExporter()


def dead_collector_exporter() -> Any:
    """OpenTelemetry's OTLP gRPC span exporter, pointed at a collector nothing runs."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=DEAD_COLLECTOR)


def flask_instrumentor(app: Flask, exporter: Any) -> None:
    """``FlaskInstrumentor`` with an SDK provider, every request sampled, spans batched to
    ``exporter``."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)


def sentry_flask() -> None:
    """``sentry_sdk.init`` with ``FlaskIntegration``, the dead DSN, traces off."""
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(dsn=DEAD_DSN, integrations=[FlaskIntegration()], traces_sample_rate=None)


def observe(app: Flask, log_dir: Path, **settings: Any) -> None:
    """``Observe(app)`` with ``OBSERVE_<KEY>`` for each of ``settings``, logs to ``log_dir``."""
    from flask_observe import Observe

    app.config.update(OBSERVE_LOG_DIR=str(log_dir), OBSERVE_LOG_STDOUT=False)
    app.config.update({f"OBSERVE_{key.upper()}": value for key, value in settings.items()})
    Observe(app)


# -- configurations: correlation IDs and logs (issue 2) -------------------------------------

BASE = "bare"
LOG_BASE = "bare+json-logs"
OBSERVE = "observe"
PEER = "peer:request-id+json-access"


@config(BASE, "Flask alone; the view's INFO line is dropped (root logger at WARNING)")
def setup_bare(app: Flask, log_dir: Path) -> None:
    pass


@config(LOG_BASE, "root FileHandler with python-json-logger: the view's line as JSON, no access")
def setup_bare_json_logs(app: Flask, log_dir: Path) -> None:
    json_file_logs(app, log_dir)


# The correlation/logging configurations keep metrics off (on by default when
# prometheus_client is installed), so they compare with peers that do the same job; the
# metrics layer is measured by the configurations after them.


@config("observe-correlation", "Observe(app), OBSERVE_LOGGING_ENABLED=False: correlation IDs only")
def setup_observe_correlation(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, logging_enabled=False, metrics_enabled=False)


@config("observe-no-access", "Observe(app), OBSERVE_ACCESS_LOG=False: correlation + JSON logs")
def setup_observe_no_access(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, access_log=False, metrics_enabled=False)


@config(OBSERVE, "Observe(app), metrics off: correlation IDs + JSON logs (file) + access log")
def setup_observe(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, metrics_enabled=False)


@config("peer:request-id", "flask-log-request-id + JSON logs (no filter, no access line)")
def setup_request_id(app: Flask, log_dir: Path) -> None:
    from flask_log_request_id import RequestID

    patch_flask_log_request_id()
    json_file_logs(app, log_dir)
    RequestID(app)


@config(PEER, "flask-log-request-id + its log filter + JSON access line + X-Request-ID echoed")
def setup_request_id_json_access(app: Flask, log_dir: Path) -> None:
    from flask_log_request_id import RequestID, RequestIDLogFilter, current_request_id

    patch_flask_log_request_id()
    handler = json_file_logs(app, log_dir, JSON_FIELDS + " %(request_id)s")
    handler.addFilter(RequestIDLogFilter())
    RequestID(app)
    json_access_log(app, current_request_id)


# -- configurations: metrics (issue 6) ------------------------------------------------------

METRICS_ONLY = "observe-metrics-only"
METRICS_PEER = "peer:prometheus-flask-exporter-only"
OBSERVE_ALL = "observe+metrics"
METRICS_PEER_LOGS = "peer:prometheus-flask-exporter"


@config(METRICS_ONLY, "Observe(app), correlation and logging off: the metrics layer alone")
def setup_observe_metrics_only(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, logging_enabled=False, correlation_enabled=False)


@config(OBSERVE_ALL, "Observe(app), defaults: correlation, JSON logs, access log, metrics")
def setup_observe_metrics(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir)


@config("observe+logviewer", "Observe(app), defaults + the log viewer on (routes, no request work)")
def setup_observe_logviewer(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, logviewer_enabled=True, auth_token="benchmark-e6iI08JwMDoAUzuf67nMlg6H")


@config(METRICS_PEER_LOGS, "PrometheusMetrics(app) defaults + JSON logs")
def setup_prometheus(app: Flask, log_dir: Path) -> None:
    from prometheus_flask_exporter import PrometheusMetrics

    json_file_logs(app, log_dir)
    PrometheusMetrics(app)


@config(METRICS_PEER, "PrometheusMetrics(app) defaults alone (no logs)")
def setup_prometheus_only(app: Flask, log_dir: Path) -> None:
    from prometheus_flask_exporter import PrometheusMetrics

    PrometheusMetrics(app)


# -- configurations: OTLP logs and metrics (issue 12) ---------------------------------------

#: The files pipeline off: what the log lines cost without it (the access line and the view's
#: line still go through logging, to no handler).
OBSERVE_NO_FILE = "observe-no-file"
OBSERVE_OTLP_LOGS = "observe+otlp-logs"
OBSERVE_OTLP_METRICS = "observe+otlp-metrics"
#: Where the OTLP configurations export: the parent's collector (benchmarks/_collector.py),
#: else a refused port.
OTLP_ENDPOINT_VAR = "BENCH_OTLP_ENDPOINT"


def otlp_endpoint() -> str:
    return os.environ.get(OTLP_ENDPOINT_VAR) or DEAD_COLLECTOR


@config(OBSERVE_NO_FILE, "Observe(app), metrics off, no log file nor stdout: lines to no handler")
def setup_observe_no_file(app: Flask, log_dir: Path) -> None:
    from flask_observe import Observe

    app.config.update(OBSERVE_LOG_DIR=None, OBSERVE_LOG_STDOUT=False, OBSERVE_METRICS_ENABLED=False)
    Observe(app)


@config(OBSERVE_OTLP_LOGS, "`observe` + every line also over OTLP/gRPC to a local collector")
def setup_observe_otlp_logs(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, metrics_enabled=False, otlp_logs_endpoint=otlp_endpoint())


@config(
    OBSERVE_OTLP_METRICS,
    "`observe` + request metrics over OTLP/gRPC (periodic, 60 s) instead of prometheus_client",
)
def setup_observe_otlp_metrics(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, metrics_enabled=False, otlp_metrics_endpoint=otlp_endpoint())


# -- configurations: tracing and errors (issue 3), spans discarded --------------------------

#: The tracing issue's budget: every flask_observe feature of issues 2 and 3 (metrics off)
#: against the peer stack doing the same jobs.
OBSERVE_TRACED_ALL = "observe+tracing+sentry"
PEER_STACK = "peer:stack"
#: Tracing on, 100 % sampled, spans batched to the discarding exporter (see
#: ``_internals.discard_spans``); metrics off, as in ``observe``.
TRACED = {
    "tracing_enabled": True,
    "tracing_exporter": "otlp-grpc",
    "tracing_endpoint": DEAD_COLLECTOR,
    "tracing_sample_rate": 1.0,
    "metrics_enabled": False,
}


@config("peer:otel-flask", "FlaskInstrumentor, SDK provider, 100% sampled, batch to a no-op")
def setup_otel(app: Flask, log_dir: Path) -> None:
    json_file_logs(app, log_dir)
    flask_instrumentor(app, discarding_exporter())


@config("peer:sentry-flask", "sentry_sdk.init with FlaskIntegration, dead DSN, traces off")
def setup_sentry(app: Flask, log_dir: Path) -> None:
    json_file_logs(app, log_dir)
    sentry_flask()


@config("observe+tracing", "Observe(app) + tracing: 100% sampled, its pipeline, export to a no-op")
def setup_observe_tracing(app: Flask, log_dir: Path) -> None:
    from _internals import discard_spans

    discard_spans()
    observe(app, log_dir, **TRACED)


@config("observe+sentry", "Observe(app) + Sentry errors (dead DSN; no error in the timed loop)")
def setup_observe_sentry(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, sentry_dsn=DEAD_DSN, metrics_enabled=False)


@config(OBSERVE_TRACED_ALL, "Observe(app): correlation + JSON logs + access log + tracing + Sentry")
def setup_observe_all(app: Flask, log_dir: Path) -> None:
    from _internals import discard_spans

    discard_spans()
    observe(app, log_dir, sentry_dsn=DEAD_DSN, **TRACED)


@config(PEER_STACK, "request-id + filter + JSON access + FlaskInstrumentor + sentry Flask")
def setup_peer_stack(app: Flask, log_dir: Path) -> None:
    setup_request_id_json_access(app, log_dir)
    flask_instrumentor(app, discarding_exporter())
    sentry_flask()


# -- configurations: the request path at the cost of its parts (issue 17) -------------------
# Public configuration only: spans go to an OTLP gRPC exporter at a dead collector, on both
# sides; metrics on where the configuration says so.

OTEL_ALONE = "peer:otel-flask-otlp"
PEER_STACK_OTLP = "peer:stack-otlp"
PEER_UNTRACED = "peer:prometheus+request-id+json-access"
OBSERVE_EVERYTHING = "observe:all"
OBSERVE_UNTRACED = OBSERVE_ALL
#: Tracing on, every request sampled, to the dead collector: public settings only.
OTLP_DEAD = {
    "tracing_enabled": True,
    "tracing_exporter": "otlp-grpc",
    "tracing_endpoint": DEAD_COLLECTOR,
    "tracing_sample_rate": 1.0,
}


@config(OTEL_ALONE, "FlaskInstrumentor alone, 100% sampled, OTLP gRPC to a dead collector, no logs")
def setup_otel_alone(app: Flask, log_dir: Path) -> None:
    warnings_to_file(log_dir)
    flask_instrumentor(app, dead_collector_exporter())


@config(
    PEER_STACK_OTLP,
    "FlaskInstrumentor (OTLP, dead collector) + prometheus-flask-exporter + sentry Flask"
    " + request-id + filter + JSON access",
)
def setup_peer_stack_otlp(app: Flask, log_dir: Path) -> None:
    from prometheus_flask_exporter import PrometheusMetrics

    setup_request_id_json_access(app, log_dir)
    flask_instrumentor(app, dead_collector_exporter())
    PrometheusMetrics(app)
    sentry_flask()


@config(PEER_UNTRACED, "prometheus-flask-exporter + request-id + filter + JSON access line")
def setup_peer_untraced(app: Flask, log_dir: Path) -> None:
    from prometheus_flask_exporter import PrometheusMetrics

    setup_request_id_json_access(app, log_dir)
    PrometheusMetrics(app)


@config(
    OBSERVE_EVERYTHING,
    "Observe(app), every feature: tracing 100% (OTLP, dead collector), Sentry, metrics,"
    " JSON logs + access, correlation",
)
def setup_observe_everything(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, sentry_dsn=DEAD_DSN, **OTLP_DEAD)


#: ``observe:all`` with the features of issues 12 and 15 on as well (outbound and query
#: metrics are on in ``observe:all`` already; the view makes neither call nor query).
OBSERVE_EVERYTHING_MORE = "observe:all+console+otlp-logs"
#: The console's sign-in (the log viewer and the console need one).
CONSOLE_TOKEN = "benchmark-console-s8Tp_pm_bedVxb8xqaB7jwI"


@config(
    OBSERVE_EVERYTHING_MORE,
    "observe:all + the console (span store, rollups; the log viewer) + every line over OTLP"
    " (gRPC, the local collector or a dead one)",
)
def setup_observe_everything_more(app: Flask, log_dir: Path) -> None:
    observe(
        app,
        log_dir,
        sentry_dsn=DEAD_DSN,
        auth_token=CONSOLE_TOKEN,
        auth_state_dir=str(log_dir / "auth"),
        logviewer_enabled=True,
        console_enabled=True,
        console_spans=True,
        console_rollups=True,
        otlp_logs_endpoint=otlp_endpoint(),
        **OTLP_DEAD,
    )


@config("observe+metrics+tracing", "observe:all without Sentry (the Sentry part, by difference)")
def setup_observe_metrics_tracing(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, **OTLP_DEAD)


@config(
    "observe-tracing-only",
    "Observe(app), tracing alone (OTLP, dead collector): correlation, logging, metrics off",
)
def setup_observe_tracing_only(app: Flask, log_dir: Path) -> None:
    observe(
        app,
        log_dir,
        logging_enabled=False,
        correlation_enabled=False,
        metrics_enabled=False,
        **OTLP_DEAD,
    )


#: ``overhead.py --suite request-path``: issue 17's table, and the parts of flask_observe's
#: cost (each one feature more than the one before: correlation, the view's line as JSON, the
#: access line, metrics, tracing, Sentry), all in one run.
SUITES: dict[str, tuple[str, ...]] = {
    "request-path": (
        BASE,
        OTEL_ALONE,
        PEER_STACK_OTLP,
        PEER_UNTRACED,
        OBSERVE_EVERYTHING,
        OBSERVE_EVERYTHING_MORE,
        OBSERVE_UNTRACED,
        "observe-correlation",
        "observe-no-access",
        OBSERVE,
        "observe+metrics+tracing",
        "observe-tracing-only",
    ),
    "logging": (
        BASE,
        LOG_BASE,
        "observe-correlation",
        "observe-no-access",
        OBSERVE,
        "peer:request-id",
        PEER,
    ),
    "metrics": (
        BASE,
        LOG_BASE,
        OBSERVE,
        METRICS_ONLY,
        OBSERVE_ALL,
        METRICS_PEER,
        METRICS_PEER_LOGS,
    ),
    # Issue 13: what the Sentry sink adds to a successful request (per-request scope binding,
    # one breadcrumb append for the view's line), and the peer for scale.
    "sentry": (OBSERVE, "observe+sentry", "peer:sentry-flask", LOG_BASE),
    "otlp": (
        OBSERVE_NO_FILE,
        OBSERVE,
        OBSERVE_OTLP_LOGS,
        OBSERVE_ALL,
        OBSERVE_OTLP_METRICS,
    ),
    "tracing": (
        BASE,
        LOG_BASE,
        OBSERVE,
        PEER,
        "peer:otel-flask",
        "peer:sentry-flask",
        "observe+tracing",
        "observe+sentry",
        OBSERVE_TRACED_ALL,
        PEER_STACK,
    ),
}
