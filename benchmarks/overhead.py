"""Per-request overhead of flask_observe against bare Flask and the peers it replaces.

Every configuration serves the same view through the WSGI app, in-process (no network, no
server): a prebuilt environ (``werkzeug.test.EnvironBuilder``) is copied for each request,
``app(environ, start_response)`` is called, the body consumed and ``close()`` called — what a
WSGI server does, minus the socket. Each configuration runs in a fresh interpreter (this script
re-invokes itself with ``--config NAME``), so no patch, handler or registry leaks from one into
the next. Rounds are interleaved — round 1 runs every configuration once, round 2 again, … —
with the order rotated each round, so drift on a shared machine hits all of them alike; the
report uses the median over rounds.

Logs never reach a terminal: every configuration that logs writes to a file in a temporary
directory (flask_observe through ``OBSERVE_LOG_DIR`` with ``OBSERVE_LOG_STDOUT=False``, the
others through python-json-logger's ``JsonFormatter`` on a ``FileHandler`` on the root logger).

Adding a configuration: write ``def setup(app, log_dir)`` that turns it on for ``app`` and
register it with ``@config("name", "one-line description")``.

    python benchmarks/overhead.py --rounds 7 --requests 3000
    python benchmarks/overhead.py --configs bare,observe --json
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from flask import Flask

#: The one view every configuration serves, and the path requested.
VIEW_RULE = "/users/<int:user_id>"
REQUEST_PATH = "/users/42"
#: Configurations the budget compares (see ``budget``).
BASE = "bare"
LOG_BASE = "bare+json-logs"
OBSERVE = "observe"
PEER = "peer:request-id+json-access"
#: The tracing issue's budget: every flask_observe feature of issues 2 and 3 (metrics off)
#: against the peer stack doing the same jobs.
OBSERVE_TRACED_ALL = "observe+tracing+sentry"
PEER_STACK = "peer:stack"
#: A DSN nothing listens on (port 9, loopback): nothing leaves the machine.
DEAD_DSN = "http://public@127.0.0.1:9/1"
#: The issue's budget: flask_observe adds at most this fraction of what the peer pair adds.
BUDGET_FRACTION = 0.5
#: The metrics budget (issue 6): the metrics layer adds at most half of what
#: prometheus-flask-exporter adds, alone over ``bare`` and on top of the logging stack.
METRICS_ONLY = "observe-metrics-only"
METRICS_PEER = "peer:prometheus-flask-exporter-only"
OBSERVE_ALL = "observe+metrics"
METRICS_PEER_LOGS = "peer:prometheus-flask-exporter"
#: The child prints its result on one line starting with this, whatever else reaches stdout.
RESULT_PREFIX = "OVERHEAD-RESULT "
#: Distributions whose versions the report names.
PACKAGES = (
    "Flask",
    "Werkzeug",
    "flask-observe",
    "structlog",
    "orjson",
    "Flask-Log-Request-ID",
    "python-json-logger",
    "prometheus-flask-exporter",
    "prometheus_client",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-flask",
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


# -- configurations -------------------------------------------------------------------------


@config("bare", "Flask alone; the view's INFO line is dropped (root logger at WARNING)")
def setup_bare(app: Flask, log_dir: Path) -> None:
    pass


@config(LOG_BASE, "root FileHandler with python-json-logger: the view's line as JSON, no access")
def setup_bare_json_logs(app: Flask, log_dir: Path) -> None:
    json_file_logs(app, log_dir)


def observe(app: Flask, log_dir: Path, **settings: Any) -> None:
    from flask_observe import Observe

    app.config.update(OBSERVE_LOG_DIR=str(log_dir), OBSERVE_LOG_STDOUT=False)
    app.config.update({f"OBSERVE_{key.upper()}": value for key, value in settings.items()})
    Observe(app)


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


@config(METRICS_ONLY, "Observe(app), correlation and logging off: the metrics layer alone")
def setup_observe_metrics_only(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, logging_enabled=False, correlation_enabled=False)


@config(OBSERVE_ALL, "Observe(app), defaults: correlation, JSON logs, access log, metrics")
def setup_observe_metrics(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir)


@config("observe+logviewer", "Observe(app), defaults + the log viewer on (routes, no request work)")
def setup_observe_logviewer(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, logviewer_enabled=True, auth_token="benchmark-e6iI08JwMDoAUzuf67nMlg6H")


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


@config(METRICS_PEER_LOGS, "PrometheusMetrics(app) defaults + JSON logs")
def setup_prometheus(app: Flask, log_dir: Path) -> None:
    from prometheus_flask_exporter import PrometheusMetrics

    json_file_logs(app, log_dir)
    PrometheusMetrics(app)


@config(METRICS_PEER, "PrometheusMetrics(app) defaults alone (no logs)")
def setup_prometheus_only(app: Flask, log_dir: Path) -> None:
    from prometheus_flask_exporter import PrometheusMetrics

    PrometheusMetrics(app)


@config("peer:otel-flask", "FlaskInstrumentor, SDK provider, 100% sampled, batch to a no-op")
def setup_otel(app: Flask, log_dir: Path) -> None:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    class DiscardingExporter(SpanExporter):
        """Receives every batch and keeps nothing: nothing leaves the process or piles up."""

        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    json_file_logs(app, log_dir)
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(DiscardingExporter()))
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)


@config("peer:sentry-flask", "sentry_sdk.init with FlaskIntegration, dead DSN, traces off")
def setup_sentry(app: Flask, log_dir: Path) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    json_file_logs(app, log_dir)
    # Port 9 (discard) on loopback: nothing listens, nothing leaves the machine.
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        integrations=[FlaskIntegration()],
        traces_sample_rate=None,
    )


def discarding_exporter() -> Any:
    """A span exporter that receives every batch and keeps nothing."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class DiscardingExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return DiscardingExporter()


