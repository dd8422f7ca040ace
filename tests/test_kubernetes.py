"""The Kubernetes manifests of ``flask_observe/contrib/kubernetes``: every document is valid
against the real API models (the ``kubernetes`` client's for core kinds, the models generated
from prometheus-operator's CRDs for ServiceMonitor/PodMonitor/PrometheusRule — see
:mod:`tests.k8s_models`), the pieces refer to each other correctly, and the Deployment's own
command, environment and probes run the real sample app under gunicorn."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flask_observe import Observe, contrib
from sample_app import create_app, observe
from sample_app.platform import create_platform_app

from .conftest import LiveServer, read_json_lines
from .k8s_models import assert_valid, check_manifest, prometheus_rule
from .peers import OtlpReceiver, free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = contrib.path("kubernetes")
FILES = sorted(MANIFESTS.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    return doc


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in FILES
        for doc in yaml.safe_load_all(path.read_text("utf-8"))
        if doc is not None
    ]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    return app


def test_the_manifests_are_the_expected_kinds() -> None:
    """The directory holds a Deployment, a Service, a ServiceMonitor and a PodMonitor (the
    PrometheusRule is rendered from the app's settings, not shipped)."""
    kinds = sorted((doc["apiVersion"], doc["kind"]) for _, doc in documents())
    assert kinds == [
        ("apps/v1", "Deployment"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("v1", "Service"),
    ]


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[name for name, _ in documents()])
def test_every_manifest_is_valid_against_the_api_models(name: str, doc: dict[str, Any]) -> None:
    """No unknown field, no wrong type, no missing required field, no value outside an enum
    or a pattern of the schema."""
    assert_valid(doc)


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = changed
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return changed


APP = "spec.template.spec.containers.0"


@pytest.mark.parametrize(
    ("name", "path", "value", "expected"),
    [
        ("deployment.yaml", f"{APP}.readinessProbe.httpGet.paht", "/x", "unknown field"),
        ("deployment.yaml", f"{APP}.ports.0.containerPort", "8000", "valid integer"),
        ("deployment.yaml", f"{APP}.name", KeyError, "name"),
        ("deployment.yaml", "spec.replicas", True, "valid integer"),
        ("deployment.yaml", f"{APP}.env.0.valueFrom.fieldRef.fieldpath", "x", "unknown field"),
        ("deployment.yaml", "spec.template.spec.volume", [], "unknown field"),
        ("service.yaml", "spec.ports.0.protocoll", "TCP", "unknown field"),
        ("servicemonitor.yaml", "spec.endpoints.0.intervall", "15s", "unknown field"),
        ("servicemonitor.yaml", "spec.endpoints.0.scheme", "ftp", "'http' or 'https'"),
        ("servicemonitor.yaml", "spec.endpoints.0.interval", "15 seconds", "pattern"),
        ("servicemonitor.yaml", "spec.selector", KeyError, "Field required"),
        ("servicemonitor.yaml", "spec.job_label", "x", "unknown field"),
        ("podmonitor.yaml", "spec.podMetricsEndpoint", [], "unknown field"),
        ("podmonitor.yaml", "metadata.lables", {}, "unknown field"),
    ],
)
def test_the_check_rejects_what_the_api_server_would(
    name: str, path: str, value: Any, expected: str
) -> None:
    """A misspelt field, a string port, a missing required field, a bad enum or duration: each
    is reported (so the check above can fail)."""
    problems = check_manifest(_set(load(name), path, value))
    assert problems
    assert expected in " ".join(problems), problems


def test_prometheus_rule_helper_checks_a_rule_file_as_a_prometheusrule() -> None:
    """:func:`prometheus_rule` wraps a rule file: the shipped rules make a valid
    PrometheusRule, and a misspelt key or a bad ``for`` duration in one rule is reported."""
    rules = yaml.safe_load(contrib.path("prometheus/flask_observe_rules.yml").read_text())
    rule = prometheus_rule(rules, "flask-observe", {"release": "kube-prometheus-stack"})
    assert_valid(rule)
    first_alert = next(
        (g, i)
        for g, group in enumerate(rules["groups"])
        for i, r in enumerate(group["rules"])
        if "alert" in r
    )
    at = f"spec.groups.{first_alert[0]}.rules.{first_alert[1]}"
    assert "unknown field of Rule" in " ".join(check_manifest(_set(rule, f"{at}.exprr", "1")))
    assert "pattern" in " ".join(check_manifest(_set(rule, f"{at}.for", "two minutes")))


def test_the_pieces_refer_to_each_other() -> None:
    """What a typo would silently break: the selectors match the pod (and Service) labels, every
    named port exists, probes hit the three health endpoints on the app's port,
    PROMETHEUS_MULTIPROC_DIR is an in-memory emptyDir, every mount has its volume, every
    ``$(VAR)`` names a variable defined before it, and both monitors give the same job label."""
    deployment, service = load("deployment.yaml"), load("service.yaml")
    service_monitor, pod_monitor = load("servicemonitor.yaml"), load("podmonitor.yaml")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    app = container(deployment)
    container_ports = {p["name"] for p in app["ports"]}

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(service["spec"]["selector"], pod_labels)
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    assert selects(
        service_monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]
    )
    assert {e["port"] for e in service_monitor["spec"]["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]
    }
    assert selects(pod_monitor["spec"]["selector"]["matchLabels"], pod_labels)
    assert {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]} <= container_ports
    # ServiceMonitor's jobLabel is read from the Service, PodMonitor's from the pod: same value.
    job_label = service_monitor["spec"]["jobLabel"]
    assert pod_monitor["spec"]["jobLabel"] == job_label
    assert service["metadata"]["labels"][job_label] == pod_labels[job_label]

    probes = {kind: app[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startup": "/health/startup",
        "liveness": "/health/live",
        "readiness": "/health/ready",
    }
    assert {probe["port"] for probe in probes.values()} <= container_ports
    assert app["readinessProbe"]["timeoutSeconds"] > 2  # the default check deadline

    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in app["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes)
    env = list(app["env"])
    values = {e["name"]: e.get("value") for e in env}
    multiproc = volumes[mounts[values["PROMETHEUS_MULTIPROC_DIR"]]]
    assert multiproc["emptyDir"]["medium"] == "Memory"
    assert values["FLASK_OBSERVE_LOG_DIR"] in mounts
    for index, variable in enumerate(env):
        for reference in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", variable.get("value", "")):
            assert reference in {e["name"] for e in env[:index]}, (variable["name"], reference)

    command = app["command"]
    assert command[:3] == ["gunicorn", "-c", "python:flask_observe.contrib.gunicorn"]


# -- the Deployment's command, env and probes against the real app ---------------------------


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a variable defined earlier is replaced, ``$$`` is a
    literal ``$``, anything else stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return defined.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", replace, value)


def pod_environment(
    app: dict[str, Any], *, fields: dict[str, str], secrets: dict[tuple[str, str], str]
) -> dict[str, str]:
    """The container's environment as the kubelet would build it (``fieldRef`` and
    ``secretKeyRef`` from the given values, ``$(VAR)`` expanded in order)."""
    env: dict[str, str] = {}
    for variable in app["env"]:
        if "value" in variable:
            env[variable["name"]] = expand(variable["value"], env)
        elif "fieldRef" in variable["valueFrom"]:
            env[variable["name"]] = fields[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secrets[(ref["name"], ref["key"])]
    return env


def local_path(value: str, volumes: dict[str, Path]) -> str:
    """A path inside the pod (under a volume's mountPath) as the local directory standing in
    for that volume; any other value unchanged."""
    for mount, local in volumes.items():
        if value == mount or value.startswith(mount + "/"):
            return str(local) + value[len(mount) :]
    return value


@pytest.fixture
def platform() -> Iterator[LiveServer]:
    """The demo platform API in-process (with its own Observe, shut down afterwards so the
    process-wide logging setup is released for the tests after this one)."""
    app = create_platform_app(OBSERVE_LOG_STDOUT=False)
    try:
        with LiveServer(app) as server:
            yield server
    finally:
        Observe().shutdown(app)


@pytest.mark.realtime
def test_the_deployments_command_env_and_probes_run_the_real_app(
    tmp_path: Path, platform: LiveServer
) -> None:
    """The container's command (gunicorn with flask_observe.contrib.gunicorn, 2 workers from
    WEB_CONCURRENCY) and environment, with each volume a local directory, the database Secret a
    SQLite file and the two outside addresses (platform API, OTLP collector) local stand-ins:
    the three probes answer 200 on their paths, /metrics at the monitors' path counts the
    request, the multiprocess files land in the in-memory volume, the JSON log lines in the log
    volume carry the service name, and the spans reach the collector with the pod name from
    ``OTEL_RESOURCE_ATTRIBUTES``."""
    deployment = load("deployment.yaml")
    app = container(deployment)
    volumes = {m["mountPath"]: tmp_path / m["name"] for m in app["volumeMounts"]}
    for directory in volumes.values():
        directory.mkdir()
    database = f"sqlite:///{tmp_path / 'scraper.db'}"
    with OtlpReceiver() as collector:
        env = pod_environment(
            app,
            fields={"metadata.name": "social-scraper-7d9f-abcde", "metadata.namespace": "shop"},
            secrets={("social-scraper-database", "url"): database},
        )
        env = {name: local_path(value, volumes) for name, value in env.items()}
        env["FLASK_SCRAPER_PLATFORM_URL"] = platform.url
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.endpoint
        # Seeded once (two workers seeding one empty SQLite file would race), as a migration job.
        seeded = create_app({"SQLALCHEMY_DATABASE_URI": database, "OBSERVE_LOG_STDOUT": False})
        observe.shutdown(seeded)
        env["FLASK_SCRAPER_SEED_DEMO"] = "false"

        port = free_port()
        command = [sys.executable, "-m", *app["command"]]
        command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            status = probe_until_ready(url, app, process)
            assert status == {"startup": 200, "liveness": 200, "readiness": 200}
            assert requests.get(f"{url}/api/accounts", timeout=10).status_code == 200
            (endpoint,) = load("podmonitor.yaml")["spec"]["podMetricsEndpoints"]
            # The worker counts the request when its body is closed, after the client has the
            # response: the scrape (perhaps on the other worker) may come first, so poll.
            counted = wait_for(
                lambda: re.search(
                    r'http_requests_total\{[^}]*route="/api/accounts"[^}]*\} 1\.0',
                    requests.get(url + endpoint["path"], timeout=10).text,
                ),
                timeout=10,
            )
            assert counted
            assert list(volumes["/run/prometheus-multiproc"].glob("*.db"))
            lines = read_json_lines(volumes["/var/log/social-scraper"] / "app.log")
            assert {line["service"] for line in lines} == {"social-scraper"}
            assert {line.get("environment") for line in lines} == {"production"}
            spans = wait_for(
                lambda: [s for s in collector.spans() if s["kind"] == "SERVER"], timeout=15
            )
            assert spans, "no server span reached the collector"
            resource = spans[0]["resource"]
            assert resource["service.name"] == "social-scraper"
            assert resource["k8s.pod.name"] == "social-scraper-7d9f-abcde"
            assert resource["k8s.namespace.name"] == "shop"
        finally:
            output = stop_process(process)
        assert output.count("Booting worker") == 2, output  # WEB_CONCURRENCY=2


def probe_until_ready(url: str, app: dict[str, Any], process: Any) -> dict[str, int]:
    """Poll the startup probe as the kubelet does, then run liveness and readiness once each;
    their HTTP statuses."""
    paths = {
        kind: app[f"{kind}Probe"]["httpGet"]["path"]
        for kind in ("startup", "liveness", "readiness")
    }

    def started() -> bool:
        assert process.poll() is None, process.stdout.read().decode(errors="replace")
        try:
            return requests.get(url + paths["startup"], timeout=2).status_code == 200
        except requests.RequestException:
            return False

    assert wait_for(started, timeout=60), "the startup probe never passed"
    return {kind: requests.get(url + path, timeout=5).status_code for kind, path in paths.items()}
