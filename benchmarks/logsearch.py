"""Log viewer search and tail against ``grep``, on a generated 512 MiB JSON-lines log.

The log is what the sample scraper writes (ObserveFormatter lines: API requests, platform
calls, scraped and failed accounts, a few errors with tracebacks, now and then a raw text
line), time-ordered, generated once into ``--dir`` (default under /tmp, never the repo) with
a fixed seed, with smaller files (1, 16, 128 MiB: prefixes of it) for the size sweep.

Cases, each viewer measurement in a fresh interpreter (the harness' ``--child``), rounds
interleaved with the order rotated, medians reported. The viewer is the one ``Observe(app)``
builds from public settings (``OBSERVE_LOGVIEWER_*``, limits raised so one call covers the
whole file); its search and tail are timed without the HTTP layer:

- ``cid``: a rare substring (one request's correlation ID, 8 lines) over the whole file —
  ``LogViewer.search(text=<id>)`` vs ``grep -F <id>``; also ``correlation_id=<id>`` and the
  same search through the HTTP API (Flask test client, JSON response);
- ``level+text``: ``level=warning&text=instagram`` (every match returned) vs ``grep -F
  instagram`` and vs the equivalent pipeline ``grep -F -e '"level":"warning"' -e …error…
  -e …critical… | grep -F instagram``;
- ``range``: a 10-second ``since``/``until`` window in the middle of each file size, vs
  ``grep -F`` of that window's timestamp prefix (a full scan); bytes read show the bisection;
- ``tail``: the last 100 lines of each file size (``LogViewer.tail``), 30 calls per run.

grep runs with its output piped to this process (as a user reading it would), so it cannot
take GNU grep's shortcut for ``>/dev/null``. Searches are timed around the call, imports
excluded; grep is timed around ``subprocess.run`` (its start-up, ~1 ms, included). The page
cache is warm (the files were just written or read); caches are not dropped on a shared
machine.

    python benchmarks/logsearch.py --rounds 5
    python benchmarks/logsearch.py --rounds 3 --cases cid,tail --json
    python benchmarks/logsearch.py --rounds 1 --sizes 1,2 --dir /tmp/small   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
from harness import Budget

MIB = 1024 * 1024
SIZES_MIB = (1, 16, 128, 512)
#: The viewer's result cap (the most ``OBSERVE_LOGVIEWER_MAX_RESULTS`` allows; every case
#: returns fewer, so each search covers its whole file).
MAX_RESULTS = 100_000
TOKEN = "benchmark-s8Tp_pm_bedVxb8xqaB7jwI-"
START = 1_763_000_000.0  # 2025-11-13T02:13:20Z
CASES = ("cid", "cid-field", "cid-api", "level+text", "range", "tail")


# -- the data ---------------------------------------------------------------------------


def generate(path: Path, size: int, seed: int = 1) -> dict[str, Any]:
    """Write ``size`` bytes of scraper log lines to ``path``; return facts the cases need."""
    from flask_observe import ObserveFormatter

    rnd = random.Random(seed)
    scraper = ObserveFormatter("scraper", static_fields={"version": "1.0.0"})
    platform_fmt = ObserveFormatter("demo-platform")
    platforms = ("twitter", "instagram", "tiktok", "youtube")
    handles = ("nasa", "github", "natgeo", "khaby_lame", "veritasium", "ghost_account", "bbc")
    now = START
    written = 0
    chosen: str | None = None
    with open(path, "w", encoding="utf-8") as out:
        while written < size:
            cid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
            if chosen is None and written >= size // 2:
                chosen = cid
            run = rnd.randint(1, 10**6)
            now += rnd.expovariate(20)
            lines = [
                scraper.format_fields(
                    now,
                    "info",
                    "sample_app.scraper",
                    "scrape run started",
                    {"correlation_id": cid, "run_id": run, "accounts": 3},
                )
            ]
            for handle in rnd.sample(handles, 3):
                plat = rnd.choice(platforms)
                now += rnd.random() * 0.03
                lines.append(
                    platform_fmt.format_fields(
                        now,
                        "info",
                        "flask_observe.access",
                        f"GET /v1/{plat}/users/{handle} 200",
                        {
                            "correlation_id": cid,
                            "method": "GET",
                            "route": "/v1/<platform>/users/<handle>",
                            "path": f"/v1/{plat}/users/{handle}",
                            "status": 200,
                            "duration_ms": round(rnd.random() * 50, 3),
                            "response_size": rnd.randint(100, 400),
                        },
                    )
                )
                ok = rnd.random() >= 0.05
                fields: dict[str, Any] = {
                    "correlation_id": cid,
                    "run_id": run,
                    "platform": plat,
                    "handle": handle,
                }
                if ok:
                    fields.update(followers=rnd.randint(1000, 10**8), fetch_ms=rnd.random() * 80)
                else:
                    fields.update(error=f"platform answered 503 for {plat}/{handle}")
                    fields["upstream_status"] = 503
                lines.append(
                    scraper.format_fields(
                        now,
                        "info" if ok else "warning",
                        "sample_app.scraper",
                        "account scraped" if ok else "account scrape failed",
                        fields,
                    )
                )
            if rnd.random() < 0.01:
                lines.append(
                    scraper.format_fields(
                        now,
                        "error",
                        "sample_app.api",
                        "unhandled error",
                        {
                            "correlation_id": cid,
                            "exc_type": "OperationalError",
                            "exception": 'Traceback (most recent call last):\n  File "/app/'
                            'sample_app/api.py", line 88, in start_scrape\nsqlalchemy.exc.'
                            "OperationalError: database is locked",
                        },
                    )
                )
            lines.append(
                scraper.format_fields(
                    now,
                    "info",
                    "flask_observe.access",
                    "POST /api/scrapes 201",
                    {
                        "correlation_id": cid,
                        "method": "POST",
                        "route": "/api/scrapes",
                        "path": "/api/scrapes",
                        "status": 201,
                        "duration_ms": round(rnd.random() * 300, 3),
                        "response_size": 412,
                    },
                )
            )
            if rnd.random() < 0.002:
                lines.append("Traceback (most recent call last): a raw line written by print()")
            chunk = "\n".join(lines) + "\n"
            out.write(chunk)
            written += len(chunk)
    return {"cid": chosen, "first": START, "last": now}


def prepare(base: Path, sizes: tuple[int, ...] = SIZES_MIB) -> dict[str, Any]:
    """The files (generated once, reused while their facts file matches ``sizes``)."""
    facts_path = base / "facts.json"
    if facts_path.exists():
        facts = json.loads(facts_path.read_text())
        if facts.get("sizes_mib", list(SIZES_MIB)) == list(sizes) and all(
            (base / f"{n}mib" / "app.log").exists() for n in sizes
        ):
            return dict(facts)
    shutil.rmtree(base, ignore_errors=True)
    for n in sizes:
        (base / f"{n}mib").mkdir(parents=True)
    big = base / f"{sizes[-1]}mib" / "app.log"
    print(f"generating {big} ...", file=sys.stderr)
    facts = generate(big, sizes[-1] * MIB)
    facts["sizes_mib"] = list(sizes)
    if len(sizes) > 1:
        with open(big, "rb") as src:
            data = src.read(max(sizes[:-1]) * MIB + MIB)
        for n in sizes[:-1]:
            cut = data.rindex(b"\n", 0, n * MIB) + 1
            (base / f"{n}mib" / "app.log").write_bytes(data[:cut])
    facts_path.write_text(json.dumps(facts))
    return facts


def format_time(epoch: float) -> str:
    """``epoch`` as the viewer's canonical time (``…T04:12:30.000Z``)."""
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def window(path: Path) -> tuple[str, str, str]:
    """A 10-second window in the middle of ``path``: since, until, and the timestamp prefix
    that finds the same lines with grep (``…T04:12:3`` is ten seconds)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(size // 2)
        fh.readline()
        stamp = None
        while stamp is None:  # the next JSON line (raw text lines have no timestamp)
            line = fh.readline()
            if not line:
                raise ValueError(f"{path}: no JSON line after the middle")
            with contextlib.suppress(ValueError):
                stamp = json.loads(line)["timestamp"]
    prefix = stamp[:18]  # YYYY-MM-DDTHH:MM:S -> ten seconds
    since = prefix + "0.000Z"
    start = dt.datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    return since, format_time(start + 10), '"timestamp":"' + prefix


# -- one measurement (child process) ----------------------------------------------------


def viewer_app(directory: Path) -> Any:
    """An app whose log viewer reads ``directory``: public settings only, with the limits
    raised so one call covers a whole file (redaction on, as by default)."""
    import logging

    from flask import Flask

    from flask_observe import Observe

    app = Flask("bench")
    app.config.update(
        OBSERVE_LOGGING_ENABLED=False,
        OBSERVE_METRICS_ENABLED=False,
        OBSERVE_LOG_DIR=str(directory),
        OBSERVE_LOGVIEWER_ENABLED=True,
        OBSERVE_AUTH_TOKEN=TOKEN,
        OBSERVE_LOGVIEWER_MAX_RESULTS=MAX_RESULTS,
        OBSERVE_LOGVIEWER_MAX_RESPONSE_BYTES=1 << 40,
        OBSERVE_LOGVIEWER_TIME_BUDGET=600,
    )
    Observe(app)
    logging.getLogger().setLevel(logging.WARNING)
    return app


def child(case: str, directory: Path, facts: dict[str, Any]) -> dict[str, Any]:
    from _internals import log_viewer

    app = viewer_app(directory)
    size = (directory / "app.log").stat().st_size
    if case == "cid-api":
        return _through_api(app, facts, size)
    viewer = log_viewer(app)
    if case == "tail":
        times = []
        for _ in range(30):
            started = time.perf_counter()
            page, _, _ = viewer.tail("app.log", {}, 100)
            times.append(time.perf_counter() - started)
            assert len(page.results) == 100
        return {
            "first_ms": times[0] * 1000,
            "median_ms": statistics.median(times) * 1000,
            "max_ms": max(times) * 1000,
            "scanned": page.scanned_bytes,
            "size": size,
        }
    args: dict[str, list[str]] = {"limit": [str(MAX_RESULTS)]}
    if case == "cid":
        args["text"] = [facts["cid"]]
    elif case == "cid-field":
        args["correlation_id"] = [facts["cid"]]
    elif case == "level+text":
        args.update(level=["warning"], text=["instagram"])
    elif case == "range":
        since, until, _ = window(directory / "app.log")
        args.update(since=[since], until=[until], order=["oldest"])
    query = viewer.parse(args)
    started = time.perf_counter()
    page = viewer.search(query)
    seconds = time.perf_counter() - started
    assert page.cursor is None, "the search must cover the whole file"
    return {
        "seconds": seconds,
        "results": len(page.results),
        "scanned": page.scanned_bytes,
        "size": size,
    }


def _through_api(app: Any, facts: dict[str, Any], size: int) -> dict[str, Any]:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    started = time.perf_counter()
    response = client.get(f"/api/logs/search?text={facts['cid']}&limit=1000", headers=headers)
    body = response.get_json()
    seconds = time.perf_counter() - started
    assert response.status_code == 200
    assert body["cursor"] is None
    return {
        "seconds": seconds,
        "results": len(body["results"]),
        "scanned": body["stats"]["scanned_bytes"],
        "size": size,
    }


def grep(args: list[str], pipe_to: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    if pipe_to is None:
        done = subprocess.run(["grep", *args], stdout=subprocess.PIPE, check=False)
        out = done.stdout
    else:
        first = subprocess.Popen(["grep", *args], stdout=subprocess.PIPE)
        second = subprocess.run(
            ["grep", *pipe_to], stdin=first.stdout, stdout=subprocess.PIPE, check=False
        )
        first.wait()
        out = second.stdout
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "results": out.count(b"\n")}


# -- the driver -------------------------------------------------------------------------


def measurements(
    base: Path, facts: dict[str, Any], cases: list[str], sizes: tuple[int, ...]
) -> dict[str, Callable[[], dict[str, Any]]]:
    """The measurements of one round, by name."""
    biggest = sizes[-1]
    big = base / f"{biggest}mib"
    big_file = str(big / "app.log")
    cid = facts["cid"]

    def viewer(case: str, directory: Path) -> Callable[[], dict[str, Any]]:
        options = ["--dir", str(base), "--size-mib", directory.name.removesuffix("mib")]
        return lambda: harness.run_child(__file__, case, options)

    out: dict[str, Callable[[], dict[str, Any]]] = {}
    if "cid" in cases:
        out["cid: viewer text="] = viewer("cid", big)
        out["cid: grep -F"] = lambda: grep(["-F", cid, big_file])
    if "cid-field" in cases:
        out["cid: viewer correlation_id="] = viewer("cid-field", big)
    if "cid-api" in cases:
        out["cid: API /search?text="] = viewer("cid-api", big)
    if "level+text" in cases:
        levels = ["-F", "-e", '"level":"warning"', "-e", '"level":"error"']
        levels += ["-e", '"level":"critical"', big_file]
        out["level+text: viewer"] = viewer("level+text", big)
        out["level+text: grep -F text"] = lambda: grep(["-F", "instagram", big_file])
        out["level+text: grep levels | grep text"] = lambda: grep(levels, ["-F", "instagram"])
    for n in sizes:
        directory = base / f"{n}mib"
        if "range" in cases:
            _, _, prefix = window(directory / "app.log")
            out[f"range {n} MiB: viewer"] = viewer("range", directory)
            out[f"range {n} MiB: grep -F prefix"] = lambda p=prefix, d=directory: grep(
                ["-F", p, str(d / "app.log")]
            )
        if "tail" in cases:
            out[f"tail {n} MiB: viewer"] = viewer("tail", directory)
    return out


def budgets(sizes: tuple[int, ...]) -> list[Budget]:
    """The targets: a rare-substring search at least 0.8x grep's throughput; level+text at
    most 3x grep's time; a tail of 100 lines at most 5 ms per call."""
    out = [
        Budget(
            f"rare substring, throughput of `{ours}` / `grep -F`",
            ours,
            0.8,
            peer="cid: grep -F",
            key="seconds",
            unit="s",
            at_least=True,
            invert=True,
        )
        for ours in ("cid: viewer text=", "cid: viewer correlation_id=", "cid: API /search?text=")
    ]
    out += [
        Budget(
            f"level+text, time / `{theirs.split(': ', 1)[1]}` time",
            "level+text: viewer",
            3.0,
            peer=theirs,
            key="seconds",
            unit="s",
        )
        for theirs in ("level+text: grep -F text", "level+text: grep levels | grep text")
    ]
    out += [
        Budget(
            f"tail 100 lines of {n} MiB", f"tail {n} MiB: viewer", 5.0, key="median_ms", unit="ms"
        )
        for n in sizes
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, rounds=5)
    parser.add_argument(
        "--dir",
        default="/tmp/flask_observe_logsearch",
        type=Path,
        help="where the generated logs are kept (and reused)",
    )
    parser.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    parser.add_argument(
        "--sizes",
        default=",".join(map(str, SIZES_MIB)),
        help="file sizes in MiB, ascending; the largest is generated, the others are its"
        " prefixes, and the single-file cases search the largest",
    )
    parser.add_argument("--size-mib", type=int, default=SIZES_MIB[-1], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    base: Path = args.dir
    if args.child:
        facts = json.loads((base / "facts.json").read_text())
        harness.child_exit(child(args.child, base / f"{args.size_mib}mib", facts))
    try:
        sizes = tuple(sorted({int(n) for n in args.sizes.split(",") if n.strip()}))
    except ValueError:
        parser.error("--sizes: comma-separated whole MiB, e.g. 1,16,128,512")
    if not sizes or sizes[0] < 1:
        parser.error("--sizes: at least one size of 1 MiB or more")
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASES)}")
    facts = prepare(base, sizes)
    plan = measurements(base, facts, cases, sizes)
    grep_version = subprocess.run(["grep", "--version"], capture_output=True, text=True).stdout
    env = harness.Environment.now(
        ("google-re2",), grep=grep_version.splitlines()[0] if grep_version else "?"
    )
    runs = harness.run_rounds(list(plan), args.rounds, lambda name, _: plan[name]())
    report = summarize(runs)
    return harness.finish(
        "logsearch",
        as_json=args.json,
        settings={"rounds": args.rounds, "cases": cases, "sizes_mib": list(sizes)},
        environment=env,
        summary=report,
        runs=runs,
        text=render(report, sizes),
        verdicts=harness.judge(budgets(sizes), runs),
        facts=facts,
    )


