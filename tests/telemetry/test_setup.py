"""Configuration from the OTEL_* environment, the provider it builds, the OTLP/JSON file, and a
clean flush at shutdown."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from line.events import AgentTurnEnded, AgentTurnStarted
from loguru import logger
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    TraceIdRatioBased,
)

from agent.call_observer import CallInfo
from lab.otlp_decode import read_spans_json
from lab.otlp_receiver import OtlpReceiver
from telemetry import (
    TracingConfig,
    configure_tracing,
    configured_tracer_provider,
    create_tracer_provider,
    force_flush_tracing,
    shutdown_tracing,
    tracing_observer_factory,
)

CALL = CallInfo("c1", "a1", "+15550000001", "+15550000002", "127.0.0.1", "0123456789ab", None)


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING", format="{message}")
    yield messages
    logger.remove(sink)


def one_call() -> None:
    """A short call through whatever tracing is configured."""
    factory = tracing_observer_factory()
    assert factory is not None
    observer = factory(CALL)
    observer.call_started(CALL, 10.0)
    observer.harness_event(AgentTurnStarted(), 10.1)
    observer.harness_event(AgentTurnEnded(), 10.5)
    observer.call_ended(11.0)


# ---- TracingConfig.from_env ----


def test_no_endpoint_means_no_otlp_export() -> None:
    config = TracingConfig.from_env({})
    assert config.otlp_endpoint is None and not config.disabled
    assert config.protocol == "http/protobuf"


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}, "http://localhost:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/base/"},
            "http://collector:4318/base/v1/traces",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9/t",
            },
            "http://b:9/t",
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "http://a:4317",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
    ],
)
def test_endpoint_resolution_follows_the_otlp_exporter_spec(
    env: dict[str, str], endpoint: str | None
) -> None:
    assert TracingConfig.from_env(env).otlp_endpoint == endpoint


def test_protocol_and_disabled() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_SDK_DISABLED": "TRUE",
    }
    config = TracingConfig.from_env(env)
    assert config.protocol == "http/protobuf" and config.disabled
    assert not TracingConfig.from_env({"OTEL_SDK_DISABLED": "1"}).disabled  # only "true" counts


# ---- what the SDK reads itself: service name and resource, sampler ----


def test_service_name_is_the_sdk_s_with_our_default(monkeypatch: pytest.MonkeyPatch) -> None:
    def service() -> object:
        return create_tracer_provider([], shutdown_on_exit=False).resource.attributes["service.name"]

    assert service() == "vox-line-agent"  # not the SDK's unknown_service
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=lab, service.name=from-resource")
    assert service() == "from-resource"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agent-eu")
    provider = create_tracer_provider([], shutdown_on_exit=False)
    assert provider.resource.attributes["service.name"] == "agent-eu"
    assert provider.resource.attributes["deployment.environment"] == "lab"
    named = create_tracer_provider([], service_name="bench", shutdown_on_exit=False)
    assert named.resource.attributes["service.name"] == "bench"


@pytest.mark.parametrize(
    ("name", "arg", "expected"),
    [
        ("always_on", "", ALWAYS_ON),
        ("always_off", "", ALWAYS_OFF),
        ("parentbased_always_off", "", DEFAULT_OFF),
        ("", "", DEFAULT_ON),
    ],
)
def test_the_sampler_is_the_sdk_s_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, arg: str, expected: object
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    assert create_tracer_provider([], shutdown_on_exit=False).sampler is expected


def test_ratio_samplers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    ratio = create_tracer_provider([], shutdown_on_exit=False).sampler
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.25
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    assert isinstance(create_tracer_provider([], shutdown_on_exit=False).sampler, ParentBasedTraceIdRatio)


# ---- configure_tracing / tracing_observer_factory ----


def test_without_an_endpoint_tracing_is_off_and_installs_nothing() -> None:
    assert tracing_observer_factory() is None
    assert configured_tracer_provider() is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert force_flush_tracing() is True
    shutdown_tracing()  # a no-op


def test_sdk_disabled_wins_over_an_endpoint(monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing_observer_factory() is None and configured_tracer_provider() is None


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None,
    reason="the gRPC exporter is installed here",
)
def test_grpc_without_its_exporter_is_a_clear_warning_and_no_export(
    monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert configure_tracing(set_global=False) is None
    assert any("needs opentelemetry-exporter-otlp-proto-grpc" in w for w in warnings)


def test_unsupported_protocol_is_a_warning_and_no_export(
    monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    assert configure_tracing(set_global=False) is None
    assert any("'http/json' is not supported" in w for w in warnings)


def test_env_configured_tracing_exports_over_otlp_and_flushes_at_shutdown(
    monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agent-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # nothing leaves before the flush
    provider = configure_tracing(set_global=False)
    assert provider is not None and configured_tracer_provider() is provider
    with pytest.raises(RuntimeError, match="already configured"):
        configure_tracing(set_global=False)
    one_call()
    assert receiver.spans() == []  # still queued in the batch processor
    shutdown_tracing()
    spans = receiver.spans()
    assert sorted(s.name for s in spans) == ["agent.turn", "call"]
    assert {s.resource["service.name"] for s in spans} == {"agent-under-test"}
    assert receiver.headers[0]["content-type"] == "application/x-protobuf"
    assert configured_tracer_provider() is None


def test_sampler_from_the_environment_applies(
    monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert configure_tracing(set_global=False) is not None
    one_call()
    shutdown_tracing()
    assert receiver.spans() == [] and receiver.requests == []


def test_spans_json_file_is_otlp_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    assert configure_tracing(json_path=path, set_global=False) is not None  # no endpoint: the file only
    one_call()
    shutdown_tracing()
    [line] = path.read_text().splitlines()
    request = json.loads(line)
    raw_span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(raw_span["traceId"]) == 32 and len(raw_span["spanId"]) == 16  # hex, as OTLP/JSON says
    assert isinstance(raw_span["kind"], int)
    spans = {s["name"]: s for s in read_spans_json(path)}
    assert set(spans) == {"call", "agent.turn"}
    root, turn = spans["call"], spans["agent.turn"]
    assert root["parent_span_id"] is None and turn["parent_span_id"] == root["span_id"]
    assert turn["trace_id"] == root["trace_id"] and root["kind"] == 2
    assert abs(turn["end_time_unix_nano"] - turn["start_time_unix_nano"] - 400_000_000) <= 1
    assert root["attributes"]["vox.call.caller"] == "+*********01"
    assert turn["attributes"] == {
        "vox.turn.seq": 1,
        "vox.turn.characters": 0,
        "vox.turn.interrupted": False,
        "vox.turn.end": "idle",
    }
    assert root["resource"]["service.name"] == "vox-line-agent"
