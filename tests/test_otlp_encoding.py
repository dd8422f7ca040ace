"""The OTLP logs pipeline's own encoding (flask_observe/otlp/encoding.py): a batch of lines
becomes the same ``ExportLogsServiceRequest`` the SDK's records and encoder make of them, and
both of the SDK's OTLP exporters send it (gRPC to a real receiver, HTTP to a real server);
an exporter without the hook (``console``) gets the SDK's records."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask, request
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.resources import Resource

from flask_observe import Observe
from flask_observe.otlp import OtlpLogs
from flask_observe.otlp.encoding import Encoded, Line, LineEncoder
from flask_observe.otlp.logs import LogsPipeline
from flask_observe.state import current_state

from .conftest import LiveServer
from .peers import OtlpReceiver, wait_for

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"

#: Lines as the JSON formatter makes them: every kind of value an attribute can hold, the
#: fields that are not attributes, and levels with and without a name.
LINES: list[Line] = [
    (
        1_700_000_000.123456,
        logging.INFO,
        "app.view",
        {
            "timestamp": "2023-11-14T22:13:20.123Z",
            "level": "info",
            "logger": "app.view",
            "message": "served user",
            "service": "svc",
            "version": "1.2",
            "correlation_id": "req-1",
            "trace_id": TRACE,
            "span_id": SPAN,
            "user_id": 42,
            "huge": 1 << 70,
            "negative": -5,
            "ratio": 0.25,
            "ok": True,
            "tags": ["a", "b"],
            "ids": [1, 2, 3],
            "mixed": [1, "a"],
            "meta": {"x": 1},
            "nothing": None,
            "empty": [],
        },
    ),
    (
        1_700_000_001.5,
        logging.ERROR,
        "app.view",
        {
            "level": "error",
            "message": "it broke",
            "exception": "Traceback (most recent call last):\n  ValueError: no",
            "exc_type": "ValueError",
            "trace_id": "not-hex",
            "span_id": SPAN,
        },
    ),
    (1_700_000_002.0, 25, "flask_observe.access", {"message": "GET / 200", "status": 200}),
    (1_700_000_003.0, logging.CRITICAL, "other", {"message": "down", "level": "critical"}),
    (1_700_000_004.0, logging.DEBUG, "app.view", {"message": "detail"}),
]
#: Many lines of one logger: values that repeat (kept encoded) and values that keep changing
#: (past the number kept per key), an int and a bool of equal value under one key.
MANY: list[Line] = [
    (
        1_700_000_010.0 + n,
        logging.INFO,
        "flask_observe.access",
        {
            "message": "GET /users/<int:user_id> 200",
            "correlation_id": f"req-{n}",
            "route": "/users/<int:user_id>",
            "status": 200 if n % 3 else 500,
            "duration_ms": n / 7,
            "flag": 1 if n % 2 else True,
        },
    )
    for n in range(100)
]


def normalized(request_: ExportLogsServiceRequest) -> ExportLogsServiceRequest:
    """The request with the observed times cleared (when the line was encoded) and its scopes
    in name order."""
    out = ExportLogsServiceRequest()
    out.CopyFrom(request_)
    for resource_logs in out.resource_logs:
        scopes = sorted(resource_logs.scope_logs, key=lambda s: s.scope.name)
        copies = [type(s)() for s in scopes]
        for copy, scope in zip(copies, scopes, strict=True):
            copy.CopyFrom(scope)
            for record in copy.log_records:
                record.observed_time_unix_nano = 0
        del resource_logs.scope_logs[:]
        resource_logs.scope_logs.extend(copies)
    return out


def test_a_batch_encodes_to_what_the_sdks_records_and_encoder_make() -> None:
    """Body, times, severities (named levels and one between them), trace and span IDs (an
    invalid one left out), every attribute kind, the renamed exception fields, identity fields
    on the resource only, one scope per logger: field for field the SDK's request."""
    resource = Resource.create({"service.name": "svc", "service.version": "1.2"})
    pipeline = LogsPipeline(resource, lambda: None, identity=("service", "version"))
    try:
        ours = pipeline.encoder.encode(LINES + MANY)
        sdk = encode_logs([pipeline.readable(*line) for line in LINES + MANY])
    finally:
        pipeline.processor.shutdown()
    assert normalized(ours) == normalized(sdk)
    (resource_logs,) = ours.resource_logs
    first = resource_logs.scope_logs[0].log_records[0]
    assert first.trace_id.hex() == TRACE
    assert first.span_id.hex() == SPAN
    assert first.flags == 1
    keys = [a.key for a in first.attributes]
    assert "service" not in keys
    assert "timestamp" not in keys
    assert "nothing" not in keys
    assert LINES[0][3]["message"] == "served user", "the line's fields were changed"