def summarize(runs: harness.Runs) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, results in runs.items():
        if "median_ms" in results[0]:
            out[name] = {
                "median_ms": statistics.median(r["median_ms"] for r in results),
                "max_ms": max(r["max_ms"] for r in results),
                "first_ms": statistics.median(r["first_ms"] for r in results),
                "scanned": results[0]["scanned"],
                "size": results[0]["size"],
            }
            continue
        row = harness.summarize({name: results}, "seconds")[name]
        out[name] = {
            "median_s": row["median"],
            "min_s": row["min"],
            "max_s": row["max"],
            "results": results[0]["results"],
            "scanned": results[0].get("scanned"),
            "size": results[0].get("size"),
        }
    return out


def render(report: dict[str, dict[str, Any]], sizes: tuple[int, ...]) -> str:
    rows = []
    for name, r in report.items():
        if "median_ms" in r:
            rows.append(
                [
                    name,
                    f"{r['median_ms']:.2f} ms (first call {r['first_ms']:.2f} ms)",
                    f"max {r['max_ms']:.2f} ms",
                    "100",
                    f"{r['scanned']:,} of {r['size']:,}",
                    "",
                ]
            )
            continue
        size = r.get("size") or (sizes[-1] * MIB)
        scanned = f"{r['scanned']:,} of {size:,}" if r.get("scanned") is not None else "all"
        rows.append(
            [
                name,
                f"{r['median_s'] * 1000:.1f} ms",
                f"{r['min_s'] * 1000:.1f}-{r['max_s'] * 1000:.1f} ms",
                r["results"],
                scanned,
                f"{size / MIB / r['median_s']:.0f}",
            ]
        )
    head = ["measurement", "median", "min-max", "results", "bytes read", "MiB/s"]
    return harness.table(head, rows)


if __name__ == "__main__":
    sys.exit(main())