def export_to_nowhere() -> None:
    """Make flask_observe's OTLP exporter the discarding one above: everything else is the
    library's own pipeline as a real deployment runs it — ``setup_tracing`` builds its batch
    processor (bounded queue, drop counting) and its process-local exporter wrapper, which
    redacts each span on the export thread before handing the batch to the exporter."""
    from flask_observe.tracing import setup

    def factory(name: str, endpoint: str | None) -> Callable[[], Any]:
        return discarding_exporter

    setup.exporter_factory = factory  # type: ignore[assignment]


#: Tracing on, 100 % sampled, spans batched to the discarding exporter above; metrics off, as
#: in ``observe`` (they are issue 6's, measured by the metrics configurations).
TRACED = {
    "tracing_enabled": True,
    "tracing_exporter": "otlp-grpc",
    "tracing_endpoint": "http://127.0.0.1:9",
    "tracing_sample_rate": 1.0,
    "metrics_enabled": False,
}


@config("observe+tracing", "Observe(app) + tracing: 100% sampled, its pipeline, export to a no-op")
def setup_observe_tracing(app: Flask, log_dir: Path) -> None:
    export_to_nowhere()
    observe(app, log_dir, **TRACED)


@config("observe+sentry", "Observe(app) + Sentry errors (dead DSN; no error in the timed loop)")
def setup_observe_sentry(app: Flask, log_dir: Path) -> None:
    observe(app, log_dir, sentry_dsn=DEAD_DSN, metrics_enabled=False)


@config(OBSERVE_TRACED_ALL, "Observe(app): correlation + JSON logs + access log + tracing + Sentry")
def setup_observe_all(app: Flask, log_dir: Path) -> None:
    export_to_nowhere()
    observe(app, log_dir, sentry_dsn=DEAD_DSN, **TRACED)


@config(PEER_STACK, "request-id + filter + JSON access + FlaskInstrumentor + sentry Flask")
def setup_peer_stack(app: Flask, log_dir: Path) -> None:
    import sentry_sdk
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON
    from sentry_sdk.integrations.flask import FlaskIntegration

    setup_request_id_json_access(app, log_dir)
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(discarding_exporter()))
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    sentry_sdk.init(dsn=DEAD_DSN, integrations=[FlaskIntegration()], traces_sample_rate=None)


# -- one run (the child process) ------------------------------------------------------------


