"""The tracer provider: resource, sampler, exporters, and a clean flush at shutdown.

`configure_tracing()` builds the process's provider from the environment (see
`telemetry.config`) and installs it as the global one; `shutdown_tracing()` flushes what is
queued and stops the exporters (call it when the server's lifespan ends; the SDK's atexit hook
is only the safety net). `create_tracer_provider()` builds a provider without touching any
global state, for tests and embedders.

Every exporter sits behind a `BatchSpanProcessor` (export happens in the SDK's worker thread,
never in the event loop) and behind `RedactingSpanExporter`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
from collections.abc import Sequence
from typing import cast

from loguru import logger
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Sampler

from telemetry.config import DEFAULT_SERVICE_NAME, GRPC, HTTP_PROTOBUF, TracingConfig
from telemetry.otlp_http import OtlpHttpSpanExporter
from telemetry.otlp_json import JsonLinesSpanExporter
from telemetry.redaction import RedactingSpanExporter, redact_url

_GRPC_EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"

_lock = threading.Lock()
_configured: TracerProvider | None = None


def create_tracer_provider(
    exporters: Sequence[SpanExporter],
    *,
    service_name: str = DEFAULT_SERVICE_NAME,
    sampler: Sampler = DEFAULT_ON,
    shutdown_on_exit: bool = True,
) -> TracerProvider:
    """A provider exporting to each of `exporters` (batched, redacted); nothing global."""
    attributes: dict[str, str] = {SERVICE_NAME: service_name}
    try:
        attributes[SERVICE_VERSION] = importlib.metadata.version("vox-line-agent")
    except importlib.metadata.PackageNotFoundError:
        pass
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=sampler,
        shutdown_on_exit=shutdown_on_exit,
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(exporter)))
    return provider


def configure_tracing(
    *,
    json_path: str | os.PathLike[str] | None = None,
    config: TracingConfig | None = None,
    set_global: bool = True,
) -> TracerProvider | None:
    """Build the process's provider from the environment (or `config`), or None: tracing off.

    Off when OTEL_SDK_DISABLED=true, or when there is neither an OTLP endpoint nor `json_path`
    (then nothing is installed and tracing costs nothing). `json_path` adds an exporter writing
    OTLP/JSON lines to that file (`telemetry.otlp_json`). Once configured, call
    `shutdown_tracing()` before configuring again.
    """
    global _configured
    with _lock:
        if _configured is not None:
            raise RuntimeError("tracing is already configured; call shutdown_tracing() first")
        config = config or TracingConfig.from_env()
        if config.disabled:
            logger.info("tracing off: OTEL_SDK_DISABLED=true")
            return None
        exporters: list[SpanExporter] = []
        targets: list[str] = []
        if config.otlp_endpoint is not None and (otlp := _otlp_exporter(config)) is not None:
            exporters.append(otlp)
            targets.append(f"OTLP {config.protocol} {redact_url(config.otlp_endpoint)}")
        if json_path is not None:
            exporters.append(JsonLinesSpanExporter(json_path))
            targets.append(f"OTLP/JSON lines {os.fspath(json_path)}")
        if not exporters:
            return None
        provider = create_tracer_provider(exporters, service_name=config.service_name, sampler=config.sampler)
        if set_global:
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
            else:
                logger.warning("a global tracer provider is already set; tracing uses its own provider")
        _configured = provider
    logger.info(f"tracing on: service {config.service_name}, exporting to {' and '.join(targets)}")
    return provider


def _otlp_exporter(config: TracingConfig) -> SpanExporter | None:
    if config.protocol == HTTP_PROTOBUF:
        return OtlpHttpSpanExporter(endpoint=config.otlp_endpoint)
    if config.protocol == GRPC:
        try:
            module = importlib.import_module(_GRPC_EXPORTER)
        except ImportError:
            logger.warning(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc, which is "
                "not installed: traces are NOT exported over OTLP (install it, or use http/protobuf)"
            )
            return None
        return cast(SpanExporter, module.OTLPSpanExporter(endpoint=config.otlp_endpoint))
    logger.warning(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={config.protocol!r} is not supported (use http/protobuf or grpc): "
        "traces are NOT exported over OTLP"
    )
    return None


def configured_tracer_provider() -> TracerProvider | None:
    """The provider `configure_tracing` installed, if tracing is on."""
    return _configured


def force_flush_tracing(timeout_millis: int = 30000) -> bool:
    """Export everything queued so far; True when it all went out in time (or tracing is off)."""
    provider = _configured
    return provider.force_flush(timeout_millis) if provider is not None else True


def shutdown_tracing() -> None:
    """Flush and stop the configured provider (idempotent; a no-op when tracing is off).

    Blocking (the last export may take up to the exporter's timeout): from async code, run it
    in a worker thread.
    """
    global _configured
    with _lock:
        provider, _configured = _configured, None
    if provider is not None:
        provider.shutdown()
