"""OTLP protobuf for a batch of spans, written straight to bytes.

The SDK's encoder (`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`)
builds a protobuf object per span, event, attribute and value, and hashes the resource (a JSON
dump of its attributes) per span: ~37 µs a span on our 2-core machine. Exporting took more CPU
than recording the spans, and while the exporter's thread encoded, the event loop's thread lost
as much again waiting for the GIL (bench/README.md, "Tracing"). This writes the same message,
field by field, in a few µs a span; tests/telemetry/test_otlp_encoding.py checks it against the
SDK's encoder, message for message.

It covers what spans hold (string, bool, int and float attributes, and homogeneous sequences of
them); a batch with anything else is left to the SDK's encoder (`None`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

# opentelemetry.proto.trace.v1.Span.SpanFlags
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")
_KV_CACHE_LIMIT = 4096  # (key, value) pairs whose encoding is kept; call attributes repeat a lot


class Unencodable(Exception):
    """A value this encoder does not cover: the batch goes to the SDK's encoder."""


_SMALL = tuple(bytes((n,)) for n in range(128))  # one-byte varints


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64 on the wire: two's complement, 10 bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _len_field(field_tag: bytes, payload: bytes) -> bytes:
    size = len(payload)
    return field_tag + (_SMALL[size] if size < 128 else _varint(size)) + payload


# Field tags, by message (opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto).
_REQUEST_RESOURCE_SPANS = _tag(1, 2)
_RESOURCE_SPANS_RESOURCE, _RESOURCE_SPANS_SCOPE_SPANS, _RESOURCE_SPANS_SCHEMA = (
    _tag(1, 2),
    _tag(2, 2),
    _tag(3, 2),
)
_RESOURCE_ATTRIBUTES = _tag(1, 2)
_SCOPE_SPANS_SCOPE, _SCOPE_SPANS_SPANS, _SCOPE_SPANS_SCHEMA = _tag(1, 2), _tag(2, 2), _tag(3, 2)
_SCOPE_NAME, _SCOPE_VERSION, _SCOPE_ATTRIBUTES = _tag(1, 2), _tag(2, 2), _tag(3, 2)
_SPAN_TRACE_ID, _SPAN_SPAN_ID, _SPAN_TRACE_STATE, _SPAN_PARENT = (
    _tag(1, 2),
    _tag(2, 2),
    _tag(3, 2),
    _tag(4, 2),
)
_SPAN_NAME, _SPAN_KIND, _SPAN_START, _SPAN_END = _tag(5, 2), _tag(6, 0), _tag(7, 1), _tag(8, 1)
_SPAN_ATTRIBUTES, _SPAN_DROPPED_ATTRIBUTES = _tag(9, 2), _tag(10, 0)
_SPAN_EVENTS, _SPAN_DROPPED_EVENTS = _tag(11, 2), _tag(12, 0)
_SPAN_LINKS, _SPAN_DROPPED_LINKS = _tag(13, 2), _tag(14, 0)
_SPAN_STATUS, _SPAN_FLAGS = _tag(15, 2), _tag(16, 5)
_EVENT_TIME, _EVENT_NAME, _EVENT_ATTRIBUTES, _EVENT_DROPPED = _tag(1, 1), _tag(2, 2), _tag(3, 2), _tag(4, 0)
_LINK_TRACE_ID, _LINK_SPAN_ID = _tag(1, 2), _tag(2, 2)
_LINK_ATTRIBUTES, _LINK_DROPPED, _LINK_FLAGS = _tag(4, 2), _tag(5, 0), _tag(6, 5)
_STATUS_MESSAGE, _STATUS_CODE = _tag(2, 2), _tag(3, 0)
_KV_KEY, _KV_VALUE = _tag(1, 2), _tag(2, 2)
_ANY_STRING, _ANY_BOOL, _ANY_INT, _ANY_DOUBLE, _ANY_ARRAY = (
    _tag(1, 2),
    _tag(2, 0),
    _tag(3, 0),
    _tag(4, 1),
    _tag(5, 2),
)
_ARRAY_VALUES = _tag(1, 2)


def _any_value(value: Any) -> bytes:
    if isinstance(value, bool):  # a oneof member: written even when false
        return _ANY_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _len_field(_ANY_STRING, value.encode())
    if isinstance(value, int):
        return _ANY_INT + _varint(value)
    if isinstance(value, float):
        return _ANY_DOUBLE + _DOUBLE.pack(value)
    if isinstance(value, (list, tuple)):
        values = b"".join(_len_field(_ARRAY_VALUES, _any_value(v)) for v in value)
        return _len_field(_ANY_ARRAY, values)
    raise Unencodable(type(value).__name__)


