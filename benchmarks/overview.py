"""The console's overview: what its rollups add to each request, and how fast its pages
answer with 24 hours of rollups stored.

Configurations, each in a fresh interpreter (the harness' ``--child``), rounds interleaved:

- ``rollups``: two apps in one process, the same but for ``OBSERVE_CONSOLE_ROLLUPS`` (false,
  true; metrics, the log viewer and the console on), in-process WSGI requests to one route
  (:class:`harness.WsgiClient`) in batches that alternate between the two (40 batches): the
  median over batches of the difference of their per-request medians is what the rollups add
  per request, the request hook included (the difference of the means is given beside it: on
  a loaded machine a preempted request moves a mean by tens of µs). Alternating batches
  cancel the drift of a shared machine, which separate processes minutes apart do not;
- ``hook``: ``Rollups.on_request`` alone, called on a finished request's record in a loop
  (its own cost, without the request around it);
- ``overview-24h``: ``GET <console>/overview`` (the 1 h window, the hour's charts) and
  ``…?window=24h&range=day`` through Flask's test client, signed in with the bearer token,
  on a store holding 24 hours of rollups of 60 routes, 10 outbound hosts and 5 Celery tasks
  (every minute of each series, in every tier), 500 alert incidents with 2 notifications
  each and 2,000 health transitions; ``alerts`` and ``health`` pages on the same store.

    python benchmarks/overview.py --rounds 5
    python benchmarks/overview.py --rounds 1 --requests 2000 --pages 5   # a quick look
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import Budget

TOKEN = "bench-console-Zr4kq9XvT2mLp8wB3nC"
BASE = "/observe/console"
CONFIGS = ("rollups", "hook", "overview-24h")
BATCHES = 40
PAGES = {
    "overview 1h": f"{BASE}/overview?window=1h&range=hour",
    "overview 24h": f"{BASE}/overview?window=24h&range=day",
    "overview 5m": f"{BASE}/overview?window=5m&range=hour",
    "alerts": f"{BASE}/alerts",
    "health": f"{BASE}/health",
}
BUDGETS = [
    Budget("rollups per request", "rollups", 5.0, key="added_us", cross_checks=("added_mean_us",)),
    Budget("Rollups.on_request alone", "hook", 5.0),
    *(
        Budget(f"{name} with 24 h stored", "overview-24h", 300.0, key=f"{name} p95_ms", unit="ms")
        for name in PAGES
    ),
]


def app(directory: Path, rollups: bool) -> Any:
    import logging

    from flask import Flask

    from flask_observe import Observe

    flask_app = Flask("bench")
    flask_app.config.update(
        OBSERVE_LOG_STDOUT=False,
        OBSERVE_LOG_DIR=str(directory),
        OBSERVE_LOGVIEWER_ENABLED=True,
        OBSERVE_AUTH_TOKEN=TOKEN,
        OBSERVE_AUTH_STATE_DIR=str(directory / "auth"),
        OBSERVE_CONSOLE_ROLLUPS=rollups,
        OBSERVE_TRACING_ENABLED=False,
        OBSERVE_ACCESS_LOG=False,
    )
    Observe(flask_app)

    @flask_app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return "ok"

    logging.getLogger().setLevel(logging.WARNING)
    return flask_app


def fill(data: Any, hours: int = 24) -> dict[str, int]:
    """Write ``hours`` of rollups (every minute of every series, each tier) and a full
    history into the store of ``data`` (the app's ``OverviewData``)."""
    import random

    from flask_observe.alerting import Alert
    from flask_observe.console import rollups as r

    rnd = random.Random(3)
    rollups, history = data.rollups, data.history
    now = int(time.time())
    series = (
        [(r.ROUTE, f"/api/resource{i}/<int:id>") for i in range(60)]
        + [(r.HOST, f"api{i}.example.com") for i in range(10)]
        + [(r.TASK, f"tasks.job{i}") for i in range(5)]
    )
    cells: dict[tuple[int, int, str, str], list[Any]] = {}
    for minute in range(hours * 60):
        start = now - now % 60 - minute * 60
        for kind, name in series:
            count = rnd.randint(5, 60)
            hist: dict[int, int] = {}
            for _ in range(6):
                index = r.bucket_of(rnd.lognormvariate(-3.5, 1.0))
                hist[index] = hist.get(index, 0) + count // 6
            for res, keep in r.TIERS:
                if start < now - keep:
                    continue
                for series_name in (name, r.ALL):  # as Rollups.flush writes them
                    key = (res, start - start % res, kind, series_name)
                    cell = cells.setdefault(key, [0, 0, 0.0, {}])
                    cell[0] += count
                    cell[1] += count // 20
                    cell[2] += count * 0.03
                    for index, n in hist.items():
                        cell[3][index] = cell[3].get(index, 0) + n
    with rollups.db.write() as db:
        db.executemany(
            "INSERT OR REPLACE INTO rollup VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (res, slot, kind, name, c[0], c[1], c[2], r._encode(c[3]))
                for (res, slot, kind, name), c in cells.items()
            ],
        )
    for i in range(500):
        alert = Alert(f"Alert{i % 20}", labels={"n": str(i)}, summary="x" * 80)
        history.on_alert("queued", alert, None, "")
        history.on_alert("sent", alert, "slack", "")
        history.on_alert("queued", Alert(f"Alert{i % 20}", labels={"n": str(i)},
                                         status="resolved"), None, "")  # fmt: skip
        history.on_alert("sent", alert, "slack", "")
    history.flush()
    with history.db.write() as db:
        db.executemany(
            "INSERT INTO transition (check_name, from_status, to_status, critical, output, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (f"check{i % 12}", "pass", "fail" if i % 2 else "pass", 1, "out", now - i)
                for i in range(2000)
            ],
        )
    return {"rows": len(cells)}