def test_values_that_keep_changing_repeated_by_the_next_line_encode_as_the_sdk_does() -> None:
    """A correlation ID changes with every request and is shared by its lines, next to each
    other in a batch: past the values kept per key, the last one is reused, a new one never
    taken for it (text only: an equal integer, float or boolean is not the same value)."""
    lines: list[Line] = [
        (
            1_700_000_100.0 + n,
            logging.INFO,
            "app" if n % 2 else "flask_observe.access",
            {"message": "m", "correlation_id": f"req-{n // 2}", "size": 7 if n % 4 else 7.0},
        )
        for n in range(200)
    ]
    resource = Resource.create({"service.name": "svc"})
    pipeline = LogsPipeline(resource, lambda: None, identity=("service",))
    try:
        ours = pipeline.encoder.encode(lines)
        sdk = encode_logs([pipeline.readable(*line) for line in lines])
    finally:
        pipeline.processor.shutdown()
    assert normalized(ours) == normalized(sdk)
    ids = [
        a.value.string_value
        for s in ours.resource_logs[0].scope_logs
        for r in s.log_records
        for a in r.attributes
        if a.key == "correlation_id"
    ]
    assert sorted(ids) == sorted(f"req-{n // 2}" for n in range(200))


def test_subclasses_of_plain_values_are_sent_as_the_plain_values() -> None:
    """An IntEnum (``HTTPStatus``), a float subclass (numpy's ``float64`` is one) and a
    ``StrEnum`` in a line's fields: sent as the integer, the double and the text they are,
    and the batch encodes at all (these failed it before)."""
    from enum import Enum
    from http import HTTPStatus

    class Ratio(float):
        pass

    class Colour(str, Enum):
        RED = "red"

    lines: list[Line] = [
        (1.0 + n, logging.INFO, "x", {"message": "m", "status": HTTPStatus.OK, "ratio": Ratio(0.5),
                                       "colour": Colour.RED})
        for n in range(3)
    ]  # fmt: skip
    request_ = LineEncoder(Resource.create({}), ()).encode(lines)
    records = request_.resource_logs[0].scope_logs[0].log_records
    assert len(records) == 3
    for record in records:
        values = {a.key: a.value for a in record.attributes}
        assert values["status"].WhichOneof("value") == "int_value"
        assert values["status"].int_value == 200
        assert values["ratio"].double_value == 0.5
        assert values["colour"].string_value == "red"


def test_the_encoder_leaves_the_lines_fields_as_they_are() -> None:
    """The fields are the file formatter's own dict, shared: read, never changed."""
    fields = dict(LINES[1][3])
    encoder = LineEncoder(Resource.create({}), ("service",))
    encoder.encode([(1.0, logging.ERROR, "x", fields)])
    assert fields == LINES[1][3]


def test_text_that_is_not_utf_8_is_sent_with_a_replacement_character() -> None:
    """A lone surrogate (which UTF-8 cannot hold) in the body, a value or a key does not fail
    the batch: it is sent as ``?``."""
    encoder = LineEncoder(Resource.create({}), ())
    request_ = encoder.encode(
        [(1.0, logging.INFO, "x", {"message": "a\ud800", "k\udc00": "v\ud800"})]
    )
    (record,) = request_.resource_logs[0].scope_logs[0].log_records
    assert record.body.string_value == "a?"
    assert [(a.key, a.value.string_value) for a in record.attributes] == [("k?", "v?")]


