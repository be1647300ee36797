"""OTLP trace data decoded, for tests and benchmarks, by one decoder whatever the transport.

Spans arrive as `ExportTraceServiceRequest`s over OTLP/HTTP (protobuf, lab/otlp_receiver.py)
or as OTLP/JSON lines in a file (`python -m lab simulate --spans-json FILE`, written by
telemetry/otlp_json.py). A JSON line is parsed into the same protobuf message the wire carries
(`opentelemetry-proto`, with the hex ids OTLP/JSON uses turned back into bytes), so attribute
values and span fields are decoded in one place: `decode_spans`.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telemetry.otlp_json import recode_span_ids

# HTTP spans are timed by the SDK on the wall clock; the call's own spans on perf_counter, put on
# the wall clock with one offset per call (telemetry.call_spans.EpochClock). Comparing times
# across the two allows for this much drift between the clocks during a test.
CLOCK_SKEW_NS = 2_000_000


def not_after(earlier_ns: int, later_ns: int) -> bool:
    """`earlier_ns <= later_ns`, across the two clocks (see CLOCK_SKEW_NS)."""
    return earlier_ns <= later_ns + CLOCK_SKEW_NS


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as decoded (ids in hex)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int  # OTLP enum: 1 internal, 2 server, 3 client
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    links: list[ReceivedLink]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    resource: dict[str, Any] = field(repr=False)
    scope: str = ""

    def event_names(self) -> list[str]:
        return [event.name for event in self.events]

    def event(self, name: str) -> ReceivedEvent:
        return next(event for event in self.events if event.name == name)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP attributes (spans, events, links, resources, metric points) as a plain dict."""
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def decode_spans(requests: Iterable[ExportTraceServiceRequest]) -> list[ReceivedSpan]:
    """Every span of `requests`, in order."""
    return [
        ReceivedSpan(
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex() or None,
            name=span.name,
            kind=span.kind,
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            attributes=attributes(span.attributes),
            events=[ReceivedEvent(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events],
            links=[
                ReceivedLink(link.trace_id.hex(), link.span_id.hex(), attributes(link.attributes))
                for link in span.links
            ],
            status_code=span.status.code,
            status_message=span.status.message,
            resource=attributes(resource_spans.resource.attributes),
            scope=scope_spans.scope.name,
        )
        for request in requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def _hex_to_base64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode("ascii")


def parse_otlp_json(line: str) -> ExportTraceServiceRequest:
    """One OTLP/JSON `ExportTraceServiceRequest`; unknown fields are ignored, as OTLP asks of receivers."""
    request = json.loads(line)
    recode_span_ids(request, _hex_to_base64)  # protobuf's JSON mapping wants bytes in base64
    message = ExportTraceServiceRequest()
    ParseDict(request, message, ignore_unknown_fields=True)
    return message


def read_spans_json(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every span in an OTLP/JSON lines file, flattened:

    `{"trace_id", "span_id", "parent_span_id" (None for a root), "name", "kind" (OTLP enum:
    1 internal, 2 server, 3 client), "start_time_unix_nano", "end_time_unix_nano",
    "attributes", "events": [{"name", "time_unix_nano", "attributes"}],
    "links": [{"trace_id", "span_id", "attributes"}], "status": {"code", "message"},
    "resource" (attributes), "scope" (instrumentation scope name)}`.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [
        {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "name": span.name,
            "kind": span.kind,
            "start_time_unix_nano": span.start_ns,
            "end_time_unix_nano": span.end_ns,
            "attributes": span.attributes,
            "events": [
                {"name": e.name, "time_unix_nano": e.time_ns, "attributes": e.attributes} for e in span.events
            ],
            "links": [
                {"trace_id": link.trace_id, "span_id": link.span_id, "attributes": link.attributes}
                for link in span.links
            ],
            "status": {"code": span.status_code, "message": span.status_message},
            "resource": span.resource,
            "scope": span.scope,
        }
        for span in decode_spans(parse_otlp_json(line) for line in lines if line.strip())
    ]
