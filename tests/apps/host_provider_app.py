"""The host installs its own TracerProvider before ``Observe(app)``; run in a subprocess
(the global provider can be set once per process). Prints one JSON line with what the host's
own exporter received."""

from __future__ import annotations

import contextlib
import json

import requests
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flask_observe import Observe
from flask_observe.state import current_state
from flask_observe.tracing.handle import TracingSetup

exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "host-named"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

app = Flask("host-provider-app")
app.config.update(OBSERVE_LOG_STDOUT=False, OBSERVE_TRACING_ENABLED=True)
Observe(app)


@app.get("/call")
def call() -> str:
    with contextlib.suppress(requests.RequestException):
        requests.get("http://127.0.0.1:9/", timeout=0.5)
    return "ok"


app.test_client().get("/call", headers={"X-Request-ID": "host-rid"})
state = current_state(app)
print(
    json.dumps(
        {
            "same_provider": state.get(TracingSetup) is not None
            and state.get(TracingSetup).provider is provider,
            "global_is_host": trace.get_tracer_provider() is provider,
            "spans": [
                {
                    "name": s.name,
                    "kind": s.kind.name,
                    "service": s.resource.attributes.get("service.name"),
                    "correlation_id": (s.attributes or {}).get("correlation_id"),
                }
                for s in exporter.get_finished_spans()
            ],
        }
    )
)