def child(name: str, requests: int, pages: int) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="bench-overview-"))
    if name == "rollups":
        clients = {
            on: harness.WsgiClient(app(directory / str(on), rollups=on), "/users/7")
            for on in (False, True)
        }
        for client in clients.values():
            client.warm_up(500)
        batch = max(1, requests // BATCHES)
        means: dict[bool, list[float]] = {False: [], True: []}
        p50s: dict[bool, list[float]] = {False: [], True: []}
        for index in range(BATCHES):
            for on in (False, True) if index % 2 == 0 else (True, False):
                stats = clients[on].timed(batch).stats()
                means[on].append(stats["mean_us"])
                p50s[on].append(stats["p50_us"])

        def added(values: dict[bool, list[float]]) -> float:
            return statistics.median(
                b - a for a, b in zip(values[False], values[True], strict=True)
            )

        return {
            "added_us": added(p50s),
            "added_mean_us": added(means),
            "off_us": statistics.median(p50s[False]),
            "on_us": statistics.median(p50s[True]),
        }
    if name == "hook":
        from flask_observe.console.rollups import Rollups
        from flask_observe.console.store import ConsoleDB
        from flask_observe.hooks import RequestRecord

        rollups = Rollups(ConsoleDB(directory), excluded=lambda path: False)
        record = RequestRecord({"PATH_INFO": "/users/7", "REQUEST_METHOD": "GET"}, None)
        record.route, record.status, record.duration = "/users/<int:user_id>", 200, 0.004
        hook = rollups.on_request
        for _ in range(1000):
            hook(record)
        clock = time.perf_counter_ns
        started = clock()
        for _ in range(requests):
            record.excluded = None  # as a new request's record
            hook(record)
        per_call = (clock() - started) / requests / 1000
        return {"mean_us": per_call}
    flask_app = app(directory, rollups=True)
    from flask_observe import Observe
    from flask_observe.console.overview import OverviewData

    facts = fill(Observe.handle(OverviewData, flask_app))
    client = flask_app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    result: dict[str, Any] = {"stored_rows": facts["rows"]}
    for label, path in PAGES.items():
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.status_code)
        times = []
        for _ in range(pages):
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            response.close()
            times.append((time.perf_counter() - started) * 1000)
        result[f"{label} median_ms"] = statistics.median(times)
        result[f"{label} p95_ms"] = harness.percentile(times, 0.95)
    return result


def report(runs: harness.Runs) -> str:
    lines = []
    if "rollups" in runs:
        results = runs["rollups"]
        rows = [
            [
                f"{i + 1}",
                f"{r['off_us']:.2f}",
                f"{r['on_us']:.2f}",
                f"{r['added_us']:.2f}",
                f"{r['added_mean_us']:.2f}",
            ]
            for i, r in enumerate(results)
        ]
        lines.append(
            "1. one request, in-process WSGI, alternating batches: per-request p50 (µs), the"
            " median over batches"
        )
        head = ["round", "rollups off", "rollups on", "added (p50)", "added (mean)"]
        lines.append(harness.table(head, rows))
        added = statistics.median(r["added_us"] for r in results)
        lines.append(f"rollups add {added:.2f} µs per request (median of rounds)")
    if "hook" in runs:
        values = [r["mean_us"] for r in runs["hook"]]
        lines.append(
            f"\n2. Rollups.on_request alone: {statistics.median(values):.2f} µs per call"
            f" (rounds {', '.join(f'{v:.2f}' for v in values)})"
        )
    if "overview-24h" in runs:
        results = runs["overview-24h"]
        lines.append(f"\n3. pages with 24 h stored ({results[0]['stored_rows']} rollup rows), ms")
        rows = [
            [
                label,
                f"{statistics.median(r[f'{label} median_ms'] for r in results):.1f}",
                f"{statistics.median(r[f'{label} p95_ms'] for r in results):.1f}",
            ]
            for label in PAGES
        ]
        lines.append(harness.table(["page", "median", "p95"], rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, rounds=5)
    harness.add_configs_option(parser, CONFIGS)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round")
    parser.add_argument("--pages", type=int, default=20, help="answers of each page per round")
    args = parser.parse_args(argv)
    if args.child:
        harness.child_exit(child(args.child, args.requests, args.pages))
    names = harness.select(parser, args.configs, CONFIGS)
    env = harness.Environment.now(("prometheus-client",))

    def measure(name: str, index: int) -> dict[str, Any]:
        options = ["--requests", str(args.requests), "--pages", str(args.pages)]
        return harness.run_child(__file__, name, options, timeout=600)

    runs = harness.run_rounds(names, args.rounds, measure)
    return harness.finish(
        "overview",
        as_json=args.json,
        settings={"rounds": args.rounds, "requests": args.requests, "pages": args.pages},
        environment=env,
        summary={},
        runs=runs,
        title=f"rounds: {args.rounds}, each config in a fresh process, order rotating",
        text=report(runs),
        verdicts=harness.judge(BUDGETS, runs),
    )


if __name__ == "__main__":
    sys.exit(main())