def run_one(
    name: str,
    requests: int,
    warmup: int,
    log_dir: Path,
    incoming_id: bool,
    view_logs: bool = True,
) -> dict:
    """Set up ``name``, warm up, time ``requests`` requests; per-request figures in µs."""
    from werkzeug.test import EnvironBuilder

    log_dir.mkdir(parents=True, exist_ok=True)
    app = make_app(view_logs)
    CONFIGS[name].setup(app, log_dir)
    headers = {"X-Request-ID": "bench-0123456789abcdef"} if incoming_id else {}
    # The client's address, as every WSGI server sets it (tracing records it, then removes it
    # from the exported span).
    builder = EnvironBuilder(
        path=REQUEST_PATH,
        headers=headers,
        environ_base={"REMOTE_ADDR": "192.0.2.10", "REMOTE_PORT": "50123"},
    )
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = (status, headers)
        return started.append

    def request() -> bytes:
        body = app(environ.copy(), start_response)
        try:
            return b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()

    first = request()
    if not started[0].startswith("200") or b'"id":42' not in first.replace(b" ", b""):
        raise RuntimeError(f"{name}: unexpected response {started[0]!r} {first[:200]!r}")
    for _ in range(warmup - 1):
        request()

    times = [0] * requests
    clock = time.perf_counter_ns
    gc.collect()
    cpu_start = time.process_time_ns()
    wall_start = clock()
    for i in range(requests):
        env = environ.copy()
        t0 = clock()
        body = app(env, start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
        times[i] = clock() - t0
    wall = clock() - wall_start
    cpu = time.process_time_ns() - cpu_start

    response_headers = {k.lower(): v for k, v in started[1]}
    logging.shutdown()  # flush and close every handler before counting lines
    lines = 0
    for path in log_dir.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                lines += sum(1 for _ in f)
    return {
        "config": name,
        "requests": requests,
        "warmup": warmup,
        "mean_us": sum(times) / requests / 1000,
        "p50_us": statistics.median(times) / 1000,
        "p90_us": statistics.quantiles(times, n=10)[-1] / 1000,
        "loop_us": wall / requests / 1000,
        "cpu_us": cpu / requests / 1000,
        "log_lines_per_request": lines / (requests + warmup),
        "request_id_header": response_headers.get("x-request-id"),
    }


# -- the parent: rounds, summary, budget ----------------------------------------------------


def run_child(
    name: str,
    requests: int,
    warmup: int,
    log_dir: Path,
    incoming_id: bool,
    view_logs: bool = True,
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--config",
        name,
        "--requests",
        str(requests),
        "--warmup",
        str(warmup),
        "--log-dir",
        str(log_dir),
    ]
    if incoming_id:
        command.append("--incoming-id")
    if not view_logs:
        command.append("--silent-view")
    proc = subprocess.run(
        command, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    results = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not results:
        raise RuntimeError(
            f"configuration {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(results[-1][len(RESULT_PREFIX) :])
    # Anything else on stdout/stderr means something logged to a terminal: say so.
    result["stray_output"] = len(proc.stdout) - len(results[-1]) - 1 + len(proc.stderr)
    return result


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        means = [r["mean_us"] for r in results]
        out[name] = {
            "median_us": statistics.median(means),
            "min_us": min(means),
            "max_us": max(means),
            "p50_us": statistics.median(r["p50_us"] for r in results),
            "p90_us": statistics.median(r["p90_us"] for r in results),
            "cpu_us": statistics.median(r["cpu_us"] for r in results),
            "rounds_us": means,
            "log_lines_per_request": results[-1]["log_lines_per_request"],
            "request_id_header": results[-1]["request_id_header"] is not None,
            "stray_output": max(r["stray_output"] for r in results),
        }
    for base in (BASE, LOG_BASE):
        if base not in out:
            continue
        base_us = out[base]["median_us"]
        for row in out.values():
            row[f"added_vs_{base}_us"] = row["median_us"] - base_us
            row[f"ratio_vs_{base}"] = row["median_us"] / base_us
    return out


def budget(
    runs: dict[str, list[dict[str, Any]]],
    summary: dict[str, dict[str, Any]],
    ours: str = OBSERVE,
    peer: str = PEER,
    bases: tuple[str, ...] = (LOG_BASE, BASE),
) -> dict:
    """The issue's budget: what ``ours`` adds is at most half of what ``peer`` adds, over each
    of ``bases``; the verdict is the first one's.

    With the view's log line (the default run), over ``bare+json-logs``: ``observe`` and the
    peer pair both write the view's own line as JSON, so a baseline that does the same leaves
    what the budget is about — what correlation IDs and the access log add. Over plain
    ``bare`` the cost of logging the view's line at all is counted as overhead of each; that
    comparison is reported too. With ``--silent-view`` there is no view line to subtract, and
    ``bare`` is the one baseline: the difference is exactly correlation IDs + access line.
    """
    needed = (*bases, ours, peer)
    if any(name not in summary for name in needed):
        return {"skipped": f"needs configurations {', '.join(needed)}"}
    out: dict[str, Any] = {
        "fraction": BUDGET_FRACTION,
        "ours": ours,
        "peer": peer,
        "bases": list(bases),
    }
    for base in bases:
        observe_added = summary[ours]["median_us"] - summary[base]["median_us"]
        peer_added = summary[peer]["median_us"] - summary[base]["median_us"]
        per_round = [
            (o["mean_us"] - b["mean_us"]) / (p["mean_us"] - b["mean_us"])
            for o, p, b in zip(runs[ours], runs[peer], runs[base], strict=True)
            if p["mean_us"] != b["mean_us"]
        ]
        out[base] = {
            "observe_added_us": observe_added,
            "peer_added_us": peer_added,
            "ratio": observe_added / peer_added if peer_added > 0 else None,
            "met": peer_added > 0 and observe_added <= BUDGET_FRACTION * peer_added,
            "per_round_ratio_median": statistics.median(per_round) if per_round else None,
            "rounds_met": sum(r <= BUDGET_FRACTION for r in per_round),
            "rounds": len(per_round),
        }
    # Cross-check on each run's median request, which a burst of other work on the machine
    # moves less than the mean; the verdict stays on the means.
    primary = bases[0]
    p50_observe = summary[ours]["p50_us"] - summary[primary]["p50_us"]
    p50_peer = summary[peer]["p50_us"] - summary[primary]["p50_us"]
    out["p50_ratio"] = p50_observe / p50_peer if p50_peer > 0 else None
    # And on each configuration's fastest round: other work on the machine only ever adds
    # time, so the minimum is the estimate it disturbs least.
    min_observe = summary[ours]["min_us"] - summary[primary]["min_us"]
    min_peer = summary[peer]["min_us"] - summary[primary]["min_us"]
    out["min_ratio"] = min_observe / min_peer if min_peer > 0 else None
    out["met"] = out[primary]["met"]
    return out


def metrics_budget(runs: dict[str, list[dict[str, Any]]], summary: dict[str, Any]) -> dict:
    """The metrics layer against prometheus-flask-exporter, two ways:

    - alone: ``observe-metrics-only`` over ``bare`` vs ``peer:…-only`` over ``bare``;
    - stacked: ``observe+metrics`` over ``observe`` (what turning metrics on adds to the
      logging stack) vs ``peer:prometheus-flask-exporter`` over ``bare+json-logs``.
    """
    pairs = {
        "alone": (METRICS_ONLY, BASE, METRICS_PEER, BASE),
        "stacked": (OBSERVE_ALL, OBSERVE, METRICS_PEER_LOGS, LOG_BASE),
    }
    out: dict[str, Any] = {"fraction": BUDGET_FRACTION}
    for label, (ours, our_base, peer, peer_base) in pairs.items():
        if any(n not in summary for n in (ours, our_base, peer, peer_base)):
            out[label] = {"skipped": f"needs {ours}, {our_base}, {peer}, {peer_base}"}
            continue
        added = summary[ours]["median_us"] - summary[our_base]["median_us"]
        peer_added = summary[peer]["median_us"] - summary[peer_base]["median_us"]
        per_round = [
            (o["mean_us"] - ob["mean_us"]) / (p["mean_us"] - pb["mean_us"])
            for o, ob, p, pb in zip(
                runs[ours], runs[our_base], runs[peer], runs[peer_base], strict=True
            )
            if p["mean_us"] != pb["mean_us"]
        ]
        out[label] = {
            "ours": ours,
            "peer": peer,
            "added_us": added,
            "peer_added_us": peer_added,
            "ratio": added / peer_added if peer_added > 0 else None,
            "met": peer_added > 0 and added <= BUDGET_FRACTION * peer_added,
            "per_round_ratio_median": statistics.median(per_round) if per_round else None,
            "rounds_met": sum(r <= BUDGET_FRACTION for r in per_round),
            "rounds": len(per_round),
        }
    return out


def render_metrics_budget(verdict: dict[str, Any]) -> str:
    lines = []
    for label in ("alone", "stacked"):
        v = verdict[label]
        if "skipped" in v:
            lines.append(f"METRICS BUDGET ({label}): not evaluated ({v['skipped']})")
            continue
        ratio = f"{v['ratio']:.2f}" if v["ratio"] is not None else "n/a"
        per_round = v["per_round_ratio_median"]
        lines.append(
            f"METRICS BUDGET ({label}): `{v['ours']}` adds {v['added_us']:.1f} µs, "
            f"`{v['peer']}` adds {v['peer_added_us']:.1f} µs → ratio {ratio} "
            f"(budget ≤ {BUDGET_FRACTION}): {'MET' if v['met'] else 'MISSED'}; per-round "
            f"ratio median {per_round if per_round is None else f'{per_round:.2f}'}, "
            f"met in {v['rounds_met']}/{v['rounds']} rounds"
        )
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    """The commit of the checkout this script is in, ``+dirty`` if flask_observe/ has edits."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "flask_observe"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "flask_observe_commit": git_commit(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
    }


def render_table(summary: dict[str, dict[str, Any]]) -> str:
    has_log_base = LOG_BASE in summary
    head = [
        "config",
        "µs/req",
        "min-max",
        "p50",
        "CPU µs/req",
        "+µs vs bare",
        "x bare",
    ]
    if has_log_base:
        head.append("+µs vs bare+json-logs")
    head += ["log lines/req", "X-Request-ID"]
    rows = [head, ["---"] * len(head)]
    for name, row in summary.items():
        cells = [
            f"`{name}`",
            f"{row['median_us']:.1f}",
            f"{row['min_us']:.1f}-{row['max_us']:.1f}",
            f"{row['p50_us']:.1f}",
            f"{row['cpu_us']:.1f}",
            f"{row['added_vs_bare_us']:+.1f}" if "added_vs_bare_us" in row else "",
            f"{row['ratio_vs_bare']:.2f}" if "ratio_vs_bare" in row else "",
        ]
        if has_log_base:
            cells.append(f"{row[f'added_vs_{LOG_BASE}_us']:+.1f}")
        cells += [f"{row['log_lines_per_request']:.2f}", "yes" if row["request_id_header"] else ""]
        rows.append(cells)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def render_budget(verdict: dict[str, Any]) -> str:
    if "skipped" in verdict:
        return f"budget: not evaluated ({verdict['skipped']})"
    lines = []
    bases = verdict["bases"]
    for base in bases:
        v = verdict[base]
        ratio = f"{v['ratio']:.2f}" if v["ratio"] is not None else "n/a"
        per_round = v["per_round_ratio_median"]
        per_round_text = f"{per_round:.2f}" if per_round is not None else "n/a"
        label = "BUDGET" if base == bases[0] else f"  (vs {base})"
        lines.append(
            f"{label} over `{base}`: `{verdict['ours']}` adds {v['observe_added_us']:.1f} µs, "
            f"`{verdict['peer']}` adds {v['peer_added_us']:.1f} µs → ratio {ratio} "
            f"(budget ≤ {BUDGET_FRACTION}): {'MET' if v['met'] else 'MISSED'}; "
            f"per-round ratio median {per_round_text}, "
            f"met in {v['rounds_met']}/{v['rounds']} rounds"
        )
    if verdict["p50_ratio"] is not None:
        lines.append(
            f"  (cross-check) same ratio over `{bases[0]}` on the p50 column: "
            f"{verdict['p50_ratio']:.2f}"
        )
    if verdict["min_ratio"] is not None:
        lines.append(
            f"  (cross-check) same ratio over `{bases[0]}` on each configuration's fastest "
            f"round: {verdict['min_ratio']:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs per configuration")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per run")
    parser.add_argument("--warmup", type=int, default=300, help="untimed requests first")
    parser.add_argument("--configs", help=f"comma-separated subset of: {', '.join(CONFIGS)}")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--incoming-id",
        action="store_true",
        help="requests carry a valid X-Request-ID (default: none, every config generates one)",
    )
    parser.add_argument(
        "--silent-view",
        action="store_true",
        help="the view writes no log line: what each configuration adds around it, alone",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary log dir")
    parser.add_argument("--config", help=argparse.SUPPRESS)  # child: run one configuration
    parser.add_argument("--log-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 10 or args.warmup < 1:
        parser.error("--rounds >= 1, --requests >= 10 and --warmup >= 1 are required")

    if args.config is not None:
        if args.config not in CONFIGS or args.log_dir is None:
            parser.error(f"unknown configuration {args.config!r} (or no --log-dir)")
        result = run_one(
            args.config,
            args.requests,
            args.warmup,
            args.log_dir,
            args.incoming_id,
            not args.silent_view,
        )
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    names = list(CONFIGS)
    if args.configs:
        names = [n.strip() for n in args.configs.split(",") if n.strip()]
        unknown = [n for n in names if n not in CONFIGS]
        if unknown:
            parser.error(
                f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}"
            )

    env = environment()
    env["loadavg_start"] = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="flask-observe-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    started = time.monotonic()
    try:
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                slug = name.replace(":", "_").replace("+", "_")
                log_dir = tmp / f"round{round_index + 1}" / slug
                result = run_child(
                    name,
                    args.requests,
                    args.warmup,
                    log_dir,
                    args.incoming_id,
                    not args.silent_view,
                )
                runs[name].append(result)
                print(
                    f"round {round_index + 1}/{args.rounds} {name:32} {result['mean_us']:8.1f} µs",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        if args.keep_logs:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    env["loadavg_end"] = os.getloadavg()
    env["seconds"] = round(time.monotonic() - started, 1)

    summary = summarize(runs)
    # A silent view leaves nothing for `bare+json-logs` to subtract: bare is the baseline.
    bases = (BASE,) if args.silent_view else (LOG_BASE, BASE)
    verdict = budget(runs, summary, bases=bases)
    verdict_all = budget(runs, summary, OBSERVE_TRACED_ALL, PEER_STACK, bases=bases)
    verdict_metrics = metrics_budget(runs, summary)
    settings = {
        "rounds": args.rounds,
        "requests": args.requests,
        "warmup": args.warmup,
        "incoming_id": args.incoming_id,
        "view_logs": not args.silent_view,
        "path": REQUEST_PATH,
    }
    if args.json:
        json.dump(
            {
                "settings": settings,
                "environment": env,
                "configs": {n: CONFIGS[n].description for n in names},
                "summary": summary,
                "budget": verdict,
                "budget_all_features": verdict_all,
                "metrics_budget": verdict_metrics,
                "runs": runs,
            },
            sys.stdout,
            indent=2,
        )
        print()
        return 0
    print(
        f"{args.rounds} rounds x {args.requests} requests (+{args.warmup} warm-up) of GET "
        f"{REQUEST_PATH}; incoming X-Request-ID: {'yes' if args.incoming_id else 'no'}; "
        f"view writes a log line: {'no' if args.silent_view else 'yes'}"
    )
    print(
        f"{env['cpu']} ({env['cpus']} CPUs), {env['implementation']} {env['python']}, "
        f"load {env['loadavg_start'][0]:.2f} → {env['loadavg_end'][0]:.2f}, {env['seconds']} s, "
        f"flask_observe at {env['flask_observe_commit'] or 'unknown commit'}"
    )
    print(", ".join(f"{k} {v}" for k, v in env["packages"].items()))
    print()
    print("µs/req: median over rounds of each run's mean; min-max: over rounds.")
    print(render_table(summary))
    stray = [n for n, row in summary.items() if row["stray_output"]]
    if stray:
        print(f"\nwarning: output reached stdout/stderr in: {', '.join(stray)}")
    print()
    print(render_budget(verdict))
    print()
    print("All features of issues 2+3 (tracing at 100%, Sentry) against the peer stack:")
    print(render_budget(verdict_all))
    print()
    print(render_metrics_budget(verdict_metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