class _Encoder:
    def __init__(self) -> None:
        self._kv: dict[tuple[bytes, str, type, Any], bytes] = {}

    def key_value(self, field_tag: bytes, key: str, value: Any) -> bytes:
        cacheable = not isinstance(value, (list, tuple))
        token = (field_tag, key, type(value), value) if cacheable else None
        if token is not None and (hit := self._kv.get(token)) is not None:
            return hit
        payload = (_len_field(_KV_KEY, key.encode()) if key else b"") + _len_field(
            _KV_VALUE, _any_value(value)
        )
        encoded = _len_field(field_tag, payload)
        if token is not None:
            if len(self._kv) >= _KV_CACHE_LIMIT:
                self._kv.clear()
            self._kv[token] = encoded
        return encoded

    def attributes(self, field_tag: bytes, attributes: Any) -> bytes:
        if not attributes:
            return b""
        return b"".join(self.key_value(field_tag, key, value) for key, value in attributes.items())

    def span(self, span: ReadableSpan) -> bytes:
        context = span.context
        assert context is not None
        parts = [
            _len_field(_SPAN_TRACE_ID, context.trace_id.to_bytes(16, "big")),
            _len_field(_SPAN_SPAN_ID, context.span_id.to_bytes(8, "big")),
        ]
        if context.trace_state:
            parts.append(_len_field(_SPAN_TRACE_STATE, _trace_state(context).encode()))
        if span.parent is not None:
            parts.append(_len_field(_SPAN_PARENT, span.parent.span_id.to_bytes(8, "big")))
        if span.name:
            parts.append(_len_field(_SPAN_NAME, span.name.encode()))
        parts.append(_SPAN_KIND + _varint(span.kind.value + 1))  # SDK INTERNAL = 0, OTLP = 1
        if span.start_time:
            parts.append(_SPAN_START + _FIXED64.pack(span.start_time))
        if span.end_time:
            parts.append(_SPAN_END + _FIXED64.pack(span.end_time))
        parts.append(self.attributes(_SPAN_ATTRIBUTES, span.attributes))
        if span.dropped_attributes:
            parts.append(_SPAN_DROPPED_ATTRIBUTES + _varint(span.dropped_attributes))
        for event in span.events:
            body = _EVENT_TIME + _FIXED64.pack(event.timestamp) if event.timestamp else b""
            if event.name:
                body += _len_field(_EVENT_NAME, event.name.encode())
            body += self.attributes(_EVENT_ATTRIBUTES, event.attributes)
            if event.dropped_attributes:
                body += _EVENT_DROPPED + _varint(event.dropped_attributes)
            parts.append(_len_field(_SPAN_EVENTS, body))
        if span.dropped_events:
            parts.append(_SPAN_DROPPED_EVENTS + _varint(span.dropped_events))
        for link in span.links:
            body = _len_field(_LINK_TRACE_ID, link.context.trace_id.to_bytes(16, "big"))
            body += _len_field(_LINK_SPAN_ID, link.context.span_id.to_bytes(8, "big"))
            # (the SDK's encoder leaves a link's trace_state out; so does this)
            body += self.attributes(_LINK_ATTRIBUTES, link.attributes)
            if link.dropped_attributes:
                body += _LINK_DROPPED + _varint(link.dropped_attributes)
            body += _LINK_FLAGS + _FIXED32.pack(_flags(link.context))
            parts.append(_len_field(_SPAN_LINKS, body))
        if span.dropped_links:
            parts.append(_SPAN_DROPPED_LINKS + _varint(span.dropped_links))
        status = b""
        if span.status.description:
            status += _len_field(_STATUS_MESSAGE, span.status.description.encode())
        if span.status.status_code.value:
            status += _STATUS_CODE + _varint(span.status.status_code.value)
        parts.append(_len_field(_SPAN_STATUS, status))
        parts.append(_SPAN_FLAGS + _FIXED32.pack(_flags(span.parent)))
        return _len_field(_SCOPE_SPANS_SPANS, b"".join(parts))

    def resource(self, resource: Resource) -> bytes:
        return _len_field(
            _RESOURCE_SPANS_RESOURCE, self.attributes(_RESOURCE_ATTRIBUTES, resource.attributes)
        )

    def scope(self, scope: InstrumentationScope | None) -> bytes:
        if scope is None:
            return _len_field(_SCOPE_SPANS_SCOPE, b"")
        body = _len_field(_SCOPE_NAME, scope.name.encode()) if scope.name else b""
        if scope.version:
            body += _len_field(_SCOPE_VERSION, scope.version.encode())
        body += self.attributes(_SCOPE_ATTRIBUTES, scope.attributes)
        return _len_field(_SCOPE_SPANS_SCOPE, body)


def _flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)


def _trace_state(context: SpanContext) -> str:
    return ",".join(f"{key}={value}" for key, value in context.trace_state.items())


class OtlpSpanEncoder:
    """Encodes export batches; keeps a small cache of attribute encodings between batches.
    One per exporter (the batch processor calls `export` from one thread)."""

    def __init__(self) -> None:
        self._encoder = _Encoder()

    def encode(self, spans: Sequence[ReadableSpan]) -> bytes | None:
        """An `ExportTraceServiceRequest`, or None when a span holds a value this does not cover."""
        try:
            return self._encode(spans)
        except Unencodable:
            return None

    def _encode(self, spans: Sequence[ReadableSpan]) -> bytes:
        e = self._encoder
        # Resource, then scope, then spans, in first-seen order, as the SDK's encoder groups them;
        # by identity, not equality (a Resource hashes by dumping its attributes to JSON, and a
        # provider's spans share one Resource object).
        groups: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]] = {}
        for span in spans:
            _, scopes = groups.setdefault(id(span.resource), (span.resource, {}))
            scope = span.instrumentation_scope
            scopes.setdefault(id(scope), (scope, []))[1].append(e.span(span))
        out = []
        for resource, scopes in groups.values():
            body = e.resource(resource)
            for scope, encoded in scopes.values():
                scope_spans = e.scope(scope) + b"".join(encoded)
                if scope is not None and scope.schema_url:
                    scope_spans += _len_field(_SCOPE_SPANS_SCHEMA, scope.schema_url.encode())
                body += _len_field(_RESOURCE_SPANS_SCOPE_SPANS, scope_spans)
            if resource.schema_url:
                body += _len_field(_RESOURCE_SPANS_SCHEMA, resource.schema_url.encode())
            out.append(_len_field(_REQUEST_RESOURCE_SPANS, body))
        return b"".join(out)
