"""Configurations side by side in one process, request by request: for a difference of a few
microseconds that the machine's drift between rounds hides.

``overhead.py`` runs each configuration in a fresh interpreter, one after another, so a
configuration's figure carries whatever the shared machine did during its turn: on two noisy
cores a round's mean moves by tens of microseconds between turns of the same code, more than
a metrics pipeline costs. Here every configuration is built into an app of its own, all in
this one process, and the timed loop sends one request to each app in turn (the order
permuted from one cycle to the next), so a slow moment of the machine lands on every
configuration alike. The figure is each app's median request, and a configuration's cost the
difference of two medians; each round gives it once more.

What is the same for every app cancels out of the differences: a log line written through a
handler that every app's ``Observe`` set up is written by all of them, for each app's
requests alike. What only one app has (its request hooks: metrics by prometheus_client or by
OTLP) is what the differences measure. A configuration that patches the process (tracing's
instrumentations, Sentry) cannot share a process with the others: this benchmark takes only
configurations that don't (``ALLOWED``).

    python benchmarks/paired.py --rounds 7 --requests 5000
    python benchmarks/paired.py --configs observe,observe+metrics --rounds 5
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from configurations import (
    CONFIGS,
    OBSERVE,
    OBSERVE_ALL,
    OBSERVE_OTLP_METRICS,
    OTLP_ENDPOINT_VAR,
    PACKAGES,
    REQUEST_PATH,
    make_app,
)
from harness import Environment, WsgiClient, parser, table, timed_request

#: Configurations that set up only their own app (no process-wide patch or provider).
ALLOWED = (OBSERVE, OBSERVE_ALL, OBSERVE_OTLP_METRICS)
#: Issue 12: the OTLP metrics pipeline costs a request at most what prometheus_client does.
BUDGET = (OBSERVE_OTLP_METRICS, OBSERVE_ALL, OBSERVE, 1.0)
UNSET = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "SENTRY_DSN")


def timed_cycle(clients: list[WsgiClient], requests: int) -> list[list[int]]:
    """``requests`` requests to each client, one to each in turn, in an order that moves
    through every permutation; returns the ns of each request, per client."""
    times: list[list[int]] = [[0] * requests for _ in clients]
    orders = list(itertools.permutations(range(len(clients))))
    calls = [(c.app, c.environ, c._start_response) for c in clients]
    clock = time.perf_counter_ns
    gc.collect()
    for i in range(requests):
        for index in orders[i % len(orders)]:
            app, environ, start_response = calls[index]
            times[index][i] = timed_request(app, environ, start_response, clock)
    return times


def main(argv: list[str] | None = None) -> int:
    out = parser(__doc__, rounds=7)
    out.add_argument("--requests", type=int, default=5000, help="timed requests per app a round")
    out.add_argument("--warmup", type=int, default=500, help="untimed requests per app first")
    out.add_argument("--configs", default=",".join(ALLOWED), help="comma-separated, first = base")
    args = out.parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in ALLOWED]
    if unknown:
        out.error(f"not one process's configurations: {unknown} (allowed: {', '.join(ALLOWED)})")
    for key in UNSET:
        os.environ.pop(key, None)
    # gRPC's own chatter (a GOAWAY as the collector stops) stays off the terminal, as in
    # overhead.py's children; read when grpc first loads, below.
    os.environ["GRPC_VERBOSITY"] = "NONE"
    environment = Environment.now(PACKAGES)

    from _collector import Collector

    with Collector() as collector, tempfile.TemporaryDirectory() as tmp:
        os.environ[OTLP_ENDPOINT_VAR] = collector.endpoint
        clients = []
        for name in names:
            app = make_app()
            log_dir = Path(tmp) / name.replace(":", "_").replace("+", "_")
            log_dir.mkdir()
            CONFIGS[name].setup(app, log_dir)
            client = WsgiClient(app, REQUEST_PATH)
            client.warm_up(args.warmup)
            if client.status_code != 200:
                raise SystemExit(f"{name}: status {client.status}")
            clients.append(client)
        medians: dict[str, list[float]] = {n: [] for n in names}
        pooled: dict[str, list[int]] = {n: [] for n in names}
        for round_index in range(args.rounds):
            times = timed_cycle(clients, args.requests)
            for name, each in zip(names, times, strict=True):
                medians[name].append(statistics.median(each) / 1000)
                pooled[name].extend(each)
            line = ", ".join(f"{n} {medians[n][-1]:.1f}" for n in names)
            print(f"round {round_index + 1}/{args.rounds}: {line} µs", file=sys.stderr)
        from flask_observe import Observe

        for client in clients:  # its files closed before the folder goes
            Observe().shutdown(client.app)
    environment.finish()

    base = names[0]
    overall = {n: statistics.median(pooled[n]) / 1000 for n in names}
    means = {n: statistics.fmean(pooled[n]) / 1000 for n in names}
    verdict = judge(medians, overall, means)
    if args.json:
        document = {
            "environment": environment.as_dict(),
            "rounds": args.rounds,
            "requests": args.requests,
            "round_medians_us": medians,
            "medians_us": overall,
            "means_us": means,
            "budget": verdict,
        }
        print(json.dumps(document, indent=2))
        return 0
    print(
        f"{args.rounds} rounds x {args.requests} requests per app (+{args.warmup} warm-up), "
        f"one request to each app in turn, all in one process; GET {REQUEST_PATH}"
    )
    print(environment.describe())
    print()
    rows = []
    for name in names:
        per_round = [m - b for m, b in zip(medians[name], medians[base], strict=True)]
        rows.append(
            (
                f"`{name}`",
                f"{overall[name]:.1f}",
                f"{min(medians[name]):.1f}-{max(medians[name]):.1f}",
                f"{overall[name] - overall[base]:+.2f}",
                f"{means[name]:.1f} ({means[name] - means[base]:+.2f})",
                ", ".join(f"{d:+.2f}" for d in per_round),
            )
        )
    print(
        table(
            (
                "config",
                "median µs/req (all rounds)",
                "round medians",
                f"+µs vs `{base}`",
                "mean µs/req (+ vs base)",
                f"+µs vs `{base}` per round",
            ),
            rows,
        )
    )
    if verdict is not None:
        ratios = verdict["per_round"]
        on_means = verdict["on_means"]
        print()
        print(
            f"BUDGET {verdict['label']}: `{verdict['subject']}` adds {verdict['added_us']:.2f} µs"
            f" over `{verdict['base']}`, `{verdict['peer']}` adds {verdict['peer_added_us']:.2f}"
            f" µs -> ratio {verdict['ratio']:.2f} (budget <= {verdict['target']:g}): "
            f"{'met' if verdict['met'] else 'MISSED'}"
        )
        print(
            f"  per round: {', '.join(f'{r:.2f}' for r in ratios)} (median "
            f"{statistics.median(ratios):.2f}, met in {verdict['met_rounds']}/{len(ratios)})"
        )
        print(
            "  (cross-check) the same on the means of every request (a fold or a collection "
            f"included): {'n/a' if on_means is None else f'{on_means:.2f}'}"
        )
    return 0


def judge(
    medians: dict[str, list[float]], overall: dict[str, float], means: dict[str, float]
) -> dict[str, Any] | None:
    """Issue 12's metrics budget on the pooled medians, round by round and on the means;
    ``None`` unless its three configurations ran. A peer that adds nothing is a miss."""
    subject, peer, base, target = BUDGET
    if not {subject, peer, base} <= set(overall):
        return None

    def ratio(s: float, p: float, b: float) -> float:
        return (s - b) / (p - b) if p - b > 0 else float("inf")

    per_round = [
        ratio(s, p, b)
        for s, p, b in zip(medians[subject], medians[peer], medians[base], strict=True)
    ]
    pooled_ratio = ratio(overall[subject], overall[peer], overall[base])
    on_means = ratio(means[subject], means[peer], means[base])
    return {
        "label": "issue 12, OTLP metrics vs prometheus_client (per request)",
        "subject": subject,
        "peer": peer,
        "base": base,
        "target": target,
        "added_us": overall[subject] - overall[base],
        "peer_added_us": overall[peer] - overall[base],
        "ratio": pooled_ratio,
        "met": pooled_ratio <= target,
        "per_round": per_round,
        "met_rounds": sum(r <= target for r in per_round),
        "on_means": None if on_means == float("inf") else on_means,
    }


if __name__ == "__main__":
    raise SystemExit(main())
