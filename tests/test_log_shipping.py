"""docs/log-shipping.md tells the truth: every YAML/TOML/JSON block parses; the Loki
configurations keep IDs out of labels and read the right file; their timestamp layouts parse
what the formatter really writes; the Elasticsearch template maps every field the app writes;
Grafana's derived fields point at Jaeger and match a real line. With an ``otelcol-contrib``
binary (``OBSERVE_OTELCOL``) the OpenTelemetry Collector configuration runs on real files."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from werkzeug.wrappers import Request, Response

from .conftest import LiveServer, read_json_lines
from .peers import OtlpReceiver, _attributes, _value, wait_for

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "log-shipping.md"
LOG_FILE = "/var/log/social-scraper/app.log"
IDS = {"correlation_id", "trace_id", "span_id"}
PARSERS: dict[str, Callable[[str], Any]] = {
    "yaml": yaml.safe_load,
    "yml": yaml.safe_load,
    "toml": tomllib.loads,
    "json": json.loads,
}


def blocks(language: str | None = None) -> list[tuple[str, str]]:
    """``(language, text)`` of every fenced block of the page, in order."""
    found = re.findall(r"^```([\w-]*)\n(.*?)^```$", PAGE.read_text("utf-8"), re.M | re.S)
    return [(lang, text) for lang, text in found if language is None or lang == language]


def parsed(language: str) -> list[Any]:
    return [PARSERS[language](text) for _, text in blocks(language)]


def yaml_with(key: str) -> dict[str, Any]:
    """The one YAML block with ``key`` at its top level."""
    (doc,) = [d for d in parsed("yaml") if isinstance(d, dict) and key in d]
    return doc


@pytest.mark.parametrize(
    ("index", "language", "text"),
    [(i, lang, text) for i, (lang, text) in enumerate(blocks()) if lang in PARSERS],
    ids=[f"{i}-{lang}" for i, (lang, _) in enumerate(blocks()) if lang in PARSERS],
)
def test_every_yaml_toml_and_json_block_parses(index: int, language: str, text: str) -> None:
    """Each block parses with its language's parser into a mapping."""
    assert isinstance(PARSERS[language](text), dict)


def test_the_page_has_every_configuration() -> None:
    """promtail, Vector (YAML and TOML), Fluent Bit (Loki, OpenSearch), the OTel Collector,
    Grafana provisioning, Filebeat and the index template are all there, plus the Alloy block
    (its own syntax, not parsed here)."""
    counts = {lang: len(blocks(lang)) for lang in ("yaml", "toml", "json", "alloy")}
    assert counts == {"yaml": 7, "toml": 1, "json": 1, "alloy": 1}
    tops = [set(doc) for doc in parsed("yaml")]
    assert tops == [
        {"server", "positions", "clients", "scrape_configs"},  # promtail
        {"data_dir", "sources", "transforms", "sinks"},  # Vector
        {"service", "parsers", "pipeline"},  # Fluent Bit to Loki
        {"receivers", "processors", "exporters", "service"},  # OTel Collector
        {"apiVersion", "datasources"},  # Grafana provisioning
        {"pipeline"},  # Fluent Bit to OpenSearch
        {
            "filebeat.inputs",
            "processors",
            "output.elasticsearch",
            "setup.template.enabled",
            "setup.template.name",
            "setup.template.pattern",
            "setup.ilm.enabled",
        },
    ]


def _shipper_paths() -> dict[str, list[str]]:
    promtail = yaml_with("scrape_configs")
    vector = yaml_with("sources")
    fluent_bit = next(d for d in parsed("yaml") if "parsers" in d and "pipeline" in d)
    collector = yaml_with("receivers")
    filebeat = next(d for d in parsed("yaml") if "filebeat.inputs" in d)
    (vector_toml,) = parsed("toml")
    alloy = blocks("alloy")[0][1]
    return {
        "alloy": re.findall(r'"__path__"\s*=\s*"([^"]+)"', alloy),
        "promtail": [
            target["labels"]["__path__"]
            for job in promtail["scrape_configs"]
            for target in job["static_configs"]
        ],
        "vector": vector["sources"]["flask_observe_files"]["include"],
        "vector-toml": vector_toml["sources"]["flask_observe_files"]["include"],
        "fluent-bit": [i["path"] for i in fluent_bit["pipeline"]["inputs"]],
        "collector": collector["receivers"]["filelog"]["include"],
        "filebeat": [p for i in filebeat["filebeat.inputs"] for p in i["paths"]],
    }


