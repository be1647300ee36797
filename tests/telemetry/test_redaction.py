"""No secret URL and no full phone number in a trace: at the source (masked parties; POST spans
name the origin only) and at the last gate (every exporter sits behind `RedactingSpanExporter`)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from lab.otlp_receiver import OtlpReceiver
from telemetry.redaction import mask_party, redact_url

pytestmark = pytest.mark.anyio

SECRET_URL = "https://10.0.0.7:12092/request/sess-1/tok_SECRET_123?sig=abc#frag"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SECRET_URL, "https://10.0.0.7:12092/REDACTED"),
        ("http://user:pw@host/a", "http://REDACTED:REDACTED@host/REDACTED"),
        ("https://host", "https://host"),
        ("https://host/", "https://host/"),
        ("https://[::1]:8443/x/y", "https://[::1]:8443/REDACTED"),
        ("https://h?token=1", "https://h/REDACTED"),
        (f"POST {SECRET_URL} failed: 'boom'", "POST https://10.0.0.7:12092/REDACTED failed: 'boom'"),
        ("no url here: /request/x", "no url here: /request/x"),
    ],
)
def test_redact_url_keeps_only_the_origin(text: str, expected: str) -> None:
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    ("party", "masked"),
    [
        ("+15550000001", "+*********01"),
        ("15550000042", "*********42"),
        ("sip:alice@example.com", "*******************om"),
        ("7", "*"),
        ("", ""),
    ],
)
def test_parties_keep_their_last_two_characters(party: str, masked: str) -> None:
    assert mask_party(party) == masked


def test_the_export_gate_scrubs_urls_wherever_they_are(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(f"GET {SECRET_URL}", attributes={"url.full": SECRET_URL}) as span:
        span.set_attribute("note", ["ok", f"see {SECRET_URL}"])
        span.set_attribute("count", 3)
        span.add_event("retry", {"detail": SECRET_URL, "attempt": 2})
        span.set_status(Status(StatusCode.ERROR, f"failed {SECRET_URL}"))
    with tracer.start_as_current_span("clean", attributes={"vox.reason": "http_503"}):
        pass
    spans = {s.name: s for s in receiver.collect(provider)}
    assert b"tok_SECRET_123" not in receiver.raw() and b"/request/" not in receiver.raw()
    scrubbed = spans["GET https://10.0.0.7:12092/REDACTED"]
    assert scrubbed.attributes == {
        "url.full": "https://10.0.0.7:12092/REDACTED",
        "note": ["ok", "see https://10.0.0.7:12092/REDACTED"],
        "count": 3,
    }
    assert scrubbed.event("retry").attributes == {"detail": "https://10.0.0.7:12092/REDACTED", "attempt": 2}
    assert scrubbed.status_message == "failed https://10.0.0.7:12092/REDACTED"
    assert spans["clean"].attributes == {"vox.reason": "http_503"}
