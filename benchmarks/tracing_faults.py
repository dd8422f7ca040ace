"""Request latency with the OTLP collector healthy, down or hung; memory while spans drop.

The app of ``configurations.py`` (one small JSON view that logs a line) with ``Observe(app)``
and tracing on, 100 % sampled, exporting over OTLP/gRPC to one of:

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
through OpenTelemetry's global tracer (which flask_observe routes to the app's provider)
after the timed loop, and the RSS growth is reported.

    python benchmarks/tracing_faults.py --rounds 5 --requests 20000 --spans 200000
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import harness
from configurations import PACKAGES, REQUEST_PATH, make_app
from harness import Budget

PEERS = ("healthy", "refused", "hung")
#: The claim: a dead collector makes requests at most 10 % slower than a healthy one.
BUDGETS = tuple(
    Budget(f"latency with the collector {peer}, against healthy", peer, 1.10, peer="healthy")
    for peer in ("refused", "hung")
)


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
    from _internals import tracing_stats
    from opentelemetry import trace

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
    client = harness.WsgiClient(app, REQUEST_PATH)
    client.warm_up(warmup)
    gc.collect()
    rss_start = rss_bytes()
    timing = client.timed(requests)
    rss_end = rss_bytes()
    stats = timing.stats()
    result: dict[str, Any] = {
        "peer": peer,
        **{k: stats[k] for k in ("mean_us", "p50_us", "p99_us", "max_us", "cpu_us")},
        "rss_start_mb": rss_start / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "stats": tracing_stats(app),
    }
    if spans:
        tracer = trace.get_tracer("benchmark")
        with app.app_context():
            before = rss_bytes()
            for _ in range(spans):
                tracer.start_span("extra").end()
            result["spans_extra"] = spans
            result["spans_rss_growth_mb"] = (rss_bytes() - before) / 2**20
        result["stats_after_spans"] = tracing_stats(app)
    started = time.monotonic()
    Observe().shutdown(app)
    result["shutdown_s"] = time.monotonic() - started
    return result


# -- the parent -----------------------------------------------------------------------------


def summarize(runs: harness.Runs) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for peer, results in runs.items():
        row = {
            key: statistics.median(r[key] for r in results)
            for key in ("mean_us", "p50_us", "p99_us", "cpu_us", "shutdown_s")
        }
        row["max_us"] = max(r["max_us"] for r in results)
        row["rss_growth_mb"] = statistics.median(
            r["rss_end_mb"] - r["rss_start_mb"] for r in results
        )
        row["exported"] = statistics.median(r["stats"]["exported"] for r in results)
        row["dropped"] = statistics.median(r["stats"]["dropped"] for r in results)
        summary[peer] = row
    if "healthy" in summary:
        healthy = summary["healthy"]["mean_us"]
        for row in summary.values():
            row["ratio_vs_healthy"] = row["mean_us"] / healthy
    return summary


def render(summary: dict[str, dict[str, Any]], runs: harness.Runs) -> str:
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
    rows = [
        [
            f"`{peer}`",
            f"{row['mean_us']:.1f}",
            f"{row['ratio_vs_healthy']:.3f}" if "ratio_vs_healthy" in row else "",
            f"{row['p50_us']:.1f}",
            f"{row['p99_us']:.1f}",
            f"{row['max_us']:.0f}",
            f"{row['cpu_us']:.1f}",
            f"{row['exported']:.0f}",
            f"{row['dropped']:.0f}",
            f"{row['rss_growth_mb']:.1f}",
            f"{row['shutdown_s']:.2f}",
        ]
        for peer, row in summary.items()
    ]
    lines = [harness.table(head, rows)]
    for r in runs.get("hung", []):
        if "spans_rss_growth_mb" in r:
            after = r["stats_after_spans"]
            lines.append(
                f"memory (hung): {r['spans_extra']} more spans → RSS"
                f" {r['spans_rss_growth_mb']:+.1f} MB, queue {after['queued']}/"
                f"{after['queue_capacity']}, dropped {after['dropped']}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, rounds=5)
    parser.add_argument("--requests", type=int, default=20000, help="timed requests per run")
    parser.add_argument("--warmup", type=int, default=500, help="untimed requests first")
    parser.add_argument("--spans", type=int, default=0, help="memory check, hung peer only")
    harness.add_configs_option(parser, PEERS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        harness.child_exit(
            run_one(args.child, args.endpoint, args.requests, args.warmup, args.spans)
        )

    peers = harness.select(parser, args.configs, PEERS)
    env = harness.Environment.now(PACKAGES)
    receiver, hung = Receiver(), Hung()
    endpoints = {
        "healthy": f"http://127.0.0.1:{receiver.port}",
        "refused": f"http://127.0.0.1:{free_port()}",
        "hung": f"http://127.0.0.1:{hung.port}",
    }

    def measure(peer: str, index: int) -> dict[str, Any]:
        spans = args.spans if peer == "hung" else 0
        options = ["--endpoint", endpoints[peer], "--requests", str(args.requests)]
        options += ["--warmup", str(args.warmup), "--spans", str(spans)]
        return harness.run_child(__file__, peer, options, env={"GRPC_VERBOSITY": "NONE"})

    def describe(result: dict[str, Any]) -> str:
        stats = result["stats"]
        return (
            f"{result['mean_us']:8.1f} µs exported {stats['exported']} dropped {stats['dropped']}"
        )

    try:
        runs = harness.run_rounds(peers, args.rounds, measure, describe=describe)
    finally:
        receiver.close()
        hung.close()
    summary = summarize(runs)
    return harness.finish(
        "tracing_faults",
        as_json=args.json,
        settings={k: getattr(args, k) for k in ("rounds", "requests", "warmup", "spans")},
        environment=env,
        summary=summary,
        runs=runs,
        title=f"{args.rounds} rounds x {args.requests} requests (+{args.warmup} warm-up) of GET "
        f"{REQUEST_PATH}, tracing 100% sampled to an OTLP/gRPC peer",
        text=render(summary, runs),
        verdicts=harness.judge(BUDGETS, runs),
    )


if __name__ == "__main__":
    sys.exit(main())
