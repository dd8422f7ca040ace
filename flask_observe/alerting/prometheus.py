"""The Prometheus rule file for one service, rendered from its own settings.

``flask observe alerts prometheus-rules`` writes it: recording rules of both SLOs over the
windows of the multi-window, multi-burn-rate alerts (Google's SRE workbook, chapter 5), the
burn-rate alerts themselves with this app's objectives, and the app alerts (target down, error
rate, latency, memory, disk, breakers, health checks, slow queries, budget) with this app's
thresholds. Every selector carries the service's label matchers (``job="scraper"`` by default),
so the rules of several services in one Prometheus never read or alert on each other's series;
every alert has ``service`` and ``severity`` labels and a ``runbook_url``.

The shipped ``flask_observe/contrib/prometheus/flask_observe_rules.yml`` is this file rendered
for the sample scraper (``job="scraper"``) with the default settings; a test keeps it so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_RUNBOOK_BASE", "RulesSpec", "render_prometheus_rule", "render_rules"]

#: Where the runbooks are published (docs/runbooks/ of the project); change with
#: ``--runbook-base`` to point at your own copy.
DEFAULT_RUNBOOK_BASE = "https://github.com/flask-observe/flask-observe/blob/main/docs/runbooks"

#: (long window, short window, burn rate, for, severity): the workbook's four alerts.
BURN_WINDOWS = (
    ("1h", "5m", 14.4, "2m", "critical"),
    ("6h", "30m", 6.0, "15m", "critical"),
    ("1d", "2h", 3.0, "1h", "warning"),
    ("3d", "6h", 1.0, "3h", "warning"),
)
RATE_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
_MATCHER = re.compile(r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*')


@dataclass(frozen=True)
class RulesSpec:
    """What the rules are rendered from.

    :param service: the service's name (the ``service`` label of its alerts).
    :param selector: PromQL label matchers that pick the service's series, without braces
        (``job="scraper"``; ``job="scraper", namespace="prod"``).
    """

    service: str
    selector: str
    availability: float = 0.999
    latency: float = 0.99
    latency_seconds: float = 0.5
    error_rate: float = 0.05
    latency_p95_seconds: float = 2.0
    memory_growth_mb_per_hour: float = 100.0
    disk_free: float = 0.05
    slow_queries_per_second: float = 0.1
    #: Failures in a row of a timed operation (``operation_consecutive_failures``).
    operation_failures: int = 5
    budget_warn: float = 0.1
    runbook_base: str = DEFAULT_RUNBOOK_BASE

    def __post_init__(self) -> None:
        matchers = list(_split_matchers(self.selector))
        if not matchers or not all(_MATCHER.fullmatch(m) for m in matchers):
            raise ValueError(
                f"selector {self.selector!r}: expected PromQL label matchers such as"
                ' job="scraper" (several separated by commas)'
            )

    @classmethod
    def from_config(
        cls, config: Any, service: str, selector: str | None = None, **overrides: Any
    ) -> RulesSpec:
        """The spec of an app: its SLO and alert settings, selected by ``job="<service>"``
        unless ``selector`` says otherwise."""
        values: dict[str, Any] = {
            "availability": config.slo_availability,
            "latency": config.slo_latency,
            "latency_seconds": config.slo_latency_seconds,
            "error_rate": config.alert_error_rate,
            "latency_p95_seconds": config.alert_latency_seconds,
            "memory_growth_mb_per_hour": config.memory_growth_mb_per_hour,
            "disk_free": config.alert_disk_free,
            "budget_warn": config.slo_budget_warn,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(service=service, selector=selector or f"job={json.dumps(service)}", **values)


def _split_matchers(selector: str) -> Iterator[str]:
    current, quoted, escaped = "", False, False
    for char in selector:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            yield current
            current = ""
            continue
        current += char
    if current.strip():
        yield current


def _le(seconds: float) -> str:
    """A bucket bound as prometheus_client writes the ``le`` label (``0.5``, ``1.0``)."""
    return repr(float(seconds))


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g} %"


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def render_rules(spec: RulesSpec) -> str:
    """The rule file (YAML) for ``spec``."""
    sel = ", ".join(m.strip() for m in _split_matchers(spec.selector))
    name = re.sub(r"[^A-Za-z0-9_]", "_", spec.service)
    out: list[str] = [
        f"# flask_observe: Prometheus recording and alert rules for {spec.service}",
        f"# (its series: {{{sel}}}), rendered by `flask observe alerts prometheus-rules` from",
        f"# the app's own settings: availability {_pct(spec.availability)}, latency"
        f" {_pct(spec.latency)} within {spec.latency_seconds:g} s",
        "# (OBSERVE_SLO_*), thresholds OBSERVE_ALERT_*: render it again when they change.",
        "# Load with `rule_files: [<this file>]`; `promtool check rules` and `promtool test",
        "# rules` (tests/promtool/) check it in the test suite. Every alert links its runbook",
        f"# under {spec.runbook_base}",
        "# (--runbook-base points them at your own copy).",
        "groups:",
    ]
    slos: list[tuple[str, float, str, str]] = []
    if spec.availability:
        errors = (
            f'sum by (job) (rate(http_requests_total{{{sel}, status=~"5.."}}[{{w}}]))\n'
            f"/\nsum by (job) (rate(http_requests_total{{{sel}}}[{{w}}]))"
        )
        slos.append(("availability", spec.availability, errors, _pct(spec.availability)))
    if spec.latency:
        le = _le(spec.latency_seconds)
        errors = (
            "1 - (\n"
            f'  sum by (job) (rate(http_request_duration_seconds_bucket{{{sel}, le="{le}"}}'
            "[{w}]))\n  /\n"
            f"  sum by (job) (rate(http_request_duration_seconds_count{{{sel}}}[{{w}}]))\n)"
        )
        what = f"{_pct(spec.latency)} under {spec.latency_seconds:g} s"
        slos.append(("latency", spec.latency, errors, what))
    if slos:
        out += [f"  - name: flask_observe_{name}_slo_recording", "    rules:"]
        for slo, _target, errors, _what in slos:
            for window in RATE_WINDOWS:
                out += [f"      - record: flask_observe:slo_{slo}_errors:ratio_rate{window}"]
                out += _block(errors.replace("{w}", window))
        if spec.availability:
            budget = 1.0 - spec.availability
            out += [
                "      - record: flask_observe:slo_availability_error_budget_remaining:ratio30d",
                *_block(
                    "1 - (\n"
                    f'  sum by (job) (increase(http_requests_total{{{sel}, status=~"5.."}}[30d]))\n'
                    f"  / sum by (job) (increase(http_requests_total{{{sel}}}[30d]))\n"
                    f") / {budget:g}"
                ),
            ]
        out += ["", f"  - name: flask_observe_{name}_slo_burn_rate", "    rules:"]
        for slo, target, _errors, what in slos:
            budget = 1.0 - target
            title = f"{slo} ({what})"
            for long, short, rate, duration, severity in BURN_WINDOWS:
                alert = (
                    f"FlaskObserve{slo.capitalize()}ErrorBudgetBurn"
                    f"{'Fast' if severity == 'critical' else 'Slow'}"
                )
                days = 30.0 / rate
                out += [
                    f"      - alert: {alert}",
                    *_block(
                        f"flask_observe:slo_{slo}_errors:ratio_rate{long}{{{sel}}} >"
                        f" ({rate:g} * {budget:g})\nand\n"
                        f"flask_observe:slo_{slo}_errors:ratio_rate{short}{{{sel}}} >"
                        f" ({rate:g} * {budget:g})"
                    ),
                    f"        for: {duration}",
                    "        labels:",
                    f"          severity: {severity}",
                    f"          service: {_quote(spec.service)}",
                    f"          slo: {slo}",
                    f"          long_window: {long}",
                    "        annotations:",
                    f"          runbook_url: {_quote(f'{spec.runbook_base}/{alert}.md')}",
                    f"          summary: {_quote(_summary_burn(title, rate, long, short))}",
                    f"          description: {_quote(_description_burn(title, days))}",
                ]
        out.append("")
    out += [f"  - name: flask_observe_{name}_app", "    rules:"]
    for alert, expr, duration, severity, summary in _app_alerts(spec, sel):
        out += [
            f"      - alert: {alert}",
            *(_block(expr) if "\n" in expr else [f"        expr: {expr}"]),
            f"        for: {duration}",
            f"        labels: {{severity: {severity}, service: {_quote(spec.service)}}}",
            "        annotations:",
            f"          runbook_url: {_quote(f'{spec.runbook_base}/{alert}.md')}",
            f"          summary: {_quote(summary)}",
        ]
    return "\n".join(out) + "\n"


def _summary_burn(title: str, rate: float, long: str, short: str) -> str:
    return (
        f"{{{{ $labels.job }}}} is burning its {title} error budget {rate:g}x too fast"
        f" ({long}/{short} windows)"
    )


def _description_burn(title: str, days: float) -> str:
    return f"At this rate the 30-day budget of the {title} SLO is gone in {days:.1f} days."


def _block(expr: str) -> list[str]:
    return ["        expr: |", *(f"          {line}" for line in expr.splitlines())]


def _app_alerts(spec: RulesSpec, sel: str) -> list[tuple[str, str, str, str, str]]:
    """(alert, expr, for, severity, summary) of the app alerts that are on."""
    alerts = [
        (
            "FlaskObserveTargetDown",
            f"up{{{sel}}} == 0",
            "2m",
            "critical",
            "{{ $labels.instance }} of {{ $labels.job }} cannot be scraped",
        )
    ]
    if spec.availability:
        alerts.append(
            (
                "FlaskObserveHighErrorRate",
                f"flask_observe:slo_availability_errors:ratio_rate5m{{{sel}}}"
                f" > {spec.error_rate:g}",
                "5m",
                "error",
                "{{ $labels.job }}: {{ $value | humanizePercentage }} of requests answer 5xx",
            )
        )
    if spec.latency_p95_seconds:
        alerts.append(
            (
                "FlaskObserveHighLatency",
                "histogram_quantile(0.95, sum by (job, le)"
                f" (rate(http_request_duration_seconds_bucket{{{sel}}}[5m])))"
                f" > {spec.latency_p95_seconds:g}\n",
                "10m",
                "warning",
                "{{ $labels.job }}: p95 latency {{ $value | humanizeDuration }}",
            )
        )
    if spec.memory_growth_mb_per_hour:
        alerts.append(
            (
                "FlaskObserveMemoryGrowing",
                "max by (job, instance) (flask_observe_memory_growth_bytes_per_second"
                f"{{{sel}}}) * 3600 > {spec.memory_growth_mb_per_hour:g}e6",
                "15m",
                "warning",
                "{{ $labels.instance }}: memory growing {{ $value | humanize1024 }}B/hour",
            )
        )
    if spec.disk_free:
        alerts.append(
            (
                "FlaskObserveLowDiskSpace",
                f"min by (job, instance, path) (flask_observe_disk_free_ratio{{{sel}}})"
                f" < {spec.disk_free:g}",
                "5m",
                "warning",
                "{{ $labels.instance }}: {{ $value | humanizePercentage }} free on"
                " {{ $labels.path }}",
            )
        )
    alerts += [
        (
            "FlaskObserveCircuitBreakerOpen",
            f"max by (job, breaker) (flask_observe_circuit_breaker_state{{{sel}}}) == 2",
            "1m",
            "error",
            "{{ $labels.job }}: circuit breaker {{ $labels.breaker }} is open",
        ),
        (
            "FlaskObserveHealthCheckFailing",
            f"max by (job, check, critical) (flask_observe_health_check_status{{{sel}}}) == 2",
            "5m",
            "error",
            "{{ $labels.job }}: health check {{ $labels.check }} fails (critical:"
            " {{ $labels.critical }})",
        ),
        (
            "FlaskObserveSlowQueries",
            f"sum by (job) (rate(db_slow_queries_total{{{sel}}}[10m]))"
            f" > {spec.slow_queries_per_second:g}",
            "10m",
            "warning",
            "{{ $labels.job }}: {{ $value | humanize }} slow SQL queries per second",
        ),
        (
            "FlaskObserveOperationFailing",
            f"max by (job, operation) (operation_consecutive_failures{{{sel}}})"
            f" >= {spec.operation_failures:d}",
            "1m",
            "error",
            "{{ $labels.job }}: {{ $labels.operation }} failed {{ $value }} times in a row",
        ),
    ]
    if spec.availability or spec.latency:
        alerts.append(
            (
                "FlaskObserveErrorBudgetLow",
                f"min by (job, slo) (slo_error_budget_remaining_ratio{{{sel}}})"
                f" < {spec.budget_warn:g}",
                "15m",
                "warning",
                f"{{{{ $labels.job }}}}: under {_pct(spec.budget_warn)} of the"
                " {{ $labels.slo }} error budget left (in-process view)",
            )
        )
    return alerts


def render_prometheus_rule(spec: RulesSpec, name: str, namespace: str | None = None) -> str:
    """The rules as a prometheus-operator ``PrometheusRule`` manifest (YAML)."""
    rules = render_rules(spec)
    body = rules[rules.index("groups:") :]
    head = [
        "apiVersion: monitoring.coreos.com/v1",
        "kind: PrometheusRule",
        "metadata:",
        f"  name: {_quote(name)}",
    ]
    if namespace:
        head.append(f"  namespace: {_quote(namespace)}")
    head += [
        "  labels:",
        f"    app.kubernetes.io/name: {_quote(spec.service)}",
        "    app.kubernetes.io/component: monitoring",
        "spec:",
    ]
    indented = "\n".join(f"  {line}" if line else line for line in body.splitlines())
    return "\n".join(head) + "\n" + indented + "\n"
