"""Tracing configuration from the standard OpenTelemetry environment variables.

Read once, at startup. One deliberate difference from the SDK's defaults: without
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` nothing is exported (the
SDK would try localhost:4318), so a production agent without a collector pays nothing.

Variables: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER (`otlp` or `none`),
OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL (`http/protobuf`, or
`grpc` when opentelemetry-exporter-otlp-proto-grpc is installed), OTEL_SERVICE_NAME (or
`service.name` in OTEL_RESOURCE_ATTRIBUTES), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
The OTLP exporter itself still reads its own OTEL_EXPORTER_OTLP_* settings (headers, timeout,
compression, certificates) and the batch processor its OTEL_BSP_* settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from loguru import logger
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)

DEFAULT_SERVICE_NAME = "vox-line-agent"
HTTP_PROTOBUF = "http/protobuf"
GRPC = "grpc"
TRACES_PATH = "v1/traces"


@dataclass(frozen=True)
class TracingConfig:
    """What `configure_tracing` builds. `otlp_endpoint` None: no OTLP export."""

    otlp_endpoint: str | None = None
    protocol: str = HTTP_PROTOBUF
    service_name: str = DEFAULT_SERVICE_NAME
    sampler: Sampler = field(default=DEFAULT_ON)
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
            service_name=_service_name(env),
            sampler=sampler_from_env(env),
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


def _service_name(env: Mapping[str, str]) -> str:
    if name := _get(env, "OTEL_SERVICE_NAME"):
        return name
    for pair in _get(env, "OTEL_RESOURCE_ATTRIBUTES").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == "service.name" and value.strip():
            return value.strip()
    return DEFAULT_SERVICE_NAME


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """OTEL_TRACES_SAMPLER (+ _ARG) as the spec names them; unknown names fall back to the
    default (parentbased_always_on) with a warning, a bad ratio to 1.0."""
    name = _get(env, "OTEL_TRACES_SAMPLER").lower() or "parentbased_always_on"
    fixed: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
    }
    if name in fixed:
        return fixed[name]
    if name in ("traceidratio", "parentbased_traceidratio"):
        ratio = _ratio(_get(env, "OTEL_TRACES_SAMPLER_ARG"))
        return TraceIdRatioBased(ratio) if name == "traceidratio" else ParentBasedTraceIdRatio(ratio)
    logger.warning(f"OTEL_TRACES_SAMPLER={name!r} is not supported; using parentbased_always_on")
    return DEFAULT_ON


def _ratio(raw: str) -> float:
    if not raw:
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        logger.warning(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a ratio in [0, 1]; using 1.0")
        return 1.0
    return ratio
