"""The benchmark harness: its statistics on fixed inputs, and every benchmark in its quickest
mode (a round or so of a few requests, in fresh processes, as a real run makes them).

The quick runs prove the scripts still run and measure what they say (the right log lines,
the headers, the search results grep finds too); their timings mean nothing and are not
checked. Speed targets live in the benchmarks themselves (docs/performance.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import need_service

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load_harness() -> Any:
    """benchmarks/harness.py by its path, without putting the folder (whose scripts have
    generic names) on sys.path for the other tests."""
    spec = importlib.util.spec_from_file_location("benchmarks_harness", BENCHMARKS / "harness.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
Budget = harness.Budget


def rounds(name: str, key: str, values: list[float]) -> dict[str, list[dict[str, Any]]]:
    return {name: [{key: v} for v in values]}


# -- statistics on fixed inputs -------------------------------------------------------------


def test_percentile_is_nearest_rank_and_refuses_no_values() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert harness.percentile(values, 0.0) == 1.0
    assert harness.percentile(values, 0.5) == 3.0
    assert harness.percentile(values, 0.95) == 5.0
    assert harness.percentile(values, 1.0) == 5.0
    with pytest.raises(ValueError, match="no values"):
        harness.percentile([], 0.5)


def test_summarize_gives_medians_ranges_and_the_last_round() -> None:
    runs = {
        "a": [{"t": 3.0, "p": 10.0, "id": "x"}, {"t": 1.0, "p": 30.0, "id": "y"}],
        "b": [{"t": 2.0, "p": 5.0, "id": None}],
    }
    out = harness.summarize(runs, "t", also=("p",), last=("id",))
    assert out["a"] == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "rounds": [3.0, 1.0],
        "p": 20.0,
        "id": "y",
    }
    assert out["b"]["median"] == out["b"]["min"] == out["b"]["max"] == 2.0


def test_rounds_rotate_or_alternate_and_interleave_every_configuration() -> None:
    names = ["a", "b", "c"]
    assert [harness.round_order(names, i) for i in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert harness.round_order(names, 1, "alternate") == ["c", "b", "a"]
    with pytest.raises(ValueError, match="unknown order"):
        harness.round_order(names, 0, "random")
    seen: list[tuple[str, int]] = []
    runs = harness.run_rounds(names, 2, lambda n, i: seen.append((n, i)) or {"n": n, "i": i})
    assert seen == [("a", 0), ("b", 0), ("c", 0), ("b", 1), ("c", 1), ("a", 1)]
    assert [r["i"] for r in runs["a"]] == [0, 1]


def test_a_budget_over_a_base_is_judged_on_medians_and_round_by_round() -> None:
    # ours adds 10, 30, 10 over the base; the peer adds 40, 40, 10: ratios 0.25, 0.75, 1.0.
    runs = {
        **rounds("base", "us", [100.0, 100.0, 100.0]),
        **rounds("ours", "us", [110.0, 130.0, 110.0]),
        **rounds("peer", "us", [140.0, 140.0, 110.0]),
    }
    verdict = Budget("x", "ours", 0.5, peer="peer", base="base", key="us").evaluate(runs)
    assert verdict["ours_value"] == pytest.approx(10.0)
    assert verdict["peer_value"] == pytest.approx(40.0)
    assert verdict["figure"] == pytest.approx(0.25)
    assert verdict["met"] is True
    assert verdict["per_round"] == pytest.approx([0.25, 0.75, 1.0])
    assert verdict["per_round_met"] == [True, False, False]
    assert verdict["rounds_met"] == 1
    assert verdict["per_round_median"] == pytest.approx(0.75)
    text = harness.render_budget(verdict)
    assert "ratio 0.25 (budget ≤ 0.5): MET" in text
    assert "met in 1/3): 0.25 met, 0.75 MISSED, 1.00 MISSED" in text


def test_a_budget_cross_checks_other_keys_and_the_fastest_round() -> None:
    runs = {
        "base": [{"us": 100.0, "p50": 90.0}, {"us": 200.0, "p50": 90.0}],
        "ours": [{"us": 110.0, "p50": 92.0}, {"us": 220.0, "p50": 92.0}],
        "peer": [{"us": 120.0, "p50": 98.0}, {"us": 260.0, "p50": 98.0}],
    }
    budget = Budget(
        "x", "ours", 0.5, peer="peer", base="base", key="us", cross_checks=("p50", "min")
    )
    cross = budget.evaluate(runs)["cross_checks"]
    assert cross["p50"] == pytest.approx(2 / 8)
    assert cross["min"] == pytest.approx(10 / 20)  # fastest rounds: 100, 110, 120


def test_a_ratio_whose_peer_adds_nothing_is_missed_not_met() -> None:
    runs = {**rounds("base", "us", [100.0]), **rounds("ours", "us", [90.0])}
    runs.update(rounds("peer", "us", [100.0]))
    verdict = Budget("x", "ours", 0.5, peer="peer", base="base", key="us").evaluate(runs)
    assert verdict["figure"] is None
    assert verdict["met"] is False
    assert verdict["per_round_met"] == [False]


def test_absolute_and_throughput_budgets_and_a_missing_configuration() -> None:
    absolute = Budget("probe", "ours", 5.0, key="ms", unit="ms")
    verdict = absolute.evaluate(rounds("ours", "ms", [1.0, 6.0, 2.0]))
    assert (verdict["figure"], verdict["met"], verdict["per_round_met"]) == (
        2.0,
        True,
        [True, False, True],
    )
    # Times of 2 s (ours) against 1.5 s (the peer): 0.75x the peer's throughput.
    throughput = Budget("t", "ours", 0.8, peer="grep", key="s", at_least=True, invert=True)
    runs = {**rounds("ours", "s", [2.0]), **rounds("grep", "s", [1.5])}
    verdict = throughput.evaluate(runs)
    assert verdict["figure"] == pytest.approx(0.75)
    assert verdict["met"] is False
    assert "(budget ≥ 0.8): MISSED" in harness.render_budget(verdict)
    skipped = absolute.evaluate({})
    assert skipped["skipped"] == "needs ours"
    assert "not evaluated" in harness.render_budget(skipped)


def test_timing_gives_per_request_microseconds() -> None:
    timing = harness.Timing([1000 * i for i in range(1, 101)], wall_ns=200_000, cpu_ns=150_000)
    stats = timing.stats()
    assert stats["mean_us"] == pytest.approx(50.5)
    assert stats["p50_us"] == pytest.approx(50.5)
    assert stats["p90_us"] == pytest.approx(90.9)
    assert stats["max_us"] == 100.0
    assert (stats["loop_us"], stats["cpu_us"]) == (2.0, 1.5)
    assert harness.Timing([4000], 4000, 4000).stats()["p99_us"] == 4.0


def test_run_child_returns_the_result_counts_stray_output_and_reports_failures(
    tmp_path: Path,
) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        f"import sys\nsys.path.insert(0, {str(BENCHMARKS)!r})\nimport harness\n"
        "args = harness.parser(None).parse_args()\n"
        "print('noise')\n"
        "if args.child == 'ok':\n"
        "    harness.child_exit({'name': args.child})\n"
        "raise SystemExit(3)\n"
    )
    assert harness.run_child(script, "ok") == {"name": "ok", "stray_output": len("noise\n")}
    with pytest.raises(harness.ChildFailed, match="exit 3"):
        harness.run_child(script, "broken")


def test_table_is_markdown() -> None:
    assert harness.table(["a", "b"], [[1, "x"]]) == "| a | b |\n| --- | --- |\n| 1 | x |"


# -- every benchmark in its quickest mode ---------------------------------------------------


def run_benchmark(script: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_overhead_quick_run_measures_each_configuration_in_its_own_process() -> None:
    """bare writes nothing and echoes no ID; observe writes the view's line and the access
    line for every request, and echoes X-Request-ID; the budget over bare is judged."""
    out = run_benchmark(
        "overhead.py", "--configs", "bare,observe", "--rounds", "1", "--requests", "10",
        "--warmup", "2",
    )  # fmt: skip
    bare, observe = out["summary"]["bare"], out["summary"]["observe"]
    assert bare["log_lines_per_request"] == 0
    assert observe["log_lines_per_request"] == pytest.approx(2.0)
    assert (bare["request_id_header"], observe["request_id_header"]) == (False, True)
    assert bare["stray_output"] == observe["stray_output"] == 0
    assert observe["median_us"] > 0
    assert [r["requests"] for r in out["runs"]["observe"]] == [10]
    assert out["budgets"] == []  # the issue-2 budget needs its peer, not run here
    if sys.platform.startswith("linux"):  # the background threads' wake-ups, from /proc
        assert all(isinstance(row["woken"], float) for row in (bare, observe))


def test_other_threads_switches_counts_a_background_threads_wake_ups() -> None:
    """A thread that sleeps 20 times is switched out at least 20 times; 50 sleeps of the
    calling thread are not counted (the other threads of the test process may add a few)."""
    if not sys.platform.startswith("linux"):
        assert harness.other_threads_switches() is None
        return
    slept, go_on = threading.Event(), threading.Event()

    def background() -> None:
        for _ in range(20):
            time.sleep(0.001)
        slept.set()
        go_on.wait(10)

    before = harness.other_threads_switches()
    thread = threading.Thread(target=background)
    thread.start()
    assert slept.wait(10)
    during = harness.other_threads_switches()
    for _ in range(50):
        time.sleep(0.0001)
    mine = harness.other_threads_switches()
    go_on.set()
    thread.join(10)
    assert during - before >= 20
    assert mine - during < 40


def test_otlp_suite_quick_run_judges_issue_12s_budgets() -> None:
    """The OTLP configurations export to the parent's local collector without a word on the
    terminal; the file-less one writes no line; both budgets of issue 12 are judged."""
    out = run_benchmark(
        "overhead.py", "--suite", "otlp", "--rounds", "1", "--requests", "10", "--warmup", "2",
    )  # fmt: skip
    summary = out["summary"]
    assert summary["observe-no-file"]["log_lines_per_request"] == 0
    assert summary["observe+otlp-logs"]["log_lines_per_request"] == pytest.approx(2.0)
    assert all(row["stray_output"] == 0 for row in summary.values()), summary
    labels = [verdict["label"] for verdict in out["budgets"]]
    assert [label for label in labels if label.startswith("issue 12")] == [
        "issue 12, OTLP logs vs the file pipeline (per line)",
        "issue 12, OTLP metrics vs prometheus_client (per request)",
    ]


def test_opcount_quick_run_counts_more_work_with_correlation_ids() -> None:
    out = run_benchmark("opcount.py", "--configs", "bare,observe-correlation")
    assert 1000 < out["summary"]["bare"]["total"] < out["summary"]["observe-correlation"]["total"]
    assert out["summary"]["observe-correlation"]["added_vs_bare"] > 0
    assert not any("benchmarks/harness.py" in f for f in out["runs"]["bare"][0]["functions"])


def test_tracing_faults_quick_run_bounds_shutdown_with_a_dead_collector() -> None:
    out = run_benchmark(
        "tracing_faults.py", "--configs", "healthy,refused", "--rounds", "1", "--requests", "50",
        "--warmup", "5",
    )  # fmt: skip
    refused = out["runs"]["refused"][0]
    assert refused["stats"]["exported"] == 0
    assert refused["shutdown_s"] < 5
    assert [b["peer"] for b in out["budgets"]] == ["healthy"]


def test_health_quick_run_answers_every_probe() -> None:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    need_service("Redis", "127.0.0.1", 6379)
    out = run_benchmark(
        "health.py", "--configs", "observe-parallel,observe-cached,bare-route-observe,live-idle",
        "--rounds", "1", "--scale", "0.01",
    )  # fmt: skip
    parallel = out["runs"]["observe-parallel"][0]
    assert len(parallel["latency_ms"]) == 1
    # The probe waited for its slowest check, the one answering in 100 ms.
    assert parallel["slowest_check_ms"][0] >= 100
    assert len(out["runs"]["live-idle"][0]["latency_ms"]) == 20
    assert {b["label"] for b in out["budgets"]} == {
        "readiness minus its slowest check (each round's median probe)",
        "cached readiness against a bare route on the same app",
    }


def test_logsearch_quick_run_finds_what_grep_finds(tmp_path: Path) -> None:
    out = run_benchmark(
        "logsearch.py", "--rounds", "1", "--sizes", "1", "--cases", "cid,tail", "--dir",
        str(tmp_path / "logs"),
    )  # fmt: skip
    runs = out["runs"]
    assert runs["cid: viewer text="][0]["results"] == runs["cid: grep -F"][0]["results"] == 8
    assert runs["tail 1 MiB: viewer"][0]["scanned"] > 0
    assert {b["ours"] for b in out["budgets"]} == {"cid: viewer text=", "tail 1 MiB: viewer"}


def test_sentry_parts_quick_run_times_each_part() -> None:
    """benchmarks/sentry_parts.py in a few iterations: a row for each part, and the sum."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "sentry_parts.py"), "--number", "200", "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, SENTRY_DSN=""),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| wsgi", "| log line"))]
    assert len(rows) == 4, proc.stdout
    assert "per request with one log line: +" in proc.stdout


