"""Spans recorded as plain data and handed, finished, to the SDK's span pipeline.

The call's trace (`telemetry.call_spans`) opens ~7 spans and ~10 events a call, all on the event
loop. Through the SDK's `Tracer.start_span` each span costs ~35 µs from start to end on our
2-core machine (a sampler call, attribute validation, a lock, a `ReadableSpan` copy at the end),
which made tracing cost 15% of the app's CPU per call (bench/README.md, "Tracing"). Here a span
is a few fields until it ends, then one `ReadableSpan`, the SDK's own type, goes to the same
span processor `start_span` would have used: batching, redaction and the OTLP exporter are
unchanged, and so is what Jaeger shows.

What the SDK `Span` did that this keeps: the tracer provider's sampler decides once per call,
on the root (one trace per call, kept or dropped whole); ids come from the provider's id
generator; the resource and the processors are the provider's. What it leaves out, on purpose:
processors' `on_start` (ours batch at `on_end`), attribute validation (`call_spans` passes only
str / bool / int / float), and the SDK's span metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, Tracer
from opentelemetry.util.types import AttributeValue

from telemetry.conventions import SPAN_DROPPED_EVENTS

MAX_EVENTS = 128  # the SDK's default event limit; the first ones (how an action began) are kept
SCOPE = InstrumentationScope("telemetry.call_spans")
_UNSET = Status(StatusCode.UNSET)


class SpanBuilder:
    """Opens spans for one tracer provider (through one of its SDK tracers)."""

    def __init__(self, tracer: Tracer) -> None:
        if not isinstance(tracer, SdkTracer):  # OTEL_SDK_DISABLED, or not an SDK provider
            raise TypeError(f"an SDK tracer is needed, not {type(tracer).__name__}")
        self._sampler = tracer.sampler
        self._ids = tracer.id_generator
        self._resource = tracer.resource
        self._processor: SpanProcessor = tracer.span_processor

    def root(
        self, name: str, *, kind: SpanKind, attributes: dict[str, AttributeValue], start_ns: int
    ) -> OpenSpan:
        """A new trace; sampled out, its spans are recorded nowhere but still carry ids."""
        trace_id = self._ids.generate_trace_id()
        decision = self._sampler.should_sample(None, trace_id, name, kind, attributes)
        sampled = decision.decision is Decision.RECORD_AND_SAMPLE
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        context = SpanContext(trace_id, self._ids.generate_span_id(), False, flags, decision.trace_state)
        if decision.attributes:
            attributes = {**attributes, **decision.attributes}
        recording = decision.decision is not Decision.DROP
        return OpenSpan(self, name, context, None, kind, attributes, start_ns, recording)

    def child(
        self,
        parent: OpenSpan,
        name: str,
        *,
        attributes: dict[str, AttributeValue],
        start_ns: int,
        kind: SpanKind = SpanKind.INTERNAL,
        links: Sequence[Link] = (),
    ) -> OpenSpan:
        p = parent.context
        context = SpanContext(p.trace_id, self._ids.generate_span_id(), False, p.trace_flags, p.trace_state)
        return OpenSpan(self, name, context, p, kind, attributes, start_ns, parent.recording, links)

    def finish(self, span: OpenSpan, end_ns: int) -> None:
        """One finished `ReadableSpan` for `span`, to the provider's processors."""
        if span.dropped_events:
            span.attributes[SPAN_DROPPED_EVENTS] = span.dropped_events
        self._processor.on_end(
            ReadableSpan(
                name=span.name,
                context=span.context,
                parent=span.parent,
                resource=self._resource,
                attributes=span.attributes,
                events=span.events,
                links=span.links,
                kind=span.kind,
                status=span.status,
                start_time=span.start_ns,
                end_time=end_ns,
                instrumentation_scope=SCOPE,
            )
        )


class OpenSpan:
    """A span being recorded. The same few methods as the SDK's `Span` that `call_spans` uses."""

    __slots__ = (
        "_builder",
        "attributes",
        "context",
        "dropped_events",
        "ended",
        "events",
        "kind",
        "links",
        "name",
        "parent",
        "recording",
        "start_ns",
        "status",
    )

    def __init__(
        self,
        builder: SpanBuilder,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        start_ns: int,
        recording: bool,
        links: Sequence[Link] = (),
    ) -> None:
        self._builder = builder
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.attributes = attributes
        self.start_ns = start_ns
        self.recording = recording
        self.events: list[Event] = []
        self.links = list(links)
        self.status = _UNSET
        self.dropped_events = 0
        self.ended = False

    def get_span_context(self) -> SpanContext:
        return self.context

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        self.attributes.update(attributes)

    def add_event(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None, *, timestamp: int
    ) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append(Event(name, attributes or {}, timestamp))
        else:
            self.dropped_events += 1

    def add_link(self, context: SpanContext, attributes: Mapping[str, AttributeValue]) -> None:
        self.links.append(Link(context, attributes))

    def set_status(self, status: Status) -> None:
        self.status = status

    def end(self, *, end_time: int) -> None:
        if self.ended:
            return
        self.ended = True
        if self.recording:
            self._builder.finish(self, end_time)
