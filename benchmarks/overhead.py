"""Per-request overhead of flask_observe against bare Flask and the peers it replaces.

Every configuration (``configurations.py``) serves the same view through the WSGI app,
in-process (no network, no server): the harness' ``WsgiClient`` copies a prebuilt environ for
each request, calls ``app(environ, start_response)``, consumes the body and calls ``close()``
— what a WSGI server does, minus the socket. Each configuration runs in a fresh interpreter,
rounds interleaved with the order rotated each round; the report uses the median over rounds
of each run's mean, with the min-max range, and judges the budgets on the medians and round
by round.

    python benchmarks/overhead.py --rounds 7 --requests 3000
    python benchmarks/overhead.py --suite request-path        # issue 17's table in one run
    python benchmarks/overhead.py --configs bare,observe --json
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness
from configurations import (
    BASE,
    CONFIGS,
    LOG_BASE,
    METRICS_ONLY,
    METRICS_PEER,
    METRICS_PEER_LOGS,
    OBSERVE,
    OBSERVE_ALL,
    OBSERVE_EVERYTHING,
    OBSERVE_EVERYTHING_MORE,
    OBSERVE_NO_FILE,
    OBSERVE_OTLP_LOGS,
    OBSERVE_OTLP_METRICS,
    OBSERVE_TRACED_ALL,
    OBSERVE_UNTRACED,
    OTEL_ALONE,
    OTLP_ENDPOINT_VAR,
    PACKAGES,
    PEER,
    PEER_STACK,
    PEER_STACK_OTLP,
    PEER_UNTRACED,
    REQUEST_PATH,
    SUITES,
    make_app,
)
from harness import Budget

#: Budgets of the issues that set them, each where it applies (a view that writes no line
#: leaves nothing for ``bare+json-logs`` to subtract: those are left out with --silent-view).
#: Over ``bare+json-logs``, both sides write the view's line as JSON, which leaves what the
#: budget is about; over ``bare``, each is also charged for logging the view's line at all.
CROSS = ("p50_us", "min")
BUDGETS = (
    *(
        Budget(label, ours, 0.5, peer=peer, base=base, cross_checks=CROSS)
        for label, ours, peer in (
            ("issue 2, correlation IDs + JSON access log", OBSERVE, PEER),
            (
                "issue 3, every feature of issues 2+3 (tracing 100 %, Sentry)",
                OBSERVE_TRACED_ALL,
                PEER_STACK,
            ),
        )
        for base in (LOG_BASE, BASE)
    ),
    Budget(
        "issue 6, the metrics layer alone",
        METRICS_ONLY,
        0.5,
        peer=METRICS_PEER,
        base=BASE,
        cross_checks=("p50_us",),
    ),
    Budget(
        "issue 6, metrics on top of the logging stack",
        OBSERVE_ALL,
        0.5,
        peer=METRICS_PEER_LOGS,
        base=OBSERVE,
        peer_base=LOG_BASE,
        cross_checks=("p50_us",),
    ),
    Budget(
        "issue 13, Sentry on a successful request (µs added)",
        "observe+sentry",
        5.0,
        base=OBSERVE,
        cross_checks=CROSS,
    ),
    *(
        Budget(f"issue 17, {label}", ours, limit, peer=peer, base=BASE, cross_checks=CROSS)
        for label, ours, limit, peer in (
            ("every feature on vs FlaskInstrumentor alone", OBSERVE_EVERYTHING, 1.15, OTEL_ALONE),
            ("every feature on vs the peer stack", OBSERVE_EVERYTHING, 0.35, PEER_STACK_OTLP),
            (
                "with the other issues' features (console, OTLP logs) vs FlaskInstrumentor alone",
                OBSERVE_EVERYTHING_MORE,
                1.15,
                OTEL_ALONE,
            ),
            (
                "with the other issues' features (console, OTLP logs) vs the peer stack",
                OBSERVE_EVERYTHING_MORE,
                0.35,
                PEER_STACK_OTLP,
            ),
            (
                "tracing off vs prometheus-flask-exporter + request-id + JSON access",
                OBSERVE_UNTRACED,
                0.35,
                PEER_UNTRACED,
            ),
        )
    ),
)
#: Issue 12: what the OTLP pipelines add, against what their peers in flask_observe add. The
#: logs pipeline against the file pipeline (both 2 lines a request: the view's and the access
#: line), the metrics pipeline against prometheus_client (the metrics feature).
OTLP_BUDGETS = (
    Budget(
        "issue 12, OTLP logs vs the file pipeline (per line)",
        OBSERVE_OTLP_LOGS,
        1.0,
        peer=OBSERVE,
        base=OBSERVE,
        peer_base=OBSERVE_NO_FILE,
        cross_checks=("p50_us", "min", "cpu_us"),
    ),
    Budget(
        "issue 12, OTLP metrics vs prometheus_client (per request)",
        OBSERVE_OTLP_METRICS,
        1.0,
        peer=OBSERVE_ALL,
        base=OBSERVE,
        cross_checks=("p50_us", "min", "cpu_us"),
    ),
)
BUDGETS = (*BUDGETS, *OTLP_BUDGETS)
OTLP_CONFIGS = frozenset((OBSERVE_OTLP_LOGS, OBSERVE_OTLP_METRICS))
#: Environment variables the children run without: with them, tracing and Sentry would turn
#: on by auto-detection in configurations that do not ask for them.
UNSET = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "SENTRY_DSN")
CHILD_ENV = {"GRPC_VERBOSITY": "NONE", **dict.fromkeys(UNSET, "")}


# -- one run (the child process) ------------------------------------------------------------


def run_one(
    name: str,
    requests: int,
    warmup: int,
    log_dir: Path,
    incoming_id: bool,
    view_logs: bool = True,
) -> dict[str, Any]:
    """Set up ``name``, warm up, time ``requests`` requests; per-request figures in µs."""
    log_dir.mkdir(parents=True, exist_ok=True)
    app = make_app(view_logs)
    CONFIGS[name].setup(app, log_dir)
    headers = {"X-Request-ID": "bench-0123456789abcdef"} if incoming_id else {}
    # The client's address, as every WSGI server sets it (tracing records it, then removes it
    # from the exported span).
    client = harness.WsgiClient(
        app,
        REQUEST_PATH,
        headers=headers,
        environ_base={"REMOTE_ADDR": "192.0.2.10", "REMOTE_PORT": "50123"},
    )
    first = client.get()
    if client.status_code != 200 or b'"id":42' not in first.replace(b" ", b""):
        raise RuntimeError(f"{name}: unexpected response {client.status!r} {first[:200]!r}")
    client.warm_up(warmup - 1)
    timing = client.timed(requests)
    request_id = client.header("X-Request-ID")
    logging.shutdown()  # flush and close every handler before counting lines
    lines = 0
    for path in log_dir.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                lines += sum(1 for _ in f)
    stats = timing.stats()
    return {
        "config": name,
        "requests": requests,
        "warmup": warmup,
        **{k: stats[k] for k in ("mean_us", "p50_us", "p90_us", "loop_us", "cpu_us")},
        "woken": stats.get("woken"),
        "log_lines_per_request": lines / (requests + warmup),
        "request_id_header": request_id,
    }


# -- the parent: rounds, summary, budgets ---------------------------------------------------


def summarize(runs: harness.Runs) -> dict[str, dict[str, Any]]:
    rows = harness.summarize(
        runs,
        "mean_us",
        also=("p50_us", "p90_us", "cpu_us"),
        last=("log_lines_per_request", "request_id_header"),
    )
    woken = {
        name: [r["woken"] for r in results if r.get("woken") is not None]
        for name, results in runs.items()
    }
    out: dict[str, dict[str, Any]] = {}
    for name, row in rows.items():
        out[name] = {
            "median_us": row["median"],
            "min_us": row["min"],
            "max_us": row["max"],
            "p50_us": row["p50_us"],
            "p90_us": row["p90_us"],
            "cpu_us": row["cpu_us"],
            "rounds_us": row["rounds"],
            "log_lines_per_request": row["log_lines_per_request"],
            "request_id_header": row["request_id_header"] is not None,
            "stray_output": max(r["stray_output"] for r in runs[name]),
            "woken": statistics.median(woken[name]) if woken[name] else None,
        }
    for base in (BASE, LOG_BASE):
        if base not in out:
            continue
        base_us = out[base]["median_us"]
        for row in out.values():
            row[f"added_vs_{base}_us"] = row["median_us"] - base_us
            row[f"ratio_vs_{base}"] = row["median_us"] / base_us
    return out


def render_table(summary: dict[str, dict[str, Any]]) -> str:
    has_base, has_log_base = BASE in summary, LOG_BASE in summary
    head = ["config", "µs/req", "min-max", "p50", "CPU µs/req"]
    if has_base:
        head += ["+µs vs bare", "x bare"]
    if has_log_base:
        head.append("+µs vs bare+json-logs")
    head += ["log lines/req", "X-Request-ID", "woken/req"]
    rows = []
    for name, row in summary.items():
        cells = [
            f"`{name}`",
            f"{row['median_us']:.1f}",
            f"{row['min_us']:.1f}-{row['max_us']:.1f}",
            f"{row['p50_us']:.1f}",
            f"{row['cpu_us']:.1f}",
        ]
        if has_base:
            cells += [f"{row[f'added_vs_{BASE}_us']:+.1f}", f"{row[f'ratio_vs_{BASE}']:.2f}"]
        if has_log_base:
            cells.append(f"{row[f'added_vs_{LOG_BASE}_us']:+.1f}")
        cells += [f"{row['log_lines_per_request']:.2f}", "yes" if row["request_id_header"] else ""]
        cells.append("" if row["woken"] is None else f"{row['woken']:.2f}")
        rows.append(cells)
    return harness.table(head, rows)


def budgets(silent_view: bool) -> list[Budget]:
    """The budgets that apply: a view that writes no line leaves nothing for
    ``bare+json-logs`` to subtract, so those over it are left out with --silent-view."""
    return [b for b in BUDGETS if not (silent_view and LOG_BASE in b.needs)]


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, rounds=5)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per run")
    parser.add_argument("--warmup", type=int, default=300, help="untimed requests first")
    harness.add_configs_option(parser, CONFIGS)
    parser.add_argument(
        "--suite", choices=sorted(SUITES), help="a named set of configurations (see docs)"
    )
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
    parser.add_argument("--log-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 10 or args.warmup < 1:
        parser.error("--rounds >= 1, --requests >= 10 and --warmup >= 1 are required")

    if args.child is not None:
        if args.child not in CONFIGS or args.log_dir is None:
            parser.error(f"unknown configuration {args.child!r} (or no --log-dir)")
        harness.child_exit(
            run_one(
                args.child,
                args.requests,
                args.warmup,
                args.log_dir,
                args.incoming_id,
                not args.silent_view,
            )
        )

    if args.suite and args.configs:
        parser.error("--suite and --configs: give one")
    names = (
        list(SUITES[args.suite]) if args.suite else harness.select(parser, args.configs, CONFIGS)
    )
    common = ["--requests", str(args.requests), "--warmup", str(args.warmup)]
    if args.incoming_id:
        common.append("--incoming-id")
    if args.silent_view:
        common.append("--silent-view")

    env = harness.Environment.now(PACKAGES)
    tmp = Path(tempfile.mkdtemp(prefix="flask-observe-bench-"))
    child_env = dict(CHILD_ENV)
    collector = None
    if OTLP_CONFIGS & set(names):
        from _collector import Collector

        # The OTLP configurations export to a real gRPC collector on loopback, answering at once.
        collector = Collector().__enter__()
        child_env[OTLP_ENDPOINT_VAR] = collector.endpoint

    def measure(name: str, index: int) -> dict[str, Any]:
        slug = name.replace(":", "_").replace("+", "_")
        log_dir = tmp / f"round{index + 1}" / slug
        return harness.run_child(
            __file__, name, [*common, "--log-dir", str(log_dir)], env=child_env
        )

    try:
        runs = harness.run_rounds(
            names, args.rounds, measure, describe=lambda r: f"{r['mean_us']:8.1f} µs"
        )
    finally:
        if collector is not None:
            print(f"collector received: {collector.counts}", file=sys.stderr)
            collector.__exit__()
        if args.keep_logs:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(runs)
    verdicts = harness.judge(budgets(args.silent_view), runs)
    settings = {
        "rounds": args.rounds,
        "requests": args.requests,
        "warmup": args.warmup,
        "incoming_id": args.incoming_id,
        "view_logs": not args.silent_view,
        "path": REQUEST_PATH,
        "suite": args.suite,
    }
    title = (
        f"{args.rounds} rounds x {args.requests} requests (+{args.warmup} warm-up) of GET "
        f"{REQUEST_PATH}; incoming X-Request-ID: {'yes' if args.incoming_id else 'no'}; "
        f"view writes a log line: {'no' if args.silent_view else 'yes'}"
    )
    text = (
        "µs/req: median over rounds of each run's mean; min-max: over rounds; woken/req: the"
        " background threads' voluntary context switches per request (median over rounds).\n"
    )
    return harness.finish(
        "overhead",
        as_json=args.json,
        settings=settings,
        environment=env,
        configs={n: CONFIGS[n].description for n in names},
        summary=summary,
        runs=runs,
        title=title,
        text=text + render_table(summary),
        verdicts=verdicts,
    )


if __name__ == "__main__":
    sys.exit(main())
