"""The console: what its span store adds to a traced request, and how fast its pages answer
with 100,000 spans stored.

Per-request cost (in-process WSGI requests, each configuration in a fresh interpreter,
rounds interleaved with the order rotated, medians reported). The route does what a scrape
does to a trace: a server span and four child spans (three "queries" and an outgoing
"call", each with a few attributes). Every configuration has the same features on (JSON log
file, metrics, the log viewer), so the figures differ by tracing and the console only:

- ``base``: tracing off, the console off;
- ``tracing``: tracing on (exporter ``none``), the console off;
- ``tracing+console-no-spans``: tracing on and the console on with its span store off
  (``OBSERVE_CONSOLE_SPANS=false``): the rollups, the error store and the pages' hooks;
- ``tracing+console``: the same with the span store on: its processor buffers each span on
  the request thread and the console's thread writes them to SQLite every second (or each
  4,096 spans) *in the same process*, so the loop's figure includes the writer's share of
  the GIL.

Budget: the span store adds at most 15 % to what tracing costs a request
(``(tracing+console - tracing+console-no-spans) / (tracing - base)``); the whole console's
share (``tracing+console`` over ``tracing``) is given beside it.

Pages (``pages``): a store filled through the real path (spans recorded by a tracer
provider, buffered, written by the processor) with 100,000 spans in 10,000 traces (1 in 10
failed, 1 in 20 slow) and 300 error groups; each console page fetched with the Flask test
client (sign-in by bearer token), median and max of 15 fetches. Budget: every page's median
under 300 ms.

    python benchmarks/console.py --rounds 3
    python benchmarks/console.py --rounds 1 --configs pages --json
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import harness
from harness import Budget

TOKEN = "benchmark-console-s8Tp_pm_bedVxb8xqaB7jwI"
CONFIGS = ("base", "tracing", "tracing+console-no-spans", "tracing+console", "pages")
REQUEST_CONFIGS = CONFIGS[:4]
#: Requests timed per configuration and round (after a warm-up), at least a few seconds so
#: the console's writer runs several times within the loop.
REQUESTS = 6000
WARM_UP = 500
SPANS, SPANS_PER_TRACE, GROUPS = 100_000, 10, 300
PAGES = (
    "traces",
    "traces/slow",
    "traces/failed",
    "trace",
    "errors",
    "error",
    "loggers",
    "info",
)
BUDGETS = (
    Budget(
        "the span store's share of tracing's per-request cost",
        "tracing+console",
        0.15,
        base="tracing+console-no-spans",
        peer="tracing",
        peer_base="base",
        key="mean_us",
        unit="µs",
        cross_checks=("p50_us", "cpu_us"),
    ),
    *(
        Budget(
            f"console page {page} with 100,000 spans", "pages", 300.0, key=f"{page}_ms", unit="ms"
        )
        for page in PAGES
    ),
)
PACKAGES = ("flask", "opentelemetry-sdk")


def make_app(directory: str, *, tracing: bool, console: bool, spans: bool = True) -> Any:
    from flask import Flask

    from flask_observe import Observe

    app = Flask("bench")
    app.config.update(
        OBSERVE_LOG_STDOUT=False,
        OBSERVE_LOG_DIR=directory,
        OBSERVE_AUTH_TOKEN=TOKEN,
        OBSERVE_AUTH_STATE_DIR=f"{directory}/auth",
        OBSERVE_LOGVIEWER_ENABLED=True,
        OBSERVE_CONSOLE_ENABLED=console,
        OBSERVE_CONSOLE_SPANS=spans,
        OBSERVE_TRACING_ENABLED=tracing,
        OBSERVE_TRACING_EXPORTER="none",
    )
    Observe(app)

    from opentelemetry import trace

    tracer = trace.get_tracer("bench")

    @app.get("/scrape/<name>")
    def scrape(name: str) -> str:
        for statement in ("SELECT accounts", "INSERT snapshot", "UPDATE run"):
            with tracer.start_as_current_span(statement) as span:
                span.set_attribute("db.system.name", "sqlite")
                span.set_attribute("db.query.text", f"{statement} WHERE handle = ?")
        with tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("http.request.method", "GET")
            span.set_attribute("url.full", f"http://platform.local/v1/twitter/{name}")
            span.set_attribute("http.response.status_code", 200)
        return "ok"

    return app


def child_requests(config: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        app = make_app(
            directory,
            tracing=config != "base",
            console=config.startswith("tracing+console"),
            spans=config == "tracing+console",
        )
        client = harness.WsgiClient(app, "/scrape/nasa", multithread=True)
        client.warm_up(WARM_UP)
        assert client.status_code == 200
        timing = client.timed(REQUESTS)
        result: dict[str, Any] = timing.stats()
        if config == "tracing+console":
            from flask_observe import Observe
            from flask_observe.console import Console

            console = Observe.handle(Console, app)
            assert console.span_processor is not None
            console.flusher.run_once()  # type: ignore[union-attr]
            result["spans_stored"] = console.span_processor.stored
            result["spans_dropped"] = console.span_processor.dropped
        return result


def fill(app: Any) -> tuple[str, str]:
    """100,000 spans through the real processor; returns a trace ID and a fingerprint."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from flask_observe import Observe, capture_exception
    from flask_observe.console import Console

    console = Observe.handle(Console, app)
    processor = console.span_processor
    assert processor is not None
    processor.capacity = SPANS + 1
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("fill")
    start = time.time_ns() - 3600 * 10**9
    trace_id = ""
    for t in range(SPANS // SPANS_PER_TRACE):
        begin = start + t * 300_000_000
        slow = t % 20 == 0
        root = tracer.start_span(
            "POST /api/scrapes",
            kind=SpanKind.SERVER,
            start_time=begin,
            attributes={
                "correlation_id": f"bench-{t}",
                "http.request.method": "POST",
                "http.response.status_code": 500 if t % 10 == 0 else 201,
            },
        )
        from opentelemetry import trace as api

        ctx = api.set_span_in_context(root)
        for s in range(SPANS_PER_TRACE - 1):
            child = tracer.start_span(
                "SELECT" if s % 3 else "GET",
                context=ctx,
                start_time=begin + s * 1_000_000,
                attributes={"db.query.text": "SELECT * FROM accounts WHERE id = ?", "n": s},
            )
            child.end(end_time=begin + s * 1_000_000 + 800_000)
        if t % 10 == 0:
            root.set_status(Status(StatusCode.ERROR, "platform answered 503"))
        root.end(end_time=begin + (900_000_000 if slow else 40_000_000))
        if t % 500 == 0:
            processor.flush()
        trace_id = format(root.get_span_context().trace_id, "032x")
    processor.flush()
    with app.test_request_context():
        for g in range(GROUPS):
            try:
                raise type(f"Failure{g}", (RuntimeError,), {})(f"platform {g} refused")
            except RuntimeError as exc:
                capture_exception(exc)
    assert console.errors is not None
    console.errors.flush()
    return trace_id, console.errors.groups(1)[0].fingerprint


def child_pages() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        app = make_app(directory, tracing=True, console=True)
        started = time.perf_counter()
        trace_id, fingerprint = fill(app)
        fill_seconds = time.perf_counter() - started
        client = app.test_client()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        paths = {
            "traces": "traces",
            "traces/slow": "traces/slow",
            "traces/failed": "traces/failed",
            "trace": f"traces/{trace_id}",
            "errors": "errors",
            "error": f"errors/{fingerprint}",
            "loggers": "loggers",
            "info": "info",
        }
        from flask_observe import Observe
        from flask_observe.console import Console

        counts = Observe.handle(Console, app).spans.counts()  # type: ignore[union-attr]
        result: dict[str, Any] = {
            "fill_s": fill_seconds,
            **{f"stored_{k}": v for k, v in counts.items()},
        }
        for name, path in paths.items():
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                answer = client.get(f"/observe/console/{path}", headers=headers)
                times.append((time.perf_counter() - t0) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
            result[f"{name}_ms"] = statistics.median(times)
            result[f"{name}_max_ms"] = max(times)
        return result


def report(runs: harness.Runs) -> str:
    parts = []
    rows = []
    requests = {name: runs[name] for name in REQUEST_CONFIGS if name in runs}
    summary = harness.summarize(requests, "mean_us", also=("p50_us", "p99_us", "cpu_us"))
    for name, s in summary.items():
        rows.append(
            [
                f"`{name}`",
                f"{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})",
                f"{s['p50_us']:.1f}",
                f"{s['p99_us']:.1f}",
                f"{s['cpu_us']:.1f}",
            ]
        )
    if rows:
        parts.append(
            harness.table(
                ["config", "mean µs/request (range)", "p50 µs", "p99 µs", "CPU µs/request"], rows
            )
        )
        medians = {name: s["median"] for name, s in summary.items()}
        if {"base", "tracing", "tracing+console-no-spans", "tracing+console"} <= medians.keys():
            tracing = medians["tracing"] - medians["base"]
            rest = medians["tracing+console-no-spans"] - medians["tracing"]
            whole = medians["tracing+console"] - medians["tracing"]
            parts.append(
                f"\nof tracing's {tracing:.1f} µs a request (medians): the console without its"
                f" span store adds {rest:.1f} µs ({rest / tracing:.2f}), the whole console"
                f" {whole:.1f} µs ({whole / tracing:.2f})"
            )
        stored = [r.get("spans_stored") for r in runs.get("tracing+console", [])]
        if stored:
            parts.append(f"\nspans stored per round (tracing+console): {stored}")
    if "pages" in runs:
        last = runs["pages"][-1]
        page_rows = [
            [
                f"`{page}`",
                f"{statistics.median(r[f'{page}_ms'] for r in runs['pages']):.1f}",
                f"{max(r[f'{page}_max_ms'] for r in runs['pages']):.1f}",
            ]
            for page in PAGES
        ]
        parts.append(
            f"\npages with {last['stored_spans']} spans in {last['stored_traces']} traces stored"
            f" (filled through the processor in {last['fill_s']:.1f} s):\n"
        )
        parts.append(harness.table(["page", "median ms", "max ms"], page_rows))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, rounds=3)
    harness.add_configs_option(parser, CONFIGS)
    args = parser.parse_args(argv)
    if args.child:
        result = child_pages() if args.child == "pages" else child_requests(args.child)
        harness.child_exit(result)
    names = harness.select(parser, args.configs, list(CONFIGS))
    env = harness.Environment.now(PACKAGES)
    runs = harness.run_rounds(
        names, args.rounds, lambda name, _: harness.run_child(__file__, name, timeout=900)
    )
    return harness.finish(
        "console",
        as_json=args.json,
        settings={"rounds": args.rounds, "requests": REQUESTS, "spans": SPANS},
        environment=env,
        summary={},
        runs=runs,
        title=f"rounds: {args.rounds}, each config in a fresh process, order rotated",
        text=report(runs),
        verdicts=harness.judge(BUDGETS, runs),
    )


if __name__ == "__main__":
    raise SystemExit(main())
