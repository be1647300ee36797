"""HTTP client spans for control POSTs, from the maintained httpx instrumentation.

Only the agent's pooled control client is instrumented (`instrument_http_client`), not httpx
globally: its requests are the only ones a call's trace needs, each is made inside the action
span (`TracingObserver.delivering`), and the LLM provider's own httpx traffic stays out of
the traces (and out of this redaction's responsibility). The instrumentation also injects the
HTTP span's W3C `traceparent` into each request.

The request hook rewrites `url.full` (the control URL's path is a secret) the moment the span
starts, and sets `http.request.resend_count` on retries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx
from opentelemetry.context import Context, create_key, get_value, set_value
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.trace import Span, TracerProvider

from telemetry.conventions import HTTP_REQUEST_RESEND_COUNT, LEGACY_HTTP_URL, URL_FULL
from telemetry.redaction import redact_url

SEMCONV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"

_PROGRESS_KEY = create_key("vox.delivery_progress")


@dataclass
class DeliveryProgress:
    """How many POSTs of the action being delivered have started (kept by the action's span)."""

    attempts: int = 0


def with_delivery_progress(progress: DeliveryProgress, context: Context | None = None) -> Context:
    return set_value(_PROGRESS_KEY, progress, context)


def current_delivery_progress() -> DeliveryProgress | None:
    value = get_value(_PROGRESS_KEY)
    return value if isinstance(value, DeliveryProgress) else None


def instrument_http_client(client: httpx.AsyncClient, tracer_provider: TracerProvider) -> None:
    """Trace every request of `client` into `tracer_provider` (idempotent per client).

    Opts into the stable HTTP semantic conventions (http.request.method,
    http.response.status_code, server.address, url.full) unless OTEL_SEMCONV_STABILITY_OPT_IN
    says otherwise; the instrumentation reads it once per process.
    """
    os.environ.setdefault(SEMCONV_OPT_IN, "http")
    HTTPXClientInstrumentor.instrument_client(
        client, tracer_provider=tracer_provider, request_hook=_request_hook
    )


async def _request_hook(span: Span, request: RequestInfo) -> None:
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in (URL_FULL, LEGACY_HTTP_URL):
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, redact_url(value))
    progress = current_delivery_progress()
    if progress is not None and progress.attempts > 1:
        span.set_attribute(HTTP_REQUEST_RESEND_COUNT, progress.attempts - 1)