def test_the_grpc_exporter_sends_the_encoded_bytes_as_they_are(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """OTLP/gRPC: the batch's bytes go through the SDK exporter's channel without being parsed
    and serialized again, and arrive whole at a real receiver."""
    with OtlpReceiver() as receiver:
        app = make_app(
            "grpc-logs",
            log_stdout=False,
            log_dir=str(tmp_path),
            otlp_logs_endpoint=receiver.endpoint,
        )
        logging.getLogger("grpc_logs.view").warning("over grpc", extra={"n": 8})
        logs = current_state(app).get(OtlpLogs)
        assert logs is not None
        exporter = logs.pipeline.local.current()
        sent = exporter._translate_data(Encoded(b"\x0a\x00", 1))
        assert sent == b"\x0a\x00", "the gRPC exporter lost its raw stub"
        Observe().shutdown(app)
        records = receiver.log_records()
    record = next(r for r in records if r["body"] == "over grpc")
    assert record["scope"] == "grpc_logs.view"
    assert record["attributes"]["n"] == 8
    assert logs.stats()["exported"] >= 1


@pytest.mark.realtime
def test_the_http_exporter_posts_the_encoded_batch_to_v1_logs(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """OTLP/HTTP: the encoded batch goes through the SDK's HTTP exporter, as protobuf on
    <endpoint>/v1/logs of a real HTTP server."""
    received: list[ExportLogsServiceRequest] = []
    collector = Flask("otlp-http-logs-collector")

    @collector.post("/v1/logs")
    def logs() -> tuple[bytes, int, dict[str, str]]:
        received.append(ExportLogsServiceRequest.FromString(request.get_data()))
        return b"", 200, {"Content-Type": "application/x-protobuf"}

    with LiveServer(collector) as server:
        app = make_app(
            "http-logs",
            log_stdout=False,
            log_dir=str(tmp_path),
            otlp_logs_exporter="otlp-http",
            otlp_logs_endpoint=server.url,
        )
        logging.getLogger("http_logs.view").warning("over http", extra={"n": 7})
        logs = current_state(app).get(OtlpLogs)
        assert logs is not None
        exporter = logs.pipeline.local.current()
        assert getattr(exporter, "takes_encoded", False), "the HTTP exporter lost its hook"
        Observe().shutdown(app)
        assert wait_for(lambda: received, 10)
    records = [
        (s.scope.name, r)
        for m in received
        for rl in m.resource_logs
        for s in rl.scope_logs
        for r in s.log_records
    ]
    scope, record = next((s, r) for s, r in records if r.body.string_value == "over http")
    assert scope == "http_logs.view"
    assert record.severity_text == "WARN"
    assert record.severity_number == 13
    assert {a.key: a.value.int_value for a in record.attributes}["n"] == 7


def test_the_console_exporter_gets_the_sdks_records(
    make_app: Callable[..., Flask], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An exporter that cannot take an encoded batch gets the SDK's own records (JSON on
    stderr for the console exporter)."""
    app = make_app(
        "console-logs", log_stdout=False, log_dir=str(tmp_path), otlp_logs_exporter="console"
    )
    logging.getLogger("console_logs").warning("to the console", extra={"k": "v"})
    Observe().shutdown(app)
    err = capfd.readouterr().err
    assert '"body": "to the console"' in err
    assert '"k": "v"' in err


def test_http_exporter_refuses_an_encoded_batch_over_the_size_limit() -> None:
    """The HTTP fast path keeps the SDK's request-size bound: an encoded batch over the limit
    is reported failed and never reaches the receiver; one at the limit is POSTed as it is."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.sdk._logs.export import LogRecordExportResult

    from flask_observe.otlp.encoding import Encoded
    from flask_observe.otlp.exporters import MAX_REQUEST_BYTES, _http_log_exporter

    assert MAX_REQUEST_BYTES == 64 * 1024 * 1024
    bodies: list[bytes] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/logs"
        exporter = _http_log_exporter()(endpoint=endpoint, timeout=5)
        assert exporter.takes_encoded, "this SDK's client cannot send an encoded batch"
        exporter.max_request_bytes = 100
        assert exporter.export(Encoded(b"x" * 101, 1)) is LogRecordExportResult.FAILURE
        assert bodies == []
        assert exporter.export(Encoded(b"x" * 100, 1)) is LogRecordExportResult.SUCCESS
        assert bodies == [b"x" * 100]
        exporter.shutdown()
    finally:
        server.shutdown()
        server.server_close()
