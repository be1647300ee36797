"""Spans to a file as OTLP/JSON lines, and back, for the lab (`simulate --spans-json FILE`).

Each line of the file is one export batch: an `ExportTraceServiceRequest` in the OTLP/JSON
encoding (the shape an OpenTelemetry Collector's file exporter writes and its `otlpjsonfile`
receiver reads): lowerCamelCase fields, trace and span ids in hex, enums as integers, 64-bit
integers as decimal strings. `read_spans_json` flattens a file into one plain dict per span.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

JsonObject = dict[str, Any]


def spans_to_otlp_json(spans: Sequence[ReadableSpan]) -> JsonObject:
    """One `ExportTraceServiceRequest` for `spans`, OTLP/JSON-encoded."""
    data: JsonObject = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for span in _spans_of(data):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = _hex(span[key])
        for link in span.get("links", []):
            for key in ("traceId", "spanId"):
                if key in link:
                    link[key] = _hex(link[key])
    return data


def _hex(b64: str) -> str:
    return base64.b64decode(b64).hex()


def _spans_of(request: JsonObject) -> Iterator[JsonObject]:
    for resource_spans in request.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            yield from scope_spans.get("spans", [])


class JsonLinesSpanExporter(SpanExporter):
    """Appends each batch as one OTLP/JSON line to a file, truncated when the exporter opens."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file = self.path.open("w", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        line = json.dumps(spans_to_otlp_json(spans), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.write(line + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is written and flushed before it returns

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def read_spans_json(path: str | os.PathLike[str]) -> list[JsonObject]:
    """Every span in an OTLP/JSON lines file, flattened:

    `{"trace_id", "span_id", "parent_span_id" (None for a root), "name", "kind" (OTLP enum:
    1 internal, 2 server, 3 client), "start_time_unix_nano", "end_time_unix_nano",
    "attributes", "events": [{"name", "time_unix_nano", "attributes"}],
    "links": [{"trace_id", "span_id", "attributes"}], "status": {"code", "message"},
    "resource" (attributes), "scope" (instrumentation scope name)}`.
    """
    spans: list[JsonObject] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            spans.extend(flatten_request(json.loads(line)))
    return spans


def flatten_request(request: JsonObject) -> list[JsonObject]:
    """The spans of one OTLP/JSON `ExportTraceServiceRequest` as flat dicts (see above)."""
    flat: list[JsonObject] = []
    for resource_spans in request.get("resourceSpans", []):
        resource = _attributes(resource_spans.get("resource", {}).get("attributes", []))
        for scope_spans in resource_spans.get("scopeSpans", []):
            scope = scope_spans.get("scope", {}).get("name", "")
            for span in scope_spans.get("spans", []):
                flat.append(
                    {
                        "trace_id": span["traceId"],
                        "span_id": span["spanId"],
                        "parent_span_id": span.get("parentSpanId") or None,
                        "name": span["name"],
                        "kind": int(span.get("kind", 0)),
                        "start_time_unix_nano": int(span.get("startTimeUnixNano", 0)),
                        "end_time_unix_nano": int(span.get("endTimeUnixNano", 0)),
                        "attributes": _attributes(span.get("attributes", [])),
                        "events": [
                            {
                                "name": event.get("name", ""),
                                "time_unix_nano": int(event.get("timeUnixNano", 0)),
                                "attributes": _attributes(event.get("attributes", [])),
                            }
                            for event in span.get("events", [])
                        ],
                        "links": [
                            {
                                "trace_id": link["traceId"],
                                "span_id": link["spanId"],
                                "attributes": _attributes(link.get("attributes", [])),
                            }
                            for link in span.get("links", [])
                        ],
                        "status": {
                            "code": int(span.get("status", {}).get("code", 0)),
                            "message": span.get("status", {}).get("message", ""),
                        },
                        "resource": resource,
                        "scope": scope,
                    }
                )
    return flat


def _attributes(pairs: list[JsonObject]) -> JsonObject:
    return {pair["key"]: _value(pair.get("value", {})) for pair in pairs}


def _value(any_value: JsonObject) -> Any:
    if "stringValue" in any_value:
        return any_value["stringValue"]
    if "boolValue" in any_value:
        return bool(any_value["boolValue"])
    if "intValue" in any_value:
        return int(any_value["intValue"])
    if "doubleValue" in any_value:
        return float(any_value["doubleValue"])
    if "arrayValue" in any_value:
        return [_value(v) for v in any_value["arrayValue"].get("values", [])]
    if "kvlistValue" in any_value:
        return _attributes(any_value["kvlistValue"].get("values", []))
    if "bytesValue" in any_value:
        return base64.b64decode(any_value["bytesValue"])
    return None
