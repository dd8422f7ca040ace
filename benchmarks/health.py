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
framework's and the library's own cost. Run: ``python benchmarks/health.py [--rounds 5]``;
needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/13"

READY_CONFIGS = ("observe-parallel", "healthcheck-sequential", "handrolled-sequential")
CACHED_CONFIGS = ("observe-cached", "healthcheck-cached", "bare-route-observe", "bare-route-plain")
LIVE_CONFIGS = ("live-idle", "live-during-db-hang")


# -- the worker side: one config per process ------------------------------------------------


def wsgi_get(app: Any, path: str) -> tuple[int, bytes]:
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> Any:
        status.append(s)
        return lambda data: None

    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "bench",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return int(status[0].split()[0]), body


def check_objects(upstream: str) -> list[Any]:
    from flask_observe.health import DatabaseCheck, HttpCheck, RedisCheck

    return [
        DatabaseCheck("db", url=PG_URL, timeout=2),
        RedisCheck("cache", url=REDIS_URL, timeout=2),
        HttpCheck("api", url=f"{upstream}/fast", timeout=2),
        HttpCheck("slow-api", url=f"{upstream}/slow", timeout=2),
    ]


def observe_app(**config: Any) -> Any:
    from flask import Flask

    from flask_observe import Observe

    app = Flask("bench")
    app.config.update(
        OBSERVE_LOG_STDOUT=False,
        OBSERVE_EXCLUDED_PATHS=[r"^/health", r"^/ping$"],
        **{f"OBSERVE_{k.upper()}": v for k, v in config.items()},
    )
    Observe(app)
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
    checks = check_objects(upstream)
    overheads: list[float] = []
    slowest: list[float] = []
    if config == "observe-parallel":
        from flask_observe import Observe

        app = observe_app(health_cache_ttl=0)
        runner = Observe.state(app).health
        assert runner is not None
        for check in checks:
            runner.add(check)
    elif config == "healthcheck-sequential":
        app = peer_healthcheck(checks, ttl=0)
    else:
        app = peer_handrolled(checks)
    for _ in range(3):
        code, body = wsgi_get(app, "/health/ready")
        assert code == 200, body
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        code, _ = wsgi_get(app, "/health/ready")
        elapsed = time.perf_counter() - started
        assert code == 200
        latencies.append(elapsed * 1000)
        if config == "observe-parallel":
            worst = max(r.duration for r in runner.latest().values()) * 1000
            slowest.append(worst)
            overheads.append(elapsed * 1000 - worst)
    out: dict[str, Any] = {"latency_ms": latencies}
    if overheads:
        out["overhead_ms"] = overheads
        out["slowest_check_ms"] = slowest
    return out


def work_cached(config: str, n: int, upstream: str) -> dict[str, Any]:
    from flask import Flask

    path = "/health/ready"
    if config == "observe-cached":
        from flask_observe import Observe

        app = observe_app(health_cache_ttl=3600)
        runner = Observe.state(app).health
        assert runner is not None
        for check in check_objects(upstream):
            runner.add(check)
    elif config == "healthcheck-cached":
        app = peer_healthcheck(check_objects(upstream), ttl=3600)
    else:
        app = observe_app() if config == "bare-route-observe" else Flask("bench")
        app.add_url_rule("/ping", "ping", view_func=lambda: {"status": "pass"})
        path = "/ping"
    for _ in range(200):
        code, body = wsgi_get(app, path)
        assert code == 200, body
    batches = []
    batch = max(1, n // 20)
    for _ in range(20):
        started = time.perf_counter_ns()
        for _ in range(batch):
            wsgi_get(app, path)
        batches.append((time.perf_counter_ns() - started) / batch / 1000)
    return {"us_per_request": batches}


def work_live(config: str, n: int, upstream: str) -> dict[str, Any]:
    import requests
    from werkzeug.serving import make_server

    from flask_observe import Observe
    from flask_observe.health import DatabaseCheck

    app = observe_app(health_cache_ttl=0)
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
    runner = Observe.state(app).health
    assert runner is not None
    runner.add(
        DatabaseCheck("db", url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/x", timeout=1)
    )
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
        "ready_probes": len(ready_codes),
        "ready_503": sum(c == 503 for c in ready_codes),
    }


def worker(config: str, n: int, upstream: str) -> None:
    if config in READY_CONFIGS:
        out = work_ready(config, n, upstream)
    elif config in CACHED_CONFIGS:
        out = work_cached(config, n, upstream)
    else:
        out = work_live(config, n, upstream)
    print(json.dumps(out))


# -- the driver -----------------------------------------------------------------------------


def start_upstream() -> tuple[str, Any]:
    import logging

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    libs = ", ".join(
        f"{name} {version(name)}"
        for name in ("Flask", "SQLAlchemy", "psycopg", "redis", "healthcheck")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {libs},"
        f" {platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker")
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--upstream", default="")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.upstream)
        return

    upstream, server = start_upstream()
    plan = [(c, 40) for c in READY_CONFIGS] + [(c, 20000) for c in CACHED_CONFIGS]
    plan += [(c, 2000) for c in LIVE_CONFIGS]
    results: dict[str, list[dict[str, Any]]] = {c: [] for c, _ in plan}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for round_no in range(args.rounds):
        order = plan if round_no % 2 == 0 else list(reversed(plan))
        for config, n in order:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    config,
                    "--n",
                    str(n),
                    "--upstream",
                    upstream,
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
                check=False,
            )
            if proc.returncode != 0:
                raise SystemExit(f"{config} failed:\n{proc.stdout}\n{proc.stderr}")
            results[config].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    server.shutdown()
    report(results, args.rounds)


