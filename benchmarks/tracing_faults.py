"""Request latency with the OTLP collector healthy, down or hung; memory while spans drop.

The app of ``benchmarks/overhead.py`` (one small JSON view that logs a line) with
``Observe(app)`` and tracing on, 100 % sampled, exporting over OTLP/gRPC to one of:

- ``healthy``: a real OTLP/gRPC receiver (``grpcio`` + ``opentelemetry-proto``) that answers
  every export at once;
- ``refused``: a loopback port nothing listens on;
- ``hung``: a TCP listener that accepts connections and never answers.

The peers live in this (parent) process, which only waits while a child runs; each run is a
fresh interpreter; rounds are interleaved with the order rotated; the report uses medians over
rounds. Each run times ``--requests`` requests through the WSGI app in-process (as
overhead.py does), enough for the batch processor to export (or fail to) many times during the
timed loop, then reports the tracing stats and the resident memory before and after.

``--spans N`` adds a memory check: with the collector hung, N more spans are started and ended
through the app's tracer after the timed loop, and the RSS growth is reported.

    python benchmarks/tracing_faults.py --rounds 5 --requests 20000 --spans 200000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from overhead import REQUEST_PATH, environment, make_app

RESULT_PREFIX = "FAULTS-RESULT "
PEERS = ("healthy", "refused", "hung")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- peers (parent process) -----------------------------------------------------------------


class Receiver:
    """OTLP/gRPC receiver that accepts every export and counts the spans."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import (
            trace_service_pb2,
            trace_service_pb2_grpc,
        )

        self.spans = 0
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                receiver.spans += sum(
                    len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans
                )
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self) -> None:
        self.server.stop(grace=None)


