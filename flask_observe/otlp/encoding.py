"""Log lines straight into OTLP's protobuf wire format, on the export thread.

The SDK's way to the same bytes makes a ``LogRecord`` per line, wraps it in a
``ReadableLogRecord``, and its encoder (``encode_logs``) turns each into protobuf messages one
Python call per attribute, hashing the resource (a JSON dump of it) once per record: 31-38 µs
a line here. Filling ``opentelemetry-proto``'s generated messages directly took 4.5-7 µs;
writing the records' fields in the wire format, with repeated values kept encoded, takes
2.9-4 µs (measured on the benchmark app's two lines). The result is the request the SDK would
send (tests/test_otlp_encoding.py parses it with ``opentelemetry-proto`` and compares it with
the SDK's, field for field), handed to the SDK's own exporter, which keeps its transport,
headers, TLS, compression, timeout and retries.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

__all__ = ["Encoded", "Line", "LineEncoder", "attribute", "severity_of"]

#: One queued line: (``created`` seconds, ``levelno``, logger name, the JSON line's fields).
Line = tuple[float, int, str, Mapping[str, Any]]

_INT64 = 1 << 63
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def _severity_number(levelno: int) -> int:
    """The OpenTelemetry severity number of a stdlib level: DEBUG 5, INFO 9, WARNING 13,
    ERROR 17, CRITICAL 21, and the levels between on the same scale."""
    return min(24, max(1, (levelno - 10) * 4 // 10 + 5))


_SEVERITIES: dict[int, tuple[str, int]] = {}


def severity_of(levelno: int, level: str = "") -> tuple[str, int]:
    """``(severity_text, severity_number)`` of a stdlib level (``level``: the line's own
    level name, used when the level has no name)."""
    known = _SEVERITIES.get(levelno)
    if known is None:
        name = logging.getLevelName(levelno)
        text = _SEVERITY_TEXT.get(name, name) if isinstance(name, str) else level
        known = (text, _severity_number(levelno))
        if len(_SEVERITIES) < 64:
            _SEVERITIES[levelno] = known
    return known


def attribute(value: Any) -> Any:
    """``value`` as an OTLP attribute value: text, booleans, 64-bit integers, floats and lists
    of one of those as they are (of their exact type); anything else as its JSON (or its
    ``str``)."""
    kind = type(value)
    if kind is str or kind is bool or kind is float:
        return value
    if kind is int:
        return value if -_INT64 <= value < _INT64 else str(value)
    # Subclasses (an IntEnum such as HTTPStatus, numpy's float64, a StrEnum) as the plain
    # value: the encoder goes by exact types.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return attribute(int(value))
    if isinstance(value, (list, tuple)) and value:
        kind = type(value[0])
        if kind in (str, bool, float, int) and all(type(v) is kind for v in value):
            return list(value) if kind is not int else [attribute(v) for v in value]
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


def _set_value(target: Any, value: Any) -> None:
    """Fill the ``AnyValue`` ``target`` with ``value`` (one of :func:`attribute`'s results)."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is bool:
        target.bool_value = value
    elif kind is int:
        target.int_value = value
    elif kind is float:
        target.double_value = value
    else:  # a list of one kind
        add = target.array_value.values.add
        for item in value:
            _set_value(add(), item)


class Encoded:
    """A batch already encoded (``data``, a serialized ``ExportLogsServiceRequest``): what
    the SDK's exporter sends as it is."""

    __slots__ = ("count", "data")

    def __init__(self, data: bytes, count: int) -> None:
        self.data = data
        self.count = count

    @property
    def request(self) -> ExportLogsServiceRequest:
        """The same request as ``opentelemetry-proto``'s message."""
        request: ExportLogsServiceRequest = ExportLogsServiceRequest.FromString(self.data)
        return request

    def __len__(self) -> int:
        return self.count


class LineEncoder:
    """Lines of the logs pipeline as one ``ExportLogsServiceRequest``, in protobuf's wire
    format: the resource once, a scope per logger name, a record per line with the mapping of
    docs/otlp.md.

    The resource and scope headers are made by ``opentelemetry-proto``'s own messages, once;
    the records are written here, field by field (``opentelemetry/proto/logs/v1/logs.proto``,
    ``common/v1/common.proto``), because filling the generated messages from Python cost
    4.5-7 µs a line, most of the export thread's time. An attribute whose value repeats
    (a route, a method, a status) is encoded once and kept (at most :data:`MAX_CACHED` per
    key, :data:`MAX_KEYS` keys); a key whose values keep changing (a correlation ID) is no
    longer kept.

    :param identity: fields on the resource, so not repeated on each record.
    """

    #: Fields that are not attributes: the body, the record's own IDs, its time and level,
    #: the scope (``logger``), and those renamed to the conventions' names (last, as the
    #: SDK's records have them).
    _SPECIAL = (
        "message",
        "trace_id",
        "span_id",
        "timestamp",
        "level",
        "logger",
        "exception",
        "exc_type",
    )

    def __init__(self, resource: Resource, identity: Iterable[str]) -> None:
        pb = PbResource()
        for key, value in resource.attributes.items():
            _set_value(pb.attributes.add(key=key).value, attribute(value))
        # ResourceLogs.resource (1) and schema_url (3); the scopes follow.
        head = _field(b"\x0a", pb.SerializeToString())
        if resource.schema_url:
            head += _field(b"\x1a", _utf8(resource.schema_url))
        self._resource_head = head
        self._skip = frozenset((*self._SPECIAL, *identity))
        self._scopes: dict[str, bytes] = {}
        self._levels: dict[int, bytes] = {}
        self._bodies: dict[str, bytes] = {}
        self._cache: dict[tuple[str, Any], bytes] = {}
        self._per_key: dict[str, int] = {}
        self._last: dict[str, tuple[str, bytes]] = {}
        self._keys: dict[str, bytes] = {}
        #: Per key, a float attribute's KeyValue but for the value's 8 bytes.
        self._doubles: dict[str, bytes] = {}

    def encode(self, lines: Sequence[Line]) -> ExportLogsServiceRequest:
        """The request of ``lines`` (the message of ``opentelemetry-proto``)."""
        return Encoded(self.encode_bytes(lines), len(lines)).request

    def encode_bytes(self, lines: Sequence[Line]) -> bytes:
        """The serialized ``ExportLogsServiceRequest`` of ``lines``."""
        by_scope: dict[str, list[bytes]] = {}
        observed = b"\x59" + _FIXED64(time.time_ns())
        skip, cache, levels, bodies = self._skip, self._cache, self._levels, self._bodies
        lasts, doubles = self._last, self._doubles
        for created, levelno, name, fields in lines:
            level = levels.get(levelno)
            if level is None:
                level = levels[levelno] = _severity(*severity_of(levelno))
            body = fields.get("message", "")
            encoded_body = bodies.get(body) if type(body) is str else None
            if encoded_body is None:
                encoded_body = _field(b"\x2a", _field(b"\x0a", _utf8(body)))
                if type(body) is str and len(bodies) < MAX_BODIES:
                    bodies[body] = encoded_body
            parts = [b"\x09" + _FIXED64(int(created * 1e9)), observed, level, encoded_body]
            trace_id, span_id = fields.get("trace_id"), fields.get("span_id")
            if type(trace_id) is str and type(span_id) is str:
                try:
                    trace, span = bytes.fromhex(trace_id), bytes.fromhex(span_id)
                except ValueError:
                    trace = span = b""
                if len(trace) == 16 and len(span) == 8:
                    # trace_id (9), span_id (10), flags (8): sampled.
                    parts.append(b"\x4a\x10" + trace + b"\x52\x08" + span + b"\x45\x01\0\0\0")
            for key, value in fields.items():
                if key in skip or value is None:
                    continue
                kind = type(value)
                if kind is str or kind is int:
                    # Only text and integers are kept (1.0 == 1 == True: not under one key).
                    found = cache.get((key, value))
                    if found is None:
                        last = lasts.get(key)
                        found = (
                            last[1]
                            if last is not None and last[0] == value
                            else self._attribute(key, value)
                        )
                elif kind is float:  # a duration, say: its KeyValue up to the 8 bytes, kept
                    head = doubles.get(key)
                    found = self._attribute(key, value) if head is None else head + _DOUBLE(value)
                else:
                    found = self._attribute(key, value)
                parts.append(found)
            stack, exc_type = fields.get("exception"), fields.get("exc_type")
            if stack is not None:
                parts.append(_keyvalue("exception.stacktrace", attribute(stack)))
            if exc_type is not None:
                parts.append(_keyvalue("exception.type", attribute(exc_type)))
            scope = by_scope.get(name)
            if scope is None:
                scope = by_scope[name] = []
            record = b"".join(parts)
            scope.append(b"\x12" + _varint(len(record)) + record)  # ScopeLogs.log_records (2)
        scopes = [
            _field(b"\x12", self._scope_head(name) + b"".join(records))  # ResourceLogs (2)
            for name, records in by_scope.items()
        ]
        return _field(b"\x0a", self._resource_head + b"".join(scopes))

    def _scope_head(self, name: str) -> bytes:
        """ScopeLogs.scope (1) of ``name``."""
        head = self._scopes.get(name)
        if head is None:
            head = _field(b"\x0a", _field(b"\x0a", _utf8(name)))
            if len(self._scopes) < MAX_KEYS:
                self._scopes[name] = head
        return head

    def _attribute(self, key: str, value: Any) -> bytes:
        """LogRecord.attributes (6): one KeyValue, kept when its value may repeat; for a key
        whose values keep changing, the last text value is kept (the lines of one request,
        next to each other in a batch, share its correlation ID)."""
        kind = type(value)
        if kind is str:
            last = self._last.get(key)
            if last is not None and last[0] == value:
                return last[1]
        head = self._keys.get(key)
        if head is None:
            head = _field(b"\x0a", _utf8(key))  # KeyValue.key (1)
            if len(self._keys) < MAX_KEYS:
                self._keys[key] = head
        out = _field(b"\x32", head + _field(b"\x12", _any_value(attribute(value))))
        if kind is float:
            if key in self._doubles or len(self._doubles) < MAX_KEYS:
                # KeyValue (6): the key, then value (2) of 9 bytes: AnyValue.double_value (4).
                self._doubles[key] = b"\x32" + _varint(len(head) + 11) + head + b"\x12\x09\x21"
            return out
        if kind is not str and kind is not int:
            return out
        seen = self._per_key.get(key, 0)
        if seen < MAX_CACHED and (seen or len(self._per_key) < MAX_KEYS):
            self._per_key[key] = seen + 1
            self._cache[(key, value)] = out
        elif kind is str and (key in self._last or len(self._last) < MAX_KEYS):
            self._last[key] = (value, out)
        return out


#: Attribute values kept encoded per key, and keys whose values are kept.
MAX_CACHED = 32
MAX_KEYS = 512
#: Bodies (messages) kept encoded.
MAX_BODIES = 1024
_FIXED64 = struct.Struct("<Q").pack
_DOUBLE = struct.Struct("<d").pack
_SMALL = [bytes((n,)) for n in range(128)]
_SEVERITY_BYTES: dict[tuple[str, int], bytes] = {}


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the payload's length, the payload."""
    return tag + _varint(len(payload)) + payload


def _utf8(value: Any) -> bytes:
    text = value if type(value) is str else str(value)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: protobuf strings are UTF-8
        return text.encode("utf-8", "replace")


def _severity(text: str, number: int) -> bytes:
    """LogRecord.severity_number (2) and severity_text (3)."""
    found = _SEVERITY_BYTES.get((text, number))
    if found is None:
        found = b"\x10" + _varint(number) + (_field(b"\x1a", _utf8(text)) if text else b"")
        _SEVERITY_BYTES[(text, number)] = found
    return found


def _any_value(value: Any) -> bytes:
    """An AnyValue of one of :func:`attribute`'s results."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", _utf8(value))
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if kind is float:
        return b"\x21" + _DOUBLE(value)
    # A list of one kind: ArrayValue.values (1) in AnyValue.array_value (5).
    return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))


def _keyvalue(key: str, value: Any) -> bytes:
    return _field(b"\x32", _field(b"\x0a", _utf8(key)) + _field(b"\x12", _any_value(value)))