def test_every_shipper_reads_the_active_file_only() -> None:
    """Each configuration reads ``app.log`` and nothing else: no glob that would read the
    rotated or gzipped copies of lines it already shipped."""
    for shipper, paths in _shipper_paths().items():
        assert paths == [LOG_FILE], shipper


def test_loki_configurations_never_make_an_id_a_label() -> None:
    """Labels are ``service`` and ``level`` only; correlation_id, trace_id and span_id go to
    structured metadata, in every Loki configuration."""
    alloy = blocks("alloy")[0][1]
    alloy_labels = re.search(r"stage\.labels \{\s*values = \{([^}]*)\}", alloy)
    alloy_metadata = re.search(r"stage\.structured_metadata \{\s*values = \{([^}]*)\}", alloy)
    assert alloy_labels
    assert alloy_metadata
    assert set(re.findall(r"(\w+) = \"\"", alloy_labels.group(1))) == {"level", "service"}
    assert set(re.findall(r"(\w+) = \"\"", alloy_metadata.group(1))) == IDS

    stages = yaml_with("scrape_configs")["scrape_configs"][0]["pipeline_stages"]
    by_kind = {next(iter(stage)): next(iter(stage.values())) for stage in stages}
    assert set(by_kind["labels"]) == {"level", "service"}
    assert set(by_kind["structured_metadata"]) == IDS

    vector = yaml_with("sources")
    source = vector["transforms"]["flask_observe_parse"]["source"]
    labels = re.search(r"\.loki_labels = \{([^}]*)\}", source)
    metadata = re.search(r"\.loki_metadata = compact\(\{([^}]*)\}\)", source, re.S)
    assert labels
    assert metadata
    assert set(re.findall(r'"(\w+)":', labels.group(1))) == {"level", "service"}
    assert set(re.findall(r'"(\w+)":', metadata.group(1))) == IDS
    sink = vector["sinks"]["loki"]
    assert sink["labels"] == {"*": "{{ loki_labels }}"}
    assert sink["structured_metadata"] == {"*": "{{ loki_metadata }}"}

    fluent_bit = next(d for d in parsed("yaml") if "parsers" in d and "pipeline" in d)
    (loki,) = [o for o in fluent_bit["pipeline"]["outputs"] if o["name"] == "loki"]

    def pairs(value: str) -> dict[str, str]:
        return dict(item.strip().split("=", 1) for item in value.split(","))

    assert pairs(loki["labels"]) == {"service": "$service", "level": "$level"}
    assert pairs(loki["structured_metadata"]) == {key: f"${key}" for key in IDS}


# -- against what the formatter really writes -----------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """Set up before ``make_app`` so the apps shut down while it still answers."""
    with OtlpReceiver() as running:
        yield running


def access_line_written(path: Path) -> list[dict[str, Any]]:
    found = read_json_lines(path)
    return found if any(line["logger"] == "flask_observe.access" for line in found) else []


@pytest.fixture
def lines(
    receiver: OtlpReceiver, make_app: Callable[..., Flask], tmp_path: Path
) -> list[dict[str, Any]]:
    """Real lines from a traced request: the one the view logs and the access log's."""
    app = make_app(
        "social-scraper",
        log_stdout=False,
        log_dir=str(tmp_path / "logs"),
        tracing_endpoint=receiver.endpoint,
        service_version="1.0.0",
        environment="production",
    )

    @app.get("/accounts/<int:account_id>")
    def account(account_id: int) -> dict[str, int]:
        logging.getLogger("sample_app.scraper").info("account scraped")
        return {"id": account_id}

    response = app.test_client().get("/accounts/7")
    response.close()  # the access line is written once the body was sent
    assert response.status_code == 200
    found = wait_for(lambda: access_line_written(tmp_path / "logs" / "app.log"), 5)
    assert found, "no access-log line was written"
    return [line for line in found if line.get("trace_id")]


