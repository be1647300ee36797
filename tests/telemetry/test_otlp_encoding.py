"""Our OTLP protobuf encoder against the SDK's: byte for byte, over generated spans; and the app's
exporter sending those bytes through the SDK's HTTP client to a real receiver."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from lab.otlp_receiver import OtlpReceiver
from telemetry import OtlpHttpSpanExporter
from telemetry.otlp_encoding import OtlpSpanEncoder

RESOURCE = Resource({"service.name": "vox-line-agent", "service.version": "0.2.0"})
SCOPES = (
    InstrumentationScope("telemetry.call_spans"),
    InstrumentationScope("other", "1.2", attributes={"a": 1}),
)

texts = st.text(max_size=40)
scalars = st.one_of(
    texts,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
)
values = st.one_of(
    scalars,
    st.lists(texts, max_size=3).map(tuple),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
)
attributes = st.dictionaries(texts, values, max_size=6)
ids = st.tuples(st.integers(min_value=1, max_value=2**128 - 1), st.integers(min_value=1, max_value=2**64 - 1))
trace_states = st.sampled_from([TraceState(), TraceState([("vendor", "value"), ("x", "1")])])


@st.composite
def contexts(draw: st.DrawFn, *, remote: bool | None = None) -> SpanContext:
    trace_id, span_id = draw(ids)
    is_remote = draw(st.booleans()) if remote is None else remote
    return SpanContext(
        trace_id, span_id, is_remote, TraceFlags(draw(st.sampled_from([0, 1]))), draw(trace_states)
    )


@st.composite
def spans(draw: st.DrawFn) -> ReadableSpan:
    code = draw(st.sampled_from(list(StatusCode)))
    events = draw(st.lists(st.tuples(texts, attributes, st.integers(0, 2**64 - 1)), max_size=3))
    description = draw(st.one_of(st.none(), texts)) if code is StatusCode.ERROR else None
    return ReadableSpan(
        name=draw(texts),
        context=draw(contexts(remote=False)),
        parent=draw(st.one_of(st.none(), contexts())),
        resource=RESOURCE,
        attributes=draw(attributes),
        events=[Event(name, attrs, at) for name, attrs, at in events],
        links=[Link(c, a) for c, a in draw(st.lists(st.tuples(contexts(), attributes), max_size=2))],
        kind=draw(st.sampled_from(list(SpanKind))),
        status=Status(code, description),
        start_time=draw(st.integers(0, 2**64 - 1)),
        end_time=draw(st.integers(0, 2**64 - 1)),
        instrumentation_scope=draw(st.sampled_from(SCOPES)),
    )


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(spans(), min_size=1, max_size=5))
def test_the_bytes_are_the_sdk_encoders(batch: list[ReadableSpan]) -> None:
    encoder = OtlpSpanEncoder()
    assert encoder.encode(batch) == encode_spans(batch).SerializeToString()
    assert encoder.encode(batch) == encode_spans(batch).SerializeToString()  # from its cache, too


def one_span(**attributes: Any) -> ReadableSpan:
    context = SpanContext(1, 2, False, TraceFlags(1))
    return ReadableSpan("call", context, resource=RESOURCE, attributes=attributes, start_time=1, end_time=2)


def test_a_value_it_does_not_cover_leaves_the_batch_to_the_sdk() -> None:
    assert OtlpSpanEncoder().encode([one_span(raw=b"\x00\x01")]) is None


def test_the_apps_exporter_sends_our_bytes_through_the_sdks_client() -> None:
    batch = [
        one_span(**{"vox.call.id": "c1", "vox.turn.seq": 2}),
        one_span(**{"http.response.status_code": 503}),
    ]
    with OtlpReceiver() as receiver:
        exporter = OtlpHttpSpanExporter(endpoint=receiver.endpoint)
        assert exporter.fast_path  # an SDK whose exporter moved its client fails here, not silently
        assert exporter.export(batch) is SpanExportResult.SUCCESS
        assert exporter.export([one_span(raw=b"\x00")]) is SpanExportResult.SUCCESS  # the SDK's path
        exporter.shutdown()
        first, second = receiver.payloads
    assert first == encode_spans(batch).SerializeToString()
    assert b"raw" in second
