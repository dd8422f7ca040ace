"""Health endpoints: what a probe costs, next to the peers, each config in a fresh process.

Three questions, each answered by configs measured in interleaved rounds:

1. *Readiness with several checks* (PostgreSQL ``SELECT 1`` on a new connection, Redis
   ``PING``, an HTTP dependency, and a slow HTTP dependency answering in 100 ms), no cache:
   flask_observe runs them in parallel, so a probe should cost the slowest check plus
   ≤ 5 ms. Peers run the same check functions one after another: ``healthcheck`` (the Flask
   health package on PyPI, ``HealthCheck(success_ttl=0)``) and a hand-rolled ``/health``
   view, as a plain Flask app or django-health-check's default (sequential) runner would.
2. *A cached answer* against a bare route: flask_observe's ``/health/ready`` with fresh cached
   results; ``healthcheck`` with its cache; a bare ``/ping`` route on the same app (Observe
   on, path excluded from the access log like the health paths); the bare route without
   Observe. Target: cached readiness at most twice the bare route.
3. *Liveness while the database hangs*: readiness hammered by 4 threads against a
   PostgreSQL URL whose server accepts and never answers, while 2000 liveness probes go over
   real HTTP; and the same probes with nothing else going on.

Requests 1 and 2 are WSGI calls in-process (no sockets), so the numbers are the
framework's and the library's own cost. Needs PostgreSQL on 127.0.0.1:5432 and Redis on
127.0.0.1:6379.

    python benchmarks/health.py --rounds 5
    python benchmarks/health.py --rounds 1 --scale 0.05 --configs observe-parallel,live-idle
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import harness
from harness import Budget, percentile, pooled

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/13"

READY_CONFIGS = ("observe-parallel", "healthcheck-sequential", "handrolled-sequential")
CACHED_CONFIGS = ("observe-cached", "healthcheck-cached", "bare-route-observe", "bare-route-plain")
LIVE_CONFIGS = ("live-idle", "live-during-db-hang")
#: Requests (probes) per run of each config, before ``--scale``.
PLAN = {
    **dict.fromkeys(READY_CONFIGS, 40),
    **dict.fromkeys(CACHED_CONFIGS, 20000),
    **dict.fromkeys(LIVE_CONFIGS, 2000),
}
BUDGETS = (
    Budget(
        "readiness minus its slowest check (each round's median probe)",
        "observe-parallel",
        5.0,
        key="overhead_ms_median",
        unit="ms",
    ),
    Budget(
        "cached readiness against a bare route on the same app",
        "observe-cached",
        2.0,
        peer="bare-route-observe",
        key="us_median",
    ),
)
PACKAGES = ("SQLAlchemy", "psycopg", "redis", "healthcheck", "requests")


# -- the worker side: one config per process ------------------------------------------------


def client(app: Any, path: str) -> harness.WsgiClient:
    return harness.WsgiClient(app, path, multithread=True)


def check_objects(upstream: str) -> list[Any]:
    from flask_observe.health import DatabaseCheck, HttpCheck, RedisCheck

    return [
        DatabaseCheck("db", url=PG_URL, timeout=2),
        RedisCheck("cache", url=REDIS_URL, timeout=2),
        HttpCheck("api", url=f"{upstream}/fast", timeout=2),
        HttpCheck("slow-api", url=f"{upstream}/slow", timeout=2),
    ]


def observe_app(checks: Sequence[Any] = (), **config: Any) -> Any:
    from flask import Flask

    from flask_observe import Observe

    app = Flask("bench")
    app.config.update(
        OBSERVE_LOG_STDOUT=False,
        OBSERVE_EXCLUDED_PATHS=[r"^/health", r"^/ping$"],
        **{f"OBSERVE_{k.upper()}": v for k, v in config.items()},
    )
    observe = Observe(app)
    for check in checks:
        observe.add_health_check(check, app=app)
    return app


def peer_healthcheck(checks: list[Any], ttl: float) -> Any:
    from flask import Flask
    from healthcheck import HealthCheck

    app = Flask("bench")
    health = HealthCheck(success_ttl=ttl, failed_ttl=ttl)
    for check in checks:

        def run(check: Any = check) -> tuple[bool, str]:
            check.run()
            return True, "ok"

        run.__name__ = check.name.replace("-", "_")
        health.add_check(run)
    app.add_url_rule("/health/ready", "health", view_func=lambda: health.check())
    return app


def peer_handrolled(checks: list[Any]) -> Any:
    from flask import Flask, jsonify

    app = Flask("bench")

    @app.get("/health/ready")
    def health() -> Any:
        results = {}
        ok = True
        for check in checks:
            try:
                check.run()
                results[check.name] = "ok"
            except Exception as exc:
                results[check.name] = str(exc)
                ok = False
        response = jsonify(status="pass" if ok else "fail", checks=results)
        response.status_code = 200 if ok else 503
        return response

    return app


def work_ready(config: str, n: int, upstream: str) -> dict[str, Any]:
    from _internals import latest_check_durations

    checks = check_objects(upstream)
    overheads: list[float] = []
    slowest: list[float] = []
    if config == "observe-parallel":
        app = observe_app(checks, health_cache_ttl=0)
    elif config == "healthcheck-sequential":
        app = peer_healthcheck(checks, ttl=0)
    else:
        app = peer_handrolled(checks)
    probe = client(app, "/health/ready")
    for _ in range(3):
        body = probe.get()
        assert probe.status_code == 200, body
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        probe.get()
        elapsed = time.perf_counter() - started
        assert probe.status_code == 200
        latencies.append(elapsed * 1000)
        if config == "observe-parallel":
            worst = max(latest_check_durations(app).values()) * 1000
            slowest.append(worst)
            overheads.append(elapsed * 1000 - worst)
    out: dict[str, Any] = {
        "latency_ms": latencies,
        "latency_ms_median": statistics.median(latencies),
    }
    if overheads:
        out.update(
            overhead_ms=overheads,
            slowest_check_ms=slowest,
            overhead_ms_median=statistics.median(overheads),
        )
    return out


def work_cached(config: str, n: int, upstream: str) -> dict[str, Any]:
    from flask import Flask

    path = "/health/ready"
    if config == "observe-cached":
        app = observe_app(check_objects(upstream), health_cache_ttl=3600)
    elif config == "healthcheck-cached":
        app = peer_healthcheck(check_objects(upstream), ttl=3600)
    else:
        app = observe_app() if config == "bare-route-observe" else Flask("bench")
        app.add_url_rule("/ping", "ping", view_func=lambda: {"status": "pass"})
        path = "/ping"
    probe = client(app, path)
    for _ in range(200):
        body = probe.get()
        assert probe.status_code == 200, body
    # 20 batches; each batch's figure is its loop's wall time per request.
    batch = max(1, n // 20)
    batches = [probe.timed(batch).stats()["loop_us"] for _ in range(20)]
    return {"us_per_request": batches, "us_median": statistics.median(batches)}


def work_live(config: str, n: int, upstream: str) -> dict[str, Any]:
    import requests
    from werkzeug.serving import make_server

    from flask_observe.health import DatabaseCheck

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(128)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(hung.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    port = hung.getsockname()[1]
    check = DatabaseCheck("db", url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/x", timeout=1)
    app = observe_app([check], health_cache_ttl=0)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    stop = threading.Event()
    ready_codes: list[int] = []

    def hammer() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                ready_codes.append(session.get(f"{base}/health/ready", timeout=10).status_code)

    hammers = []
    if config == "live-during-db-hang":
        hammers = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for t in hammers:
            t.start()
        time.sleep(0.2)
    latencies = []
    with requests.Session() as session:
        for _ in range(n):
            started = time.perf_counter()
            response = session.get(f"{base}/health/live", timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
    stop.set()
    for t in hammers:
        t.join(10)
    server.shutdown()
    return {
        "latency_ms": latencies,
        "p99_ms": percentile(latencies, 0.99),
        "ready_probes": len(ready_codes),
        "ready_503": sum(c == 503 for c in ready_codes),
    }


def worker(config: str, n: int, upstream: str) -> dict[str, Any]:
    if config in READY_CONFIGS:
        return work_ready(config, n, upstream)
    if config in CACHED_CONFIGS:
        return work_cached(config, n, upstream)
    return work_live(config, n, upstream)


# -- the driver -----------------------------------------------------------------------------


def start_upstream() -> tuple[str, Any]:
    from flask import Flask
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    up = Flask("upstream")
    up.add_url_rule("/fast", "fast", view_func=lambda: "ok")

    def slow() -> str:
        time.sleep(0.1)
        return "ok"

    up.add_url_rule("/slow", "slow", view_func=slow)
    server = make_server("127.0.0.1", 0, up, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, rounds=5)
    harness.add_configs_option(parser, PLAN)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every config's request count"
    )
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        harness.child_exit(worker(args.child, args.n, args.upstream))
    if args.scale <= 0:
        parser.error("--scale must be positive")

    names = harness.select(parser, args.configs, list(PLAN))
    counts = {name: max(1, round(PLAN[name] * args.scale)) for name in names}
    upstream, server = start_upstream()
    env = harness.Environment.now(PACKAGES)

    def measure(name: str, index: int) -> dict[str, Any]:
        options = ["--n", str(counts[name]), "--upstream", upstream]
        return harness.run_child(__file__, name, options, timeout=600)

    try:
        runs = harness.run_rounds(names, args.rounds, measure, order="alternate")
    finally:
        server.shutdown()
    summary = summarize(runs)
    return harness.finish(
        "health",
        as_json=args.json,
        settings={"rounds": args.rounds, "scale": args.scale, "requests": counts},
        environment=env,
        summary=summary,
        runs=runs,
        title=f"rounds: {args.rounds}, each config in a fresh process, order alternating",
        text=report(summary, counts),
        verdicts=harness.judge(BUDGETS, runs),
    )


def summarize(runs: harness.Runs) -> dict[str, dict[str, Any]]:
    """Per config: pooled percentiles of every probe (readiness, liveness), or the median of
    the per-round medians (cached answers)."""
    out: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        if name in CACHED_CONFIGS:
            per_round = [r["us_median"] for r in results]
            out[name] = {"median_us": statistics.median(per_round), "per_round_us": per_round}
            continue
        values = pooled(results, "latency_ms")
        row: dict[str, Any] = {
            "median_ms": statistics.median(values),
            "p95_ms": percentile(values, 0.95),
            "p99_ms": percentile(values, 0.99),
            "max_ms": max(values),
        }
        if name == "observe-parallel":
            overhead = pooled(results, "overhead_ms")
            row.update(
                overhead_median_ms=statistics.median(overhead),
                overhead_p95_ms=percentile(overhead, 0.95),
                overhead_max_ms=max(overhead),
                overhead_per_round_ms=[r["overhead_ms_median"] for r in results],
                slowest_check_median_ms=statistics.median(pooled(results, "slowest_check_ms")),
            )
        if name in LIVE_CONFIGS:
            row.update(
                ready_probes=sum(r["ready_probes"] for r in results),
                ready_503=sum(r["ready_503"] for r in results),
            )
        out[name] = row
    return out


def report(summary: dict[str, dict[str, Any]], counts: dict[str, int]) -> str:
    lines: list[str] = []
    ready = [c for c in READY_CONFIGS if c in summary]
    if ready:
        lines += ["", "1. readiness, 4 checks (PostgreSQL, Redis, HTTP, HTTP 100 ms), no cache"]
        rows = [[c, f"{summary[c]['median_ms']:.1f}", f"{summary[c]['p95_ms']:.1f}"] for c in ready]
        lines.append(harness.table(["config", "median latency (ms)", "p95 latency (ms)"], rows))
    if "observe-parallel" in summary:
        row = summary["observe-parallel"]
        lines.append(
            f"\nobserve-parallel minus its slowest check: median {row['overhead_median_ms']:.2f}"
            f" ms, p95 {row['overhead_p95_ms']:.2f} ms, max {row['overhead_max_ms']:.2f} ms"
            " (per-round medians "
            + ", ".join(f"{m:.2f}" for m in row["overhead_per_round_ms"])
            + f"); slowest check median {row['slowest_check_median_ms']:.1f} ms"
        )
        for peer in READY_CONFIGS[1:]:
            if peer in summary:
                ratio = summary[peer]["median_ms"] / row["median_ms"]
                lines.append(f"{peer} / observe-parallel: {ratio:.2f}x")
    cached = [c for c in CACHED_CONFIGS if c in summary]
    if cached:
        lines += ["", "2. a cached answer (in-process WSGI), microseconds per request"]
        rows = [
            [
                c,
                f"{summary[c]['median_us']:.1f}",
                ", ".join(f"{m:.1f}" for m in summary[c]["per_round_us"]),
            ]
            for c in cached
        ]
        lines.append(harness.table(["config", "median (µs)", "per-round medians"], rows))
        if {"observe-cached", "bare-route-plain", "healthcheck-cached"} <= set(cached):
            plain = summary["bare-route-plain"]["median_us"]
            lines.append(
                f"observe-cached / bare-route-plain: "
                f"{summary['observe-cached']['median_us'] / plain:.2f}x;"
                f" healthcheck-cached / bare-route-plain: "
                f"{summary['healthcheck-cached']['median_us'] / plain:.2f}x"
            )
    live = [c for c in LIVE_CONFIGS if c in summary]
    if live:
        probes = counts[live[0]]
        lines += ["", f"3. liveness over real HTTP, {probes} probes per round"]
        head = ["config", "p50 (ms)", "p99 (ms)", "max (ms)", "readiness probes meanwhile (503)"]
        rows = [
            [
                c,
                f"{summary[c]['median_ms']:.2f}",
                f"{summary[c]['p99_ms']:.2f}",
                f"{summary[c]['max_ms']:.2f}",
                f"{summary[c]['ready_probes']} ({summary[c]['ready_503']})",
            ]
            for c in live
        ]
        lines.append(harness.table(head, rows))
    return "\n".join(lines).lstrip("\n")


if __name__ == "__main__":
    sys.exit(main())