def test_the_timestamp_layouts_parse_the_formatters_timestamps(
    lines: list[dict[str, Any]],
) -> None:
    """Every layout the page gives (Go layouts, strftime with Fluent Bit's %L, RFC 3339)
    parses the formatter's real ``timestamp`` to the same instant."""
    stamp = lines[0]["timestamp"]
    instant = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    text = PAGE.read_text()
    go_layouts = set(re.findall(r'"(2006-01-02T15:04:05[^"]*)"', text))
    assert go_layouts == {"2006-01-02T15:04:05.000Z"}
    go_to_python = {"2006": "%Y", "01": "%m", "02": "%d", "15": "%H", "04": "%M", "05": "%S"}
    for layout in go_layouts:
        pattern = re.sub(r"2006|01|02|15|04|05", lambda m: go_to_python[m.group(0)], layout)
        pattern = pattern.replace(".000", ".%f")
        parsed_at = dt.datetime.strptime(stamp, pattern).replace(tzinfo=dt.timezone.utc)
        assert parsed_at == instant
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    (fluent_bit_format,) = set(re.findall(r'time_format: "([^"]+)"', text))
    parsed_at = dt.datetime.strptime(stamp, fluent_bit_format.replace("%L", "%f"))
    assert parsed_at.replace(tzinfo=dt.timezone.utc) == instant
    # RFC3339Nano (Alloy, promtail) and chrono's %+ (Vector): RFC 3339 with a fraction.
    assert text.count('format = "RFC3339Nano"') == 1
    assert "format: RFC3339Nano" in text
    assert text.count('format: "%+"') == 2


def test_the_index_template_maps_every_field_the_app_writes(lines: list[dict[str, Any]]) -> None:
    """Each field of logging.md's table and of a real access-log line and application line
    has an explicit mapping; the IDs and the selectors are ``keyword``."""
    (template,) = parsed("json")
    properties = template["template"]["mappings"]["properties"]
    documented = set(
        re.findall(r"^\| `(\w+)`(?:, `(\w+)`)*", (ROOT / "docs" / "logging.md").read_text(), re.M)
    )
    names = {name for group in documented for name in group if name} - {"anything"}
    real = {key for line in lines for key in line}
    assert real >= IDS  # the request was traced and correlated
    assert names | real <= set(properties), (names | real) - set(properties)
    for field in IDS | {"level", "service", "route", "method", "logger"}:
        assert properties[field]["type"] == "keyword", field
    access = next(line for line in lines if line["logger"] == "flask_observe.access")
    assert isinstance(access["status"], int)
    assert properties["status"]["type"] == "short"
    assert properties["@timestamp"]["type"] == "date"


