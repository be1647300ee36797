"""Spans to a file as OTLP/JSON lines, for the lab (`simulate --spans-json FILE`).

Each line of the file is one export batch: an `ExportTraceServiceRequest` in the OTLP/JSON
encoding (the shape an OpenTelemetry Collector's file exporter writes and its `otlpjsonfile`
receiver reads): lowerCamelCase fields, trace and span ids in hex, enums as integers, 64-bit
integers as decimal strings. The lab reads such files back with `lab.otlp_decode.read_spans_json`.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Sequence
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
    recode_span_ids(data, _base64_to_hex)  # protobuf's JSON mapping writes bytes in base64
    return data


def recode_span_ids(request: JsonObject, recode: Callable[[str], str]) -> None:
    """Rewrites, in place, every trace and span id of a JSON `ExportTraceServiceRequest`."""
    for resource_spans in request.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for holder in (span, *span.get("links", [])):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in holder:
                            holder[key] = recode(holder[key])


def _base64_to_hex(b64: str) -> str:
    return base64.b64decode(b64).hex()


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
