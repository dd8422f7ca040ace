"""Check Kubernetes manifests against real API models, failing on unknown fields.

- Core kinds (``apps/v1`` Deployment, ``v1`` Service, …): deserialized by the ``kubernetes``
  Python client (``ApiClient().deserialize``, which runs its client-side validation: required
  fields, enums), then walked against each model's ``attribute_map``/``openapi_types``: a key
  the model does not have, or a value of the wrong JSON type, is an error. (The client's own
  deserializer ignores unknown keys and converts ``"8000"`` to ``8000``; the API server does
  neither.)
- ``monitoring.coreos.com/v1`` (ServiceMonitor, PodMonitor, PrometheusRule): validated by the
  pydantic models that ``cloudcoil-models-prometheus-operator`` generates from the
  prometheus-operator CRDs' OpenAPI schemas (types, required fields, enums), then walked
  against the models' field aliases the same way.

:func:`check_manifest` takes one parsed document and returns the list of problems (empty:
valid); :func:`assert_valid` raises with all of them; :func:`prometheus_rule` wraps a rule
file's groups into a PrometheusRule to check (the rules command's output, for one).
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Any

_K8S_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "bytes": (str,),
    "date": (str,),
}


def check_manifest(doc: dict[str, Any]) -> list[str]:
    """Problems of one manifest document (``[]`` when it is valid)."""
    api_version = doc.get("apiVersion")
    kind = doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["apiVersion and kind must be strings"]
    if api_version.startswith("monitoring.coreos.com/"):
        return _check_crd(doc, api_version, kind)
    return _check_core(doc, api_version, kind)


def assert_valid(doc: dict[str, Any]) -> None:
    """Raise ``AssertionError`` listing every problem of ``doc``."""
    problems = check_manifest(doc)
    name = doc.get("metadata", {}).get("name")
    assert not problems, f"{doc.get('kind')} {name}:\n  " + "\n  ".join(problems)


# -- core kinds: the kubernetes client's models ---------------------------------------------


def _core_class_name(api_version: str, kind: str) -> str:
    """``apps/v1`` + ``Deployment`` -> ``V1Deployment``; ``autoscaling/v2`` -> ``V2…``."""
    version = api_version.rsplit("/", 1)[-1]
    return version[0].upper() + version[1:] + kind


def _deserialize(client: Any, doc: dict[str, Any], class_name: str) -> Any:
    api = client.ApiClient()
    parameters = inspect.signature(api.deserialize).parameters
    if "response_text" in parameters:  # kubernetes >= 33
        return api.deserialize(json.dumps(doc), class_name, "application/json")

    class Response:  # older clients read ``response.data``
        data = json.dumps(doc)

    return api.deserialize(Response(), class_name)


def _check_core(doc: dict[str, Any], api_version: str, kind: str) -> list[str]:
    import kubernetes.client as client

    class_name = _core_class_name(api_version, kind)
    model = getattr(client, class_name, None)
    if model is None:
        return [f"no model {class_name} in the kubernetes client for {api_version} {kind}"]
    try:
        _deserialize(client, doc, class_name)
    except (ValueError, TypeError) as exc:
        return [f"the kubernetes client rejects it: {exc}"]
    problems: list[str] = []
    _walk_core(client, doc, class_name, "", problems)
    return problems


def _walk_core(client: Any, value: Any, type_name: str, path: str, problems: list[str]) -> None:
    where = path or "<root>"
    if value is None:
        return
    if type_name == "object":  # IntOrString, Quantity, free-form: anything JSON
        return
    if type_name in _K8S_PRIMITIVES:
        allowed = _K8S_PRIMITIVES[type_name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and type_name != "bool"):
            problems.append(f"{where}: {value!r} is not a {type_name}")
        return
    # Type strings: ``List[V1Container]``/``Dict[str, str]`` (kubernetes >= 33),
    # ``list[V1Container]``/``dict(str, str)`` before.
    if match := re.fullmatch(r"[Ll]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _walk_core(client, item, match.group(1), f"{path}[{index}]", problems)
        return
    if match := re.fullmatch(r"(?:Dict\[(\w+), (.+)\]|dict\((\w+), (.+)\))", type_name):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            _walk_core(client, item, match.group(2) or match.group(4), f"{path}.{key}", problems)
        return
    model = getattr(client, type_name)
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a {type_name} mapping, got {type(value).__name__}")
        return
    by_json_key = {json_key: attr for attr, json_key in model.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json_key:
            problems.append(f"{path}.{key}: unknown field of {type_name}".lstrip("."))
            continue
        _walk_core(
            client,
            item,
            model.openapi_types[by_json_key[key]],
            f"{path}.{key}".lstrip("."),
            problems,
        )


# -- monitoring.coreos.com: models generated from the prometheus-operator CRDs --------------


def _check_crd(doc: dict[str, Any], api_version: str, kind: str) -> list[str]:
    import pydantic

    version = api_version.rsplit("/", 1)[-1]
    module = __import__(f"cloudcoil.models.prometheus_operator.{version}", fromlist=[kind])
    model = getattr(module, kind, None)
    if model is None:
        return [f"no model {kind} in cloudcoil.models.prometheus_operator.{version}"]
    try:
        model.model_validate(doc)
    except pydantic.ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        ]
    problems: list[str] = []
    _walk_pydantic(model, doc, "", problems)
    return problems


def _walk_pydantic(annotation: Any, value: Any, path: str, problems: list[str]) -> None:
    import pydantic

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        _walk_pydantic(typing.get_args(annotation)[0], value, path, problems)
        return
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in options if _is_model(a)]
        if value is not None and isinstance(value, dict) and len(models) == 1:
            _walk_pydantic(models[0], value, path, problems)
        elif len(options) == 1:
            _walk_pydantic(options[0], value, path, problems)
        return
    if origin in (list, typing.List):  # noqa: UP006
        (item_type,) = typing.get_args(annotation) or (Any,)
        for index, item in enumerate(value or []):
            _walk_pydantic(item_type, item, f"{path}[{index}]", problems)
        return
    if origin in (dict, typing.Dict):  # noqa: UP006
        args = typing.get_args(annotation)
        for key, item in (value or {}).items():
            _walk_pydantic(args[1] if args else Any, item, f"{path}.{key}", problems)
        return
    if not _is_model(annotation) or not isinstance(value, dict):
        return
    if issubclass(annotation, pydantic.RootModel):
        _walk_pydantic(annotation.model_fields["root"].annotation, value, path, problems)
        return
    fields = {(field.alias or name): field for name, field in annotation.model_fields.items()}
    for key, item in value.items():
        where = f"{path}.{key}".lstrip(".")
        if key not in fields:
            problems.append(f"{where}: unknown field of {annotation.__name__}")
            continue
        _walk_pydantic(fields[key].annotation, item, where, problems)


def _is_model(annotation: Any) -> bool:
    import pydantic

    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def prometheus_rule(
    groups: dict[str, Any] | list[dict[str, Any]], name: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A ``monitoring.coreos.com/v1`` PrometheusRule holding ``groups`` (a rule file's parsed
    content, ``{"groups": [...]}``, or the list itself), for :func:`assert_valid`."""
    group_list = groups["groups"] if isinstance(groups, dict) else groups
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": group_list},
    }
