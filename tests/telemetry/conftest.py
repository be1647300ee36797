"""Fixtures: a real OTLP/HTTP receiver on loopback, and a tracer provider per test exporting
to it (never the global provider)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider

from lab.otlp_receiver import OtlpReceiver
from telemetry import configured_tracer_provider, create_tracer_provider, shutdown_tracing


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable from the machine leaks in, none set by a test leaks out, and no test
    leaves a configured provider behind."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    leaked = configured_tracer_provider()
    shutdown_tracing()
    assert leaked is None, "a test left tracing configured"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def provider(receiver: OtlpReceiver) -> Iterator[TracerProvider]:
    tracer_provider = create_tracer_provider(
        [OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5)], shutdown_on_exit=False
    )
    yield tracer_provider
    tracer_provider.shutdown()