def report(results: dict[str, list[dict[str, Any]]], rounds: int) -> None:
    print(f"machine: {machine()}")
    print(f"rounds: {rounds}, each config in a fresh process, order alternating\n")
    print("1. readiness, 4 checks (PostgreSQL, Redis, HTTP, HTTP 100 ms), no cache")
    print("| config | median latency (ms) | p95 latency (ms) |")
    print("|---|---|---|")
    medians = {}
    for config in READY_CONFIGS:
        values = [v for r in results[config] for v in r["latency_ms"]]
        medians[config] = statistics.median(values)
        print(f"| {config} | {medians[config]:.1f} | {percentile(values, 0.95):.1f} |")
    overhead = [v for r in results["observe-parallel"] for v in r["overhead_ms"]]
    slowest = [v for r in results["observe-parallel"] for v in r["slowest_check_ms"]]
    round_medians = [statistics.median(r["overhead_ms"]) for r in results["observe-parallel"]]
    print(
        f"\nobserve-parallel minus its slowest check: median {statistics.median(overhead):.2f} ms,"
        f" p95 {percentile(overhead, 0.95):.2f} ms, max {max(overhead):.2f} ms"
        f" (per-round medians {', '.join(f'{m:.2f}' for m in round_medians)});"
        f" slowest check median {statistics.median(slowest):.1f} ms"
    )
    for peer in READY_CONFIGS[1:]:
        print(f"{peer} / observe-parallel: {medians[peer] / medians['observe-parallel']:.2f}x")

    print("\n2. a cached answer (in-process WSGI), microseconds per request")
    print("| config | median (µs) | per-round medians |")
    print("|---|---|---|")
    cached = {}
    for config in CACHED_CONFIGS:
        per_round = [statistics.median(r["us_per_request"]) for r in results[config]]
        cached[config] = statistics.median(per_round)
        rounds_text = ", ".join(f"{m:.1f}" for m in per_round)
        print(f"| {config} | {cached[config]:.1f} | {rounds_text} |")
    ratio = cached["observe-cached"] / cached["bare-route-observe"]
    print(f"\nobserve-cached / bare-route-observe: {ratio:.2f}x (target <= 2)")
    print(
        f"observe-cached / bare-route-plain: "
        f"{cached['observe-cached'] / cached['bare-route-plain']:.2f}x;"
        f" healthcheck-cached / bare-route-plain: "
        f"{cached['healthcheck-cached'] / cached['bare-route-plain']:.2f}x"
    )

    print("\n3. liveness over real HTTP, 2000 probes per round")
    print("| config | p50 (ms) | p99 (ms) | max (ms) | readiness probes meanwhile (503) |")
    print("|---|---|---|---|---|")
    for config in LIVE_CONFIGS:
        values = [v for r in results[config] for v in r["latency_ms"]]
        probes = sum(r["ready_probes"] for r in results[config])
        fails = sum(r["ready_503"] for r in results[config])
        print(
            f"| {config} | {statistics.median(values):.2f} | {percentile(values, 0.99):.2f} |"
            f" {max(values):.2f} | {probes} ({fails}) |"
        )


if __name__ == "__main__":
    main()
