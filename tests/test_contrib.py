"""Shipped monitoring config checked by the real tools: promtool on the rule files, the
Grafana dashboard against what the app exports, the error-budget gauge."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from flask import Flask

from flask_observe import contrib
from flask_observe.diagnostics import MemoryWatch
from flask_observe.metrics import Metrics
from flask_observe.slo import ErrorBudgets
from flask_observe.state import current_state
from sample_app import create_app, observe
from sample_app.platform import create_platform_app

from .conftest import REQUIRE_SERVICES, LiveServer
from .test_metrics import ReadingClient

ROOT = Path(__file__).resolve().parent.parent
RULES = contrib.path("prometheus/flask_observe_rules.yml")
SAMPLE_RULES = ROOT / "sample_app" / "prometheus" / "scraper_rules.yml"
DASHBOARD = contrib.path("grafana/flask_observe_dashboard.json")
SAMPLE_DASHBOARD = ROOT / "sample_app" / "grafana" / "scraper_dashboard.json"


def need_tool(name: str) -> str:
    """The path of a Debian-packaged tool (prometheus, promtool); fail in CI if missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install -y prometheus)"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.mark.realtime
@pytest.mark.services
def test_promtool_checks_the_shipped_rule_files() -> None:
    """``promtool check rules`` accepts flask_observe's rules and the sample's business rules."""
    promtool = need_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES), str(SAMPLE_RULES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 33 rules found" in result.stdout


@pytest.mark.realtime
@pytest.mark.services
def test_promtool_unit_tests_of_the_burn_rate_alerts() -> None:
    """``promtool test rules``: each burn-rate alert of both SLOs fires at the burn rate it is
    for and not below it (14.4x/6x pages, 3x/1x tickets), a spike that only the short window
    sees pages nobody, alerts stop once the short window is clean, errors within the objective
    never alert; each app alert (error rate, latency, memory, disk, slow queries, budget,
    circuit breaker, health check, target down) fires for the one in trouble only."""
    promtool = need_tool("promtool")
    result = subprocess.run(
        [
            promtool,
            "test",
            "rules",
            str(ROOT / "tests" / "promtool" / "flask_observe_rules_test.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_cover_both_slos_with_multi_window_multi_burn_rate() -> None:
    """Each SLO has four burn-rate alerts, each pairing a long and a short window."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    for slo in ("Availability", "Latency"):
        burn = [a for a in alerts if a["alert"].startswith(f"FlaskObserve{slo}ErrorBudgetBurn")]
        assert len(burn) == 4
        for alert in burn:
            windows = re.findall(r"ratio_rate(\w+)\{[^}]*\} >", alert["expr"])
            assert len(windows) == 2
            assert windows[0] != windows[1]


def exported_names(tmp_path: Path) -> set[str]:
    """Every sample name the sample app exports after a scrape (business metrics included)."""
    platform_app = create_platform_app(observe=False)
    with LiveServer(platform_app) as platform:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 's.db'}",
                "SCRAPER_PLATFORM_URL": platform.url,
                "OBSERVE_LOG_STDOUT": False,
                "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
                "OBSERVE_SLOW_QUERY_MS": 0,
                # Alerting on (a channel), so its counters are exported as in production.
                "OBSERVE_ALERT_CHANNELS": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}],
                "OBSERVE_ALERT_ALLOW_HTTP": True,
                "OBSERVE_ALERT_ALLOW_HOSTS": ["127.0.0.1"],
            }
        )
        try:
            app.test_client_class = ReadingClient
            app.test_client().post("/api/scrapes")
            state = current_state(app)
            assert state.get(MemoryWatch) is not None
            assert state.get(ErrorBudgets) is not None
            state.get(MemoryWatch).sample()
            state.get(ErrorBudgets).update()
            assert state.ticker is not None
            state.ticker.run_once()
            metrics = state.get(Metrics)
            assert metrics is not None
            return metrics.names()
        finally:
            observe.shutdown(app)


#: PromQL words that look like identifiers but are not metric names.
_PROMQL_WORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
    ]
)


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects, written with or without ``{…}``: identifiers that
    are not functions, keywords, labels (in ``{…}``, ``by (…)``, ``on (…)``), strings,
    durations, numbers or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    names = re.findall(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", text)
    return {n for n in names if n.lower() not in _PROMQL_WORDS}


def test_the_metric_name_extractor_misses_nothing() -> None:
    """The check below is only as good as its extractor: bare names, names with matchers,
    inside functions and arithmetic are found; functions, labels, numbers are not."""
    assert metric_names(
        'sum by (job, le) (rate(a_total[5m])) / ignoring(x) b{le="0.5"} * 3600 > 100e6'
        ' and on (job) c unless time() - max(d:rule:ratio{job=~"$job"}) > bool 0.95'
    ) == {"a_total", "b", "c", "d:rule:ratio"}
    assert metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))"
    ) == {"x_bucket"}


def test_every_dashboard_expression_names_an_exported_metric(tmp_path: Path) -> None:
    """Each metric the queries of both dashboards (flask_observe's and the sample scraper's)
    select is one the app exports (or a recording rule of the shipped rules, or Prometheus'
    own ``up``); the same holds for every expression of the shipped rule files. (How the
    dashboards provision and what their queries return: tests/test_grafana_dashboards.py.)"""
    exprs = [
        t["expr"]
        for path in (DASHBOARD, SAMPLE_DASHBOARD)
        for p in json.loads(path.read_text())["panels"]
        for t in p.get("targets", [])
    ]
    assert len(exprs) >= 30
    rules = [
        r
        for path in (RULES, SAMPLE_RULES)
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
    ]
    recorded = {r["record"] for r in rules if "record" in r}
    names = exported_names(tmp_path)
    for expr in exprs + [r["expr"] for r in rules]:
        selected = metric_names(expr)
        assert selected, expr
        missing = {n for n in selected if n not in names and n not in recorded and n != "up"}
        assert not missing, (missing, expr)
    # The panels for health and circuit breakers (issue: RED + business + health).
    for metric in ("flask_observe_health_check_status", "flask_observe_circuit_breaker_state"):
        assert any(metric in metric_names(expr) for expr in exprs), metric


def test_error_budget_gauge_and_health_warn(make_app: Callable[..., Flask]) -> None:
    """99 % availability target, 1 failure in 200 requests: half the budget left (ok); 2 more
    failures: under the 10 % warning line (warn). The gauge follows."""
    app = make_app("slo", log_stdout=False, slo_availability=0.99, slo_budget_warn=0.1)
    app.test_client_class = ReadingClient

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        return "no", 500

    client = app.test_client()
    for _ in range(199):
        client.get("/ok")
    client.get("/fail")
    budgets = current_state(app).get(ErrorBudgets)
    assert budgets is not None
    status, details = budgets.health()
    assert status == "ok"
    assert details["remaining"]["availability"] == pytest.approx(0.5)
    client.get("/fail")
    client.get("/fail")
    status, details = budgets.health()
    assert status == "warn"
    registry = current_state(app).get(Metrics).registry  # type: ignore[union-attr]
    gauge = registry.get_sample_value("slo_error_budget_remaining_ratio", {"slo": "availability"})
    assert gauge == pytest.approx(1 - (3 / 202) / 0.01)


def test_contrib_files_are_packaged() -> None:
    """The rule file, the dashboard and its Grafana provisioning files are package data
    (setup.cfg) next to the gunicorn hooks."""
    setup = (ROOT / "setup.cfg").read_text()
    assert "prometheus/*.yml" in setup
    assert "grafana/*.json" in setup
    assert "grafana/provisioning/*/*.yml" in setup
    assert RULES.is_file()
    assert DASHBOARD.is_file()
    assert contrib.path("grafana/provisioning/dashboards/flask_observe.yml").is_file()
    assert contrib.path("grafana/provisioning/datasources/prometheus.yml").is_file()


def test_nearly_spent_budget_warns_in_the_health_report(make_app: Callable[..., Flask]) -> None:
    """The error-budget check is in the full /health report: pass with budget left, warn
    once less than OBSERVE_SLO_BUDGET_WARN remains; readiness is not affected."""
    token = "health-Q8sV1xwKe3ZpRrT6mJ0uYb2N"
    app = make_app("slohealth", log_stdout=False, slo_availability=0.99, auth_token=token)
    app.test_client_class = ReadingClient

    @app.get("/fail")
    def fail() -> tuple[str, int]:
        return "no", 500

    @app.get("/ok")
    def ok() -> str:
        return "ok"

    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(100):
        client.get("/ok")
    entry = client.get("/health", headers=auth).json["checks"][
        "slo-availability:errorBudgetRemaining"
    ][0]
    assert (entry["status"], entry["observedValue"]) == ("pass", 1.0)
    for _ in range(5):
        client.get("/fail")
    report = client.get("/health", headers=auth).json
    entry = report["checks"]["slo-availability:errorBudgetRemaining"][0]
    assert entry["status"] == "warn"
    assert entry["observedValue"] < 0.1
    assert report["status"] == "warn"
    assert client.get("/health/ready").status_code == 200
