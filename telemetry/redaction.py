"""Keeping secrets and personal data out of traces.

The control URL's path is a bearer secret (docs/control-contract.md). Spans carry the control
host and a short fingerprint instead (`CallInfo`), the POST spans' `url.full` is built from the
URL's origin (`telemetry.call_spans`), and every exporter built by `telemetry.setup` sits behind
`RedactingSpanExporter`, the last gate: whatever an exception message or a future
instrumentation puts in a span, no URL leaves the process with more than its origin.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status
from opentelemetry.util.types import Attributes, AttributeValue

from agent.control_url import REDACTED, redact_url

__all__ = ["REDACTED", "RedactingSpanExporter", "mask_party", "redact_url"]


def mask_party(value: str, keep: int = 2) -> str:
    """A phone number or SIP address with all but its last `keep` characters masked
    ("+15550000001" → "+*********01"); a leading "+" is kept so numbers still read as numbers."""
    if not value:
        return value
    sign = "+" if value.startswith("+") else ""
    body = value[len(sign) :]
    shown = body[-keep:] if keep > 0 and len(body) > keep else ""
    return sign + "*" * (len(body) - len(shown)) + shown


def _scrub_value(value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
        return [redact_url(v) if isinstance(v, str) else v for v in value]
    return value


def _scrub_attributes(attributes: Attributes) -> Attributes | None:
    """Scrubbed attributes, or None when nothing needed scrubbing."""
    if not attributes:
        return None
    scrubbed = {key: _scrub_value(value) for key, value in attributes.items()}
    if all(scrubbed[key] == value for key, value in attributes.items()):
        return None
    return scrubbed


class _ScrubbedSpan(ReadableSpan):
    """A finished span with scrubbed text; drop counts are the original's."""

    def __init__(
        self,
        original: ReadableSpan,
        name: str,
        attributes: Attributes,
        events: Sequence[Event],
        links: Sequence[Link],
        status: Status,
    ) -> None:
        super().__init__(
            name=name,
            context=original.context,
            parent=original.parent,
            resource=original.resource,
            attributes=attributes,
            events=events,
            links=links,
            kind=original.kind,
            status=status,
            start_time=original.start_time,
            end_time=original.end_time,
            instrumentation_scope=original.instrumentation_scope,
        )
        self._original = original

    @property
    def dropped_attributes(self) -> int:
        return self._original.dropped_attributes

    @property
    def dropped_events(self) -> int:
        return self._original.dropped_events

    @property
    def dropped_links(self) -> int:
        return self._original.dropped_links


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """`span` with every URL in its name, attributes, events, links and status description cut
    to its origin; the same object when there was nothing to scrub."""
    changed = False
    name = redact_url(span.name)
    changed |= name != span.name

    attributes: Attributes = span.attributes
    new_attributes = _scrub_attributes(span.attributes)
    if new_attributes is not None:
        attributes = BoundedAttributes(maxlen=None, attributes=new_attributes, immutable=True)
        changed = True

    events: list[Event] = []
    for event in span.events:
        event_name = redact_url(event.name)
        event_attributes = _scrub_attributes(event.attributes)
        if event_attributes is None and event_name == event.name:
            events.append(event)
            continue
        changed = True
        events.append(
            Event(
                event_name,
                event.attributes if event_attributes is None else event_attributes,
                event.timestamp,
            )
        )

    links: list[Link] = []
    for link in span.links:
        link_attributes = _scrub_attributes(link.attributes)
        if link_attributes is None:
            links.append(link)
        else:
            changed = True
            links.append(Link(link.context, link_attributes))

    status = span.status
    if status.description and redact_url(status.description) != status.description:
        status = Status(status.status_code, redact_url(status.description))
        changed = True

    if not changed:
        return span
    return _ScrubbedSpan(span, name, attributes, events, links, status)


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter so that no span reaches it before `scrub_span`."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([scrub_span(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
