"""Whether and where to export traces, from the standard OpenTelemetry environment variables.

Read once, at startup. One deliberate difference from the SDK's defaults: without
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` nothing is exported (the
SDK would try localhost:4318), so a production agent without a collector pays nothing.

Variables read here: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER (`otlp` or `none`),
OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL (`http/protobuf`, or
`grpc` when opentelemetry-exporter-otlp-proto-grpc is installed). Everything else is the SDK's
to read (`telemetry.setup`): the sampler, the service name and resource, span limits, the batch
processor and the exporter's own settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from loguru import logger

DEFAULT_SERVICE_NAME = "vox-line-agent"
HTTP_PROTOBUF = "http/protobuf"
GRPC = "grpc"
TRACES_PATH = "v1/traces"


@dataclass(frozen=True)
class TracingConfig:
    """What `configure_tracing` builds. `otlp_endpoint` None: no OTLP export."""

    otlp_endpoint: str | None = None
    protocol: str = HTTP_PROTOBUF
    disabled: bool = False  # OTEL_SDK_DISABLED: nothing at all, whatever else is set

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TracingConfig:
        env = os.environ if env is None else env
        protocol = (
            _get(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or _get(env, "OTEL_EXPORTER_OTLP_PROTOCOL")
            or HTTP_PROTOBUF
        )
        return cls(
            otlp_endpoint=_otlp_endpoint(env, protocol) if _exports_otlp(env) else None,
            protocol=protocol,
            disabled=_get(env, "OTEL_SDK_DISABLED").lower() == "true",
        )


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _exports_otlp(env: Mapping[str, str]) -> bool:
    exporters = {
        name.strip().lower() for name in _get(env, "OTEL_TRACES_EXPORTER").split(",") if name.strip()
    }
    if not exporters:
        return True
    if "none" in exporters:
        return False
    if exporters - {"otlp"}:
        logger.warning(
            f"OTEL_TRACES_EXPORTER: only otlp (or none) is supported here; ignoring {sorted(exporters)}"
        )
    return True


def _otlp_endpoint(env: Mapping[str, str], protocol: str) -> str | None:
    """The traces endpoint as the OTLP exporter spec resolves it, or None when neither is set.

    The per-signal variable is used as is; the generic one is a base URL to which OTLP/HTTP
    appends `/v1/traces` (gRPC uses it as is).
    """
    if traces := _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return traces
    base = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if not base:
        return None
    if protocol == GRPC:
        return base
    return f"{base.rstrip('/')}/{TRACES_PATH}"