class Hung:
    """Accepts connections, reads and discards, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                conn.setblocking(False)
                self.conns.append(conn)
            except OSError:
                pass
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.recv(65536)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for conn in self.conns:
            conn.close()
        self.sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- one run (the child process) ------------------------------------------------------------


def run_one(peer: str, endpoint: str, requests: int, warmup: int, spans: int) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    from flask_observe import Observe

    log_dir = Path(tempfile.mkdtemp(prefix="flask-observe-faults-"))
    app = make_app()
    app.config.update(
        OBSERVE_LOG_DIR=str(log_dir),
        OBSERVE_LOG_STDOUT=False,
        OBSERVE_TRACING_ENDPOINT=endpoint,
        OBSERVE_TRACING_SAMPLE_RATE=1.0,
    )
    Observe(app)
    tracing = Observe.state(app).tracing
    assert tracing is not None
    builder = EnvironBuilder(path=REQUEST_PATH)
    environ = builder.get_environ()
    builder.close()

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    def request() -> None:
        body = app(environ.copy(), start_response)
        for _chunk in body:
            pass
        body.close()  # type: ignore[attr-defined]

    for _ in range(warmup):
        request()
    gc.collect()
    rss_start = rss_bytes()
    clock = time.perf_counter_ns
    times = [0] * requests
    cpu_start = time.process_time_ns()
    for i in range(requests):
        t0 = clock()
        request()
        times[i] = clock() - t0
    cpu = time.process_time_ns() - cpu_start
    rss_end = rss_bytes()
    result: dict[str, Any] = {
        "peer": peer,
        "mean_us": sum(times) / requests / 1000,
        "p50_us": statistics.median(times) / 1000,
        "p99_us": statistics.quantiles(times, n=100)[-1] / 1000,
        "max_us": max(times) / 1000,
        "cpu_us": cpu / requests / 1000,
        "rss_start_mb": rss_start / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "stats": tracing.stats(),
    }
    if spans:
        tracer = tracing.tracer(("benchmark", None, None))
        with app.app_context():
            before = rss_bytes()
            for _ in range(spans):
                tracer.start_span("extra").end()
            result["spans_extra"] = spans
            result["spans_rss_growth_mb"] = (rss_bytes() - before) / 2**20
        result["stats_after_spans"] = tracing.stats()
    started = time.monotonic()
    Observe().shutdown(app)
    result["shutdown_s"] = time.monotonic() - started
    return result


# -- the parent -----------------------------------------------------------------------------


def run_child(peer: str, endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        peer,
        "--endpoint",
        endpoint,
        "--requests",
        str(args.requests),
        "--warmup",
        str(args.warmup),
        "--spans",
        str(args.spans if peer == "hung" else 0),
    ]
    env = dict(os.environ, GRPC_VERBOSITY="NONE")
    proc = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{peer} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--spans", type=int, default=0, help="memory check, hung peer only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=PEERS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = run_one(args.child, args.endpoint, args.requests, args.warmup, args.spans)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    env = environment()
    env["loadavg_start"] = os.getloadavg()
    receiver, hung = Receiver(), Hung()
    endpoints = {
        "healthy": f"http://127.0.0.1:{receiver.port}",
        "refused": f"http://127.0.0.1:{free_port()}",
        "hung": f"http://127.0.0.1:{hung.port}",
    }
    runs: dict[str, list[dict[str, Any]]] = {peer: [] for peer in PEERS}
    started = time.monotonic()
    try:
        for index in range(args.rounds):
            order = PEERS[index % 3 :] + PEERS[: index % 3]
            for peer in order:
                result = run_child(peer, endpoints[peer], args)
                runs[peer].append(result)
                print(
                    f"round {index + 1}/{args.rounds} {peer:8} {result['mean_us']:8.1f} µs "
                    f"exported {result['stats']['exported']} dropped {result['stats']['dropped']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        receiver.close()
        hung.close()
    env["loadavg_end"] = os.getloadavg()
    env["seconds"] = round(time.monotonic() - started, 1)

    summary: dict[str, dict[str, Any]] = {}
    for peer, results in runs.items():
        summary[peer] = {
            key: statistics.median(r[key] for r in results)
            for key in ("mean_us", "p50_us", "p99_us", "cpu_us", "shutdown_s")
        }
        summary[peer]["max_us"] = max(r["max_us"] for r in results)
        summary[peer]["rss_growth_mb"] = statistics.median(
            r["rss_end_mb"] - r["rss_start_mb"] for r in results
        )
        summary[peer]["exported"] = statistics.median(r["stats"]["exported"] for r in results)
        summary[peer]["dropped"] = statistics.median(r["stats"]["dropped"] for r in results)
    healthy = summary["healthy"]["mean_us"]
    for row in summary.values():
        row["ratio_vs_healthy"] = row["mean_us"] / healthy
    memory = [r for r in runs["hung"] if "spans_rss_growth_mb" in r]
    if args.json:
        json.dump({"environment": env, "summary": summary, "runs": runs}, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"{args.rounds} rounds x {args.requests} requests (+{args.warmup} warm-up) of GET "
        f"{REQUEST_PATH}, tracing 100% sampled to an OTLP/gRPC peer"
    )
    print(
        f"{env['cpu']} ({env['cpus']} CPUs), {env['implementation']} {env['python']}, "
        f"load {env['loadavg_start'][0]:.2f} → {env['loadavg_end'][0]:.2f}, {env['seconds']} s"
    )
    print()
    head = [
        "collector",
        "µs/req",
        "x healthy",
        "p50",
        "p99",
        "max",
        "CPU µs/req",
        "spans exported",
        "spans dropped",
        "RSS growth MB",
        "shutdown s",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for peer, row in summary.items():
        cells = [
            f"`{peer}`",
            f"{row['mean_us']:.1f}",
            f"{row['ratio_vs_healthy']:.3f}",
            f"{row['p50_us']:.1f}",
            f"{row['p99_us']:.1f}",
            f"{row['max_us']:.0f}",
            f"{row['cpu_us']:.1f}",
            f"{row['exported']:.0f}",
            f"{row['dropped']:.0f}",
            f"{row['rss_growth_mb']:.1f}",
            f"{row['shutdown_s']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    worst = max(summary["refused"]["ratio_vs_healthy"], summary["hung"]["ratio_vs_healthy"])
    verdict = "MET" if worst <= 1.10 else "MISSED"
    print(f"\nLATENCY within 10% of healthy (worst ratio {worst:.3f}): {verdict}")
    for r in memory:
        after = r["stats_after_spans"]
        print(
            f"memory (hung): {r['spans_extra']} more spans → RSS {r['spans_rss_growth_mb']:+.1f}"
            f" MB, queue {after['queued']}/{after['queue_capacity']}, dropped {after['dropped']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
