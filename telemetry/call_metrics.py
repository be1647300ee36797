"""`vox.agent.active_calls`: the calls this server process is carrying, for autoscalers.

An observable up-down counter (the kind OpenTelemetry's semantic conventions use for
`http.server.active_requests`) read from the app's `Admission` at each collection, with the
attribute `vox.agent.draining` (true once a SIGTERM has started the drain: an autoscaler can leave
a draining pod's calls out). Exported over OTLP/HTTP by the stock SDK (`MeterProvider`,
`PeriodicExportingMetricReader`, `OTLPMetricExporter`) when OTEL_EXPORTER_OTLP_METRICS_ENDPOINT or
OTEL_EXPORTER_OTLP_ENDPOINT is set; the SDK reads its own variables for the rest (the export
interval OTEL_METRIC_EXPORT_INTERVAL, 60 s by default; headers, timeout, certificates). Each
process reports its own count under its own `service.instance.id` (the SDK's resource detector
draws a UUID per process), so `WEB_CONCURRENCY` workers are separate series to sum.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from loguru import logger
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from agent.admission import Admission
from telemetry.config import DEFAULT_SERVICE_NAME
from telemetry.redaction import redact_url

ACTIVE_CALLS = "vox.agent.active_calls"
DRAINING = "vox.agent.draining"
METRICS_PATH = "/v1/metrics"
_HTTP_PROTOBUF = "http/protobuf"


class CallMetrics:
    """The process's meter provider and its one instrument; `shutdown()` exports a last time."""

    def __init__(self, admission: Admission, exporter: MetricExporter) -> None:
        self._admission = admission
        self.provider = MeterProvider(
            resource=_resource(),
            metric_readers=[PeriodicExportingMetricReader(exporter)],
            shutdown_on_exit=False,  # `shutdown()` runs when the app's lifespan ends
        )
        self.provider.get_meter("vox.agent").create_observable_up_down_counter(
            ACTIVE_CALLS,
            callbacks=[self._observe],
            unit="{call}",
            description="Calls this server process is carrying (websockets open on Line's /ws)",
        )

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._admission.active, {DRAINING: self._admission.draining})

    def shutdown(self) -> None:
        self.provider.shutdown()


def call_metrics_from_env(admission: Admission, env: Mapping[str, str] | None = None) -> CallMetrics | None:
    """`CallMetrics` exporting where the OTEL_* variables say, or None when no endpoint is set
    (or OTEL_SDK_DISABLED=true, OTEL_METRICS_EXPORTER=none, an unsupported protocol)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none":
        return None
    # As the SDK's exporter: the metrics variable is the full URL, the generic one a base.
    endpoint = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip()
    if not endpoint and (base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()):
        endpoint = base.rstrip("/") + METRICS_PATH
    if not endpoint:
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        or _HTTP_PROTOBUF
    )
    if protocol != _HTTP_PROTOBUF:
        logger.warning(f"OTLP protocol {protocol!r}: metrics go over http/protobuf only; NOT exported")
        return None
    logger.info(f"metrics on: {ACTIVE_CALLS} over OTLP/HTTP to {redact_url(endpoint)}")
    return CallMetrics(admission, OTLPMetricExporter(endpoint=endpoint))


def _resource() -> Resource:
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource
