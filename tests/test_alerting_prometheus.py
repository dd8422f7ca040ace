"""The Prometheus rules rendered for one service from its own settings: scoped to its series,
its objectives and thresholds, a runbook per alert; promtool accepts every rendering."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from flask import Flask

from flask_observe import Observe
from flask_observe.alerting.prometheus import RulesSpec, render_prometheus_rule, render_rules
from flask_observe.contrib import path as contrib_path
from sample_app import create_app

from .test_contrib import need_tool


def _alerts(text: str) -> list[dict[str, object]]:
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r]


def _check(tmp_path: Path, text: str) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(text)
    result = subprocess.run(
        [need_tool("promtool"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_shipped_rule_file_is_the_sample_apps_rendering(tmp_path: Path) -> None:
    """contrib/prometheus/flask_observe_rules.yml is what the command renders for the sample
    scraper with its defaults (regenerate it with the command, never by hand)."""
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 's.db'}",
            "OBSERVE_LOG_STDOUT": False,
            "OBSERVE_LOG_DIR": str(tmp_path / "logs"),
        }
    )
    try:
        result = app.test_cli_runner().invoke(args=["observe", "alerts", "prometheus-rules"])
    finally:
        Observe().shutdown(app)
    assert result.exit_code == 0, result.output
    shipped = contrib_path("prometheus/flask_observe_rules.yml").read_text()
    assert result.output == shipped


def test_every_selector_is_scoped_and_every_alert_names_its_service_and_runbook() -> None:
    text = render_rules(RulesSpec("billing", 'job="billing", namespace="prod"'))
    for group in yaml.safe_load(text)["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"]
            for metric in ("http_requests_total", "up", "slo_error_budget_remaining_ratio"):
                for position in [i for i in range(len(expr)) if expr.startswith(metric, i)]:
                    after = expr[position + len(metric) :]
                    if after[:1] in ("{", "[", " ", ")", "\n") and expr[
                        position - 1 : position
                    ] in (
                        "(",
                        " ",
                        "",
                        "\n",
                    ):
                        assert after.startswith('{job="billing", namespace="prod"'), expr
            if "alert" in rule:
                assert rule["labels"]["service"] == "billing"
                assert rule["labels"]["severity"] in ("critical", "error", "warning")
                assert rule["annotations"]["runbook_url"].endswith(f"/{rule['alert']}.md")


def test_objectives_and_thresholds_come_from_the_settings(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """99.5 % within 0.25 s, a 2 % error-rate alert, a 1 s p95, runbooks elsewhere: the
    rendering says so (and promtool accepts it); the hard-coded 99.9 % and 0.5 s are gone."""
    app = make_app(
        "billing",
        log_stdout=False,
        slo_availability=0.995,
        slo_latency=0.95,
        slo_latency_seconds=0.25,
        alert_error_rate=0.02,
        alert_latency_seconds=1.0,
    )
    result = app.test_cli_runner().invoke(
        args=["observe", "alerts", "prometheus-rules", "--runbook-base", "https://wiki/rb/"]
    )
    assert result.exit_code == 0, result.output
    text = result.output
    _check(tmp_path, text)
    assert "(14.4 * 0.005)" in text
    assert "(14.4 * 0.05)" in text
    assert 'le="0.25"' in text
    assert 'le="0.5"' not in text
    assert "0.001" not in text
    alerts = {a["alert"]: a for a in _alerts(text)}
    assert alerts["FlaskObserveHighErrorRate"]["expr"].endswith("> 0.02")
    assert alerts["FlaskObserveHighLatency"]["expr"].strip().endswith("> 1")
    assert all(
        a["annotations"]["runbook_url"].startswith("https://wiki/rb/Flask") for a in alerts.values()
    )
    assert 'job="billing"' in alerts["FlaskObserveTargetDown"]["expr"]


def test_an_slo_turned_off_has_no_rules(tmp_path: Path) -> None:
    text = render_rules(RulesSpec("svc", 'job="svc"', latency=0.0, memory_growth_mb_per_hour=0))
    _check(tmp_path, text)
    names = {a["alert"] for a in _alerts(text)}
    assert "FlaskObserveLatencyErrorBudgetBurnFast" not in names
    assert "FlaskObserveAvailabilityErrorBudgetBurnFast" in names
    assert "FlaskObserveMemoryGrowing" not in names
    assert "slo_latency" not in text


@pytest.mark.parametrize("selector", ["job=scraper", "", 'job="a" or 1', '{job="a"}'])
def test_a_selector_that_is_not_label_matchers_is_refused(selector: str) -> None:
    with pytest.raises(ValueError, match="expected PromQL label matchers"):
        RulesSpec("svc", selector)


def test_the_kubernetes_form_is_a_prometheus_rule_with_the_same_groups() -> None:
    spec = RulesSpec("scraper", 'job="scraper"')
    manifest = yaml.safe_load(render_prometheus_rule(spec, "scraper-rules", "prod"))
    assert (manifest["apiVersion"], manifest["kind"]) == (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
    )
    assert manifest["metadata"] == {
        "name": "scraper-rules",
        "namespace": "prod",
        "labels": {
            "app.kubernetes.io/name": "scraper",
            "app.kubernetes.io/component": "monitoring",
        },
    }
    assert manifest["spec"]["groups"] == yaml.safe_load(render_rules(spec))["groups"]
