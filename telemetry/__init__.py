"""Tracing for the agent (OpenTelemetry): one trace per call, exported over OTLP to Jaeger or
any collector. Off unless OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set. See docs/tracing.md.

    tracing = tracing_observer_factory()          # None: tracing is off
    if tracing is not None:
        app.add_observer(tracing)                 # spans for turns, tools, actions and POSTs
    ...
    shutdown_tracing()                            # flush at the end of the server's lifespan
"""

from __future__ import annotations

from opentelemetry.trace import TracerProvider

from telemetry.call_spans import EpochClock, TracingObserver, TracingObserverFactory
from telemetry.config import DEFAULT_SERVICE_NAME, TracingConfig
from telemetry.otlp_json import JsonLinesSpanExporter
from telemetry.setup import (
    configure_tracing,
    configured_tracer_provider,
    create_tracer_provider,
    force_flush_tracing,
    shutdown_tracing,
)

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "EpochClock",
    "JsonLinesSpanExporter",
    "TracingConfig",
    "TracingObserver",
    "TracingObserverFactory",
    "configure_tracing",
    "configured_tracer_provider",
    "create_tracer_provider",
    "force_flush_tracing",
    "shutdown_tracing",
    "tracing_observer_factory",
]


def tracing_observer_factory(tracer_provider: TracerProvider | None = None) -> TracingObserverFactory | None:
    """A per-call observer factory that records spans, or None when tracing is not configured.

    With `tracer_provider`, spans go there (tests, embedders). Without it, the provider that
    `configure_tracing()` installed is used, configuring it from the environment first if needed.
    """
    if tracer_provider is None:
        tracer_provider = configured_tracer_provider()
        if tracer_provider is None:
            tracer_provider = configure_tracing()
        if tracer_provider is None:
            return None
    return TracingObserverFactory(tracer_provider)