def test_grafana_derived_fields_point_at_jaeger_and_match_a_real_line(
    lines: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Both derived fields link to the Jaeger data source by uid with a literal ``${…}`` (``$$``
    in provisioning); the regex one finds the trace ID in a real line as written to the file;
    Jaeger links back to the Loki data source."""
    config = yaml_with("datasources")
    by_type = {d["type"]: d for d in config["datasources"]}
    jaeger, loki = by_type["jaeger"], by_type["loki"]
    fields = loki["jsonData"]["derivedFields"]
    assert {f["matcherType"] for f in fields} == {"label", "regex"}
    for field in fields:
        assert field["datasourceUid"] == jaeger["uid"]
        assert field["url"] == "$${__value.raw}"
    raw = (tmp_path / "logs" / "app.log").read_text().splitlines()[-1]
    (regex,) = [f["matcherRegex"] for f in fields if f["matcherType"] == "regex"]
    match = re.search(regex, raw)
    assert match
    assert match.group(1) == json.loads(raw)["trace_id"]
    assert jaeger["jsonData"]["tracesToLogsV2"]["datasourceUid"] == loki["uid"]


# -- the OpenTelemetry Collector configuration, run for real when a binary is given ----------


class OtlpHttpLogs:
    """An OTLP/HTTP logs endpoint (``POST …/v1/logs``, protobuf, gzip or not) recording the
    decoded ``ExportLogsServiceRequest``s."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

        self.pb2 = logs_service_pb2
        self.requests: list[Any] = []
        self.paths: list[str] = []
        self.server = LiveServer(self._app)
        self.url = self.server.url

    def __enter__(self) -> OtlpHttpLogs:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def _app(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = self.pb2.ExportLogsServiceRequest()
        message.ParseFromString(body)
        self.requests.append(message)
        self.paths.append(request.path)
        answer = self.pb2.ExportLogsServiceResponse().SerializeToString()
        return Response(answer, content_type="application/x-protobuf")(environ, start_response)

    def records(self) -> list[dict[str, Any]]:
        out = []
        for request in list(self.requests):
            for resource_logs in request.resource_logs:
                resource = _attributes(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        out.append(
                            {
                                "body": _value(record.body),
                                "severity_text": record.severity_text,
                                "severity_number": record.severity_number,
                                "time_unix_nano": record.time_unix_nano,
                                "trace_id": record.trace_id.hex() or None,
                                "span_id": record.span_id.hex() or None,
                                "attributes": _attributes(record.attributes),
                                "resource": resource,
                            }
                        )
        return out


def otelcol_binary() -> str:
    path = os.environ.get("OBSERVE_OTELCOL", "")
    if not path:
        pytest.skip(
            "set OBSERVE_OTELCOL to an otelcol-contrib binary (with the filelog receiver and"
            " the otlphttp exporter) to run the Collector configuration; Debian has none and"
            " the test extra installs none"
        )
    return path


@pytest.mark.realtime
def test_the_collector_configuration_ships_real_lines_over_otlp(
    receiver: OtlpReceiver, make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """otelcol-contrib with the page's configuration (only the file path and Loki's address
    changed) reads lines the app writes after it started and sends each over OTLP/HTTP to
    ``…/otlp/v1/logs``: the message as body, the level as severity, the line's own timestamp,
    the trace and span IDs as the record's, the service as ``service.name``, and the
    correlation ID among the attributes."""
    binary = otelcol_binary()
    text = yaml.safe_dump(yaml_with("receivers"))
    logs = tmp_path / "logs"
    logs.mkdir()
    with OtlpHttpLogs() as sink:
        config = text.replace(LOG_FILE, str(logs / "app.log")).replace(
            "http://loki:3100", f"{sink.url}"
        )
        (tmp_path / "otelcol.yaml").write_text(config)
        collector = subprocess.Popen(
            [binary, "--config", str(tmp_path / "otelcol.yaml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            (logs / "app.log").touch()
            time.sleep(2)  # start_at: end — the collector must be watching before lines arrive
            app = make_app(
                "social-scraper",
                log_stdout=False,
                log_dir=str(logs),
                tracing_endpoint=receiver.endpoint,
            )

            @app.get("/fail")
            def fail() -> tuple[str, int]:
                logging.getLogger("sample_app").warning("platform slow")
                return "no", 503

            response = app.test_client().get("/fail")
            response.close()
            assert response.status_code == 503
            written = [
                line
                for line in wait_for(lambda: access_line_written(logs / "app.log"), 5)
                if line.get("trace_id")
            ]
            records = wait_for(lambda: len(sink.records()) >= len(written) and sink.records(), 20)
        finally:
            collector.terminate()
            output = collector.communicate(timeout=20)[0].decode(errors="replace")
    assert records, output[-3000:]
    assert set(sink.paths) == {"/otlp/v1/logs"}
    by_body = {r["body"]: r for r in records}
    for line in written:
        record = by_body[line["message"]]
        stamp = dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        assert record["time_unix_nano"] == int(stamp.timestamp() * 1000) * 1_000_000
        assert record["severity_text"] == line["level"]
        assert record["trace_id"] == line["trace_id"]
        assert record["span_id"] == line["span_id"]
        assert record["resource"]["service.name"] == "social-scraper"
        assert record["attributes"]["correlation_id"] == line["correlation_id"]
    assert by_body["platform slow"]["severity_number"] == 13  # WARN