def test_outbound_quick_run_records_every_call_and_query_only_where_instrumented() -> None:
    """The instrumented children recorded each call and query (warm-up included) into their
    metrics (warm-up, timed loop and the one traced for its bytecodes), the others none; no
    child wrote to a terminal; the issue-14 budgets are judged; an instrumented call runs
    more bytecodes than a bare one and fewer than OpenTelemetry's."""
    out = run_benchmark(
        "outbound.py", "--rounds", "1", "--calls", "20", "--queries", "100", "--warmup", "2",
    )  # fmt: skip
    summary = out["summary"]
    assert summary["observe"]["recorded"] == 2 + 20 + 1
    assert summary["observe-stub"]["recorded"] == 2 + 20 + 1
    assert summary["observe-query"]["recorded"] == 2 + 100 + 1
    assert summary["bare"]["recorded"] == summary["otel"]["recorded"] == 0
    assert summary["bare-query"]["recorded"] == 0
    assert all(row["stray_output"] == 0 for row in summary.values()), summary
    assert [v["label"].split(" (")[0] for v in out["budgets"]] == [
        "issue 14, outbound metrics vs OpenTelemetry's requests instrumentation",
        "issue 14, the same over loopback HTTP",
        "issue 14, query metrics",
    ]
    opcodes = {name: row["opcodes"] for name, row in summary.items()}
    assert opcodes["bare-stub"] < opcodes["observe-stub"] < opcodes["otel-stub"]
    assert opcodes["bare-query"] < opcodes["observe-query"]


