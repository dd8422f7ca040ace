"""Log viewer search and tail against ``grep``, on a generated 512 MiB JSON-lines log.

The log is what the sample scraper writes (ObserveFormatter lines: API requests, platform
calls, scraped and failed accounts, a few errors with tracebacks, now and then a raw text
line), time-ordered, generated once into ``--dir`` (default under /tmp, never the repo) with
a fixed seed, with smaller files (1, 16, 128 MiB: prefixes of it) for the size sweep.

Cases, each in a fresh interpreter (this script re-invokes itself with ``child``), rounds
interleaved with the order rotated, medians reported:

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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
SIZES_MIB = (1, 16, 128, 512)
RESULT_PREFIX = "LOGSEARCH-RESULT "
START = 1_763_000_000.0  # 2025-11-13T02:13:20Z
CASES = ("cid", "cid-field", "cid-api", "level+text", "range", "tail")


# -- the data ---------------------------------------------------------------------------


def generate(path: Path, size: int, seed: int = 1) -> dict[str, Any]:
    """Write ``size`` bytes of scraper log lines to ``path``; return facts the cases need."""
    from flask_observe.logging import ObserveFormatter

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


def prepare(base: Path) -> dict[str, Any]:
    """The files (generated once, reused while their facts file matches)."""
    facts_path = base / "facts.json"
    if facts_path.exists():
        facts = json.loads(facts_path.read_text())
        if all((base / f"{n}mib" / "app.log").exists() for n in SIZES_MIB):
            return dict(facts)
    shutil.rmtree(base, ignore_errors=True)
    for n in SIZES_MIB:
        (base / f"{n}mib").mkdir(parents=True)
    big = base / f"{SIZES_MIB[-1]}mib" / "app.log"
    print(f"generating {big} ...", file=sys.stderr)
    facts = generate(big, SIZES_MIB[-1] * MIB)
    with open(big, "rb") as src:
        data = src.read(max(SIZES_MIB[:-1]) * MIB + MIB)
    for n in SIZES_MIB[:-1]:
        cut = data.rindex(b"\n", 0, n * MIB) + 1
        (base / f"{n}mib" / "app.log").write_bytes(data[:cut])
    facts_path.write_text(json.dumps(facts))
    return facts


def window(path: Path) -> tuple[str, str, str]:
    """A 10-second window in the middle of ``path``: since, until, and the timestamp prefix
    that finds the same lines with grep (``…T04:12:3`` is ten seconds)."""
    import datetime as dt

    from flask_observe.logviewer.lines import format_time, line_timestamp

    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(size // 2)
        fh.readline()
        stamp = line_timestamp(fh.readline().rstrip(b"\n"))
    assert stamp is not None
    prefix = stamp[:18]  # YYYY-MM-DDTHH:MM:S -> ten seconds
    since = prefix + "0.000Z"
    start = dt.datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    return since, format_time(start + 10), '"timestamp":"' + prefix


# -- one measurement (child process) ----------------------------------------------------


def child(case: str, directory: Path, facts: dict[str, Any], size_mib: int) -> dict[str, Any]:
    from flask_observe.config import DEFAULT_REDACT_KEYS, DEFAULT_REDACT_PATTERNS
    from flask_observe.logviewer import LogViewer
    from flask_observe.logviewer.redact import Redactor
    from flask_observe.logviewer.search import Limits

    limits = Limits(max_results=1_000_000, max_response_bytes=1 << 40, time_budget=600.0)
    viewer = LogViewer(
        directory,
        ("app.log",),
        limits=limits,
        redactor=Redactor(DEFAULT_REDACT_KEYS, DEFAULT_REDACT_PATTERNS),
    )
    size = (directory / "app.log").stat().st_size
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
    if case == "cid-api":
        return _through_api(directory, facts, size)
    args: dict[str, list[str]] = {"limit": ["1000000"]}
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


def _through_api(directory: Path, facts: dict[str, Any], size: int) -> dict[str, Any]:
    import logging

    from flask import Flask

    from flask_observe import Observe

    app = Flask("bench")
    app.config.update(
        OBSERVE_LOGGING_ENABLED=False,
        OBSERVE_LOG_DIR=str(directory),
        OBSERVE_LOGVIEWER_ENABLED=True,
        OBSERVE_AUTH_TOKEN="benchmark-s8Tp_pm_bedVxb8xqaB7jwI-",
        OBSERVE_LOGVIEWER_TIME_BUDGET=600,
    )
    Observe(app)
    logging.getLogger().setLevel(logging.WARNING)
    client = app.test_client()
    headers = {"Authorization": "Bearer benchmark-token-0123456789"}
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


def run_child(case: str, directory: Path, size_mib: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "child",
            "--case",
            case,
            "--dir",
            str(directory.parent),
            "--size-mib",
            str(size_mib),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX) :]))
    raise RuntimeError(f"child {case} failed:\n{done.stdout}\n{done.stderr}")


def measurements(base: Path, facts: dict[str, Any], cases: list[str]) -> list[tuple[str, Any]]:
    """The (name, thunk) pairs of one round."""
    big = base / f"{SIZES_MIB[-1]}mib"
    big_file = str(big / "app.log")
    cid = facts["cid"]
    out: list[tuple[str, Any]] = []
    if "cid" in cases:
        out.append(("cid: viewer text=", lambda: run_child("cid", big, 512)))
        out.append(("cid: grep -F", lambda: grep(["-F", cid, big_file])))
    if "cid-field" in cases:
        out.append(("cid: viewer correlation_id=", lambda: run_child("cid-field", big, 512)))
    if "cid-api" in cases:
        out.append(("cid: API /search?text=", lambda: run_child("cid-api", big, 512)))
    if "level+text" in cases:
        levels = [
            "-F",
            "-e",
            '"level":"warning"',
            "-e",
            '"level":"error"',
            "-e",
            '"level":"critical"',
            big_file,
        ]
        out.append(("level+text: viewer", lambda: run_child("level+text", big, 512)))
        out.append(("level+text: grep -F text", lambda: grep(["-F", "instagram", big_file])))
        out.append(
            ("level+text: grep levels | grep text", lambda: grep(levels, ["-F", "instagram"]))
        )
    for n in SIZES_MIB:
        directory = base / f"{n}mib"
        if "range" in cases:
            _, _, prefix = window(directory / "app.log")
            out.append(
                (f"range {n} MiB: viewer", lambda d=directory, n=n: run_child("range", d, n))
            )
            out.append(
                (
                    f"range {n} MiB: grep -F prefix",
                    lambda p=prefix, d=directory: grep(["-F", p, str(d / "app.log")]),
                )
            )
        if "tail" in cases:
            out.append((f"tail {n} MiB: viewer", lambda d=directory, n=n: run_child("tail", d, n)))
    return out


def environment() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    grep_version = subprocess.run(["grep", "--version"], capture_output=True, text=True).stdout
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "grep": grep_version.splitlines()[0] if grep_version else "?",
        "load": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=("run", "child"))
    parser.add_argument("--dir", default="/tmp/flask_observe_logsearch", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--case")
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    base: Path = args.dir
    if args.mode == "child":
        facts = json.loads((base / "facts.json").read_text())
        result = child(args.case, base / f"{args.size_mib}mib", facts, args.size_mib)
        print(RESULT_PREFIX + json.dumps(result))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    facts = prepare(base)
    plan = measurements(base, facts, cases)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plan}
    env = environment()
    started = time.monotonic()
    for round_no in range(args.rounds):
        order = plan[round_no % len(plan) :] + plan[: round_no % len(plan)]
        for name, thunk in order:
            runs[name].append(thunk())
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    env["load_after"] = os.getloadavg()
    env["seconds"] = round(time.monotonic() - started, 1)
    report = summarize(runs)
    if args.json:
        print(
            json.dumps(
                {"environment": env, "facts": facts, "summary": report, "runs": runs}, indent=2
            )
        )
    else:
        print(render(env, report))
    return 0


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
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
        seconds = [r["seconds"] for r in results]
        out[name] = {
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "max_s": max(seconds),
            "results": results[0]["results"],
            "scanned": results[0].get("scanned"),
            "size": results[0].get("size"),
        }
    return out


def render(env: dict[str, Any], report: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"machine: {env['cpu']} x{env['cpus']}, Linux {env['kernel']}, CPython {env['python']},"
        f" {env['grep']}; load {env['load'][0]:.2f} -> {env['load_after'][0]:.2f};"
        f" {env['seconds']} s",
        "",
        "| measurement | median | min-max | results | bytes read | MiB/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report.items():
        if "median_ms" in r:
            lines.append(
                f"| {name} | {r['median_ms']:.2f} ms (first call {r['first_ms']:.2f} ms) |"
                f" max {r['max_ms']:.2f} ms | 100 | {r['scanned']:,} of {r['size']:,} | |"
            )
            continue
        size = r.get("size") or (SIZES_MIB[-1] * MIB)
        scanned = f"{r['scanned']:,} of {size:,}" if r.get("scanned") is not None else "all"
        lines.append(
            f"| {name} | {r['median_s'] * 1000:.1f} ms | {r['min_s'] * 1000:.1f}-"
            f"{r['max_s'] * 1000:.1f} ms | {r['results']} | {scanned} |"
            f" {size / MIB / r['median_s']:.0f} |"
        )
    ratios = []

    def ratio(ours: str, theirs: str, label: str) -> None:
        if ours in report and theirs in report:
            value = report[theirs]["median_s"] / report[ours]["median_s"]
            ratios.append(f"- {label}: {value:.2f}")

    ratio(
        "cid: viewer text=",
        "cid: grep -F",
        "rare substring, throughput viewer / grep -F (target >= 0.8)",
    )
    ratio("cid: viewer correlation_id=", "cid: grep -F", "correlation_id= filter, same ratio")
    ratio("cid: API /search?text=", "cid: grep -F", "through the HTTP API, same ratio")
    for theirs in ("level+text: grep -F text", "level+text: grep levels | grep text"):
        if "level+text: viewer" in report and theirs in report:
            value = report["level+text: viewer"]["median_s"] / report[theirs]["median_s"]
            ratios.append(
                f"- level+text time / `{theirs.split(': ', 1)[1]}` time: {value:.2f} (target <= 3)"
            )
    if ratios:
        lines += ["", *ratios]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
