"""The tracer provider: resource, sampler, exporters, and a clean flush at shutdown.

`configure_tracing()` builds the process's provider from the environment (see
`telemetry.config`) and installs it as the global one; `shutdown_tracing()` flushes what is
queued and stops the exporters (call it when the server's lifespan ends; the SDK's atexit hook
is only the safety net). `create_tracer_provider()` builds a provider without touching any
global state, for tests and embedders.

Everything here is the stock OpenTelemetry SDK: every exporter sits behind a `BatchSpanProcessor`
(export happens in the SDK's worker thread, never in the event loop) and behind
`RedactingSpanExporter`; the OTLP/HTTP exporter is the SDK's `OTLPSpanExporter`. The SDK reads
its own variables: the sampler (OTEL_TRACES_SAMPLER[_ARG]), the resource (OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES), span limits (OTEL_SPAN_*), the batch processor (OTEL_BSP_*) and the
exporter's headers, timeout, compression and certificates (OTEL_EXPORTER_OTLP_*).
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
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from telemetry.config import DEFAULT_SERVICE_NAME, GRPC, HTTP_PROTOBUF, TracingConfig
from telemetry.otlp_json import JsonLinesSpanExporter
from telemetry.redaction import RedactingSpanExporter, redact_url

_GRPC_EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"

_lock = threading.Lock()
_configured: TracerProvider | None = None


def create_tracer_provider(
    exporters: Sequence[SpanExporter],
    *,
    service_name: str | None = None,
    sampler: Sampler | None = None,
    shutdown_on_exit: bool = True,
) -> TracerProvider:
    """A provider exporting to each of `exporters` (batched, redacted); nothing global.

    `service_name` and `sampler` default to what the SDK reads from the environment
    (OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES; OTEL_TRACES_SAMPLER[_ARG]), with
    `vox-line-agent` instead of the SDK's `unknown_service` when no name is set.
    """
    provider = TracerProvider(
        resource=_resource(service_name),
        sampler=sampler,  # None: the SDK's own OTEL_TRACES_SAMPLER handling
        shutdown_on_exit=shutdown_on_exit,
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(RedactingSpanExporter(exporter)))
    return provider


def _resource(service_name: str | None) -> Resource:
    attributes: dict[str, str] = {}
    try:
        attributes[SERVICE_VERSION] = importlib.metadata.version("vox-line-agent")
    except importlib.metadata.PackageNotFoundError:
        pass
    if service_name is not None:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)  # + OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


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
        provider = create_tracer_provider(exporters)
        if set_global:
            if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
            else:
                logger.warning("a global tracer provider is already set; tracing uses its own provider")
        _configured = provider
    service = provider.resource.attributes.get(SERVICE_NAME)
    logger.info(f"tracing on: service {service}, exporting to {' and '.join(targets)}")
    return provider


def _otlp_exporter(config: TracingConfig) -> SpanExporter | None:
    if config.protocol == HTTP_PROTOBUF:
        return OTLPSpanExporter(endpoint=config.otlp_endpoint)
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