def test_console_quick_run_measures_the_rollups_and_the_pages() -> None:
    """benchmarks/overview.py in a few requests: the rollups' cost on and off, the hook alone,
    each page answered (200) on a store holding 24 h of rollups; every budget judged."""
    out = run_benchmark(
        "overview.py", "--rounds", "1", "--requests", "400", "--pages", "2", timeout=300
    )
    runs = out["runs"]
    assert runs["rollups"][0]["on_us"] > 0
    assert runs["hook"][0]["mean_us"] > 0
    assert runs["overview-24h"][0]["stored_rows"] > 30_000
    assert {b["label"] for b in out["budgets"]} >= {
        "rollups per request",
        "alerts with 24 h stored",
    }


def test_paired_quick_run_serves_every_app_in_one_process_and_judges_the_metrics_budget() -> None:
    """Each configuration's app gets the same number of requests, one after another in one
    process; issue 12's metrics budget is judged on the medians, round by round and on the
    means; nothing is said on the terminal but the rounds."""
    proc = subprocess.run(
        [
            sys.executable, str(BENCHMARKS / "paired.py"), "--rounds", "2", "--requests", "20",
            "--warmup", "5", "--json",
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [line.split(":")[0] for line in proc.stderr.splitlines()]
    assert said == ["round 1/2", "round 2/2"], proc.stderr
    out = json.loads(proc.stdout)
    names = ["observe", "observe+metrics", "observe+otlp-metrics"]
    assert list(out["medians_us"]) == names
    assert all(len(out["round_medians_us"][name]) == 2 for name in names)
    assert all(out["medians_us"][name] > 0 for name in names)
    budget = out["budget"]
    assert budget["label"] == "issue 12, OTLP metrics vs prometheus_client (per request)"
    assert len(budget["per_round"]) == 2
    assert budget["met"] == (budget["ratio"] <= 1.0)


def test_paired_refuses_a_configuration_that_patches_the_process() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "paired.py"), "--configs", "observe,observe:all"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "not one process's configurations: ['observe:all']" in proc.stderr
