"""End to end: a simulated transfer call served by the real `TelephonyAgentApp` under uvicorn on
loopback (scripted LLM, simulated Cartesia harness, VoxEngine emulator answering one 503 then
OK), traced into a real OTLP/HTTP receiver. One trace, the span model, W3C headers on the wire
naming that trace, and no trace of the control URL's secret."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider

from agent import prompt
from agent.app import TelephonyAgentApp
from agent.settings import Settings
from lab.asgi_server import serve_on_loopback, server_port
from lab.call_lab import CallRecorder
from lab.faults import Fault, FaultPlan
from lab.harness import HarnessSimulator
from lab.harness_profile import IDEALISED
from lab.otlp_decode import ReceivedSpan, not_after
from lab.otlp_receiver import OtlpReceiver
from lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec
from lab.timeline import Turn
from lab.tls import LAB_CONTROL_HOST
from lab.tts_model import TtsModel
from lab.voxengine_emulator import RecordedRequest, VoxEngineEmulator
from telemetry import create_tracer_provider, tracing_observer_factory

pytestmark = pytest.mark.anyio

SERVER, CLIENT = 2, 3
TRANSFER = LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": "Caller wants a person."}),))
TTS = TtsModel(first_audio_s=0.05, words_per_s=25.0)


@dataclass
class TracedCall:
    spans: list[ReceivedSpan]
    payload: bytes
    requests: list[RecordedRequest]
    control_url: str
    confirmation: Turn


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # module scope: the call below is played once for all the checks


@pytest.fixture(scope="module")
async def traced_transfer() -> AsyncIterator[TracedCall]:
    with pytest.MonkeyPatch.context() as env, OtlpReceiver() as receiver:
        for name in [n for n in os.environ if n.startswith("OTEL_")]:
            env.delenv(name)
        provider = create_tracer_provider(
            [OTLPSpanExporter(endpoint=receiver.endpoint, timeout=5)], shutdown_on_exit=False
        )
        try:
            yield await play_transfer(provider, receiver)
        finally:
            provider.shutdown()


async def play_transfer(provider: TracerProvider, receiver: OtlpReceiver) -> TracedCall:
    tracing = tracing_observer_factory(provider)
    assert tracing is not None
    recorder = CallRecorder()
    faults = FaultPlan(sequence=(Fault.http(503),))
    async with (
        VoxEngineEmulator(faults=faults) as emulator,
        ScriptedLlm([TRANSFER]) as llm,
        emulator.client() as http,
    ):
        settings = Settings(
            control=emulator.network,
            llm_api_base=llm.api_base,
            llm_model="openai/scripted",
            llm_api_key="sk-test",
        )
        app = TelephonyAgentApp(settings, observers=[tracing, recorder.factory], http_client=http)
        control_url = emulator.control_url("s1")
        async with serve_on_loopback(app.fastapi_app, graceful_shutdown_s=settings.drain_timeout_s) as server:
            async with HarnessSimulator.connect(
                f"ws://127.0.0.1:{server_port(server)}/ws",
                metadata={"vox_session_control_url": control_url},
                tts=TTS,
                profile=IDEALISED,  # every word acknowledged, so the turn's characters are exact
                call_id="trace-call-1",
                from_="+15550001234",
            ) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)  # the introduction
                await sim.user_says("Can I talk to a person?")
                confirmation = await sim.wait_agent_turn_end(2, timeout_s=30)
                await emulator.wait_for_effects(1, timeout=15)
            with anyio.fail_after(30):  # the call drains and its observers hear call_ended
                while not recorder.ended:
                    await recorder.changed.wait()
        return TracedCall(
            receiver.collect(provider), receiver.raw(), list(emulator.requests), control_url, confirmation
        )


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_ns)


def names(header: str, span: ReceivedSpan) -> bool:
    """Whether a W3C traceparent names `span`, sampled."""
    version, trace_id, span_id, flags = header.split("-")
    return (version, trace_id, span_id) == ("00", span.trace_id, span.span_id) and int(flags, 16) & 0x01 == 1


async def test_one_trace_with_one_root_per_call(traced_transfer: TracedCall) -> None:
    spans = traced_transfer.spans
    expected = ["call", "agent.turn", "agent.turn", "user.turn", "execute_tool call_transfer"]
    expected += ["control call_transfer", "POST", "POST"]
    assert sorted(s.name for s in spans) == sorted(expected)
    assert len({s.trace_id for s in spans}) == 1
    [root] = [s for s in spans if s.parent_span_id is None]
    assert root.name == "call" and root.kind == SERVER
    assert root.attributes["vox.call.id"] == "trace-call-1"
    assert root.attributes["vox.call.caller"] == "+*********34"
    assert root.attributes["vox.control.host"] == LAB_CONTROL_HOST
    assert all(not_after(root.start_ns, s.start_ns) and not_after(s.end_ns, root.end_ns) for s in spans)


async def test_turns_tool_and_action_under_the_call(traced_transfer: TracedCall) -> None:
    spans = traced_transfer.spans
    [root] = named(spans, "call")
    intro, confirmation = named(spans, "agent.turn")
    [user] = named(spans, "user.turn")
    [tool] = named(spans, "execute_tool call_transfer")
    [action] = named(spans, "control call_transfer")
    for span in (intro, confirmation, user, tool, action):
        assert span.parent_span_id == root.span_id
    assert [intro.attributes["vox.turn.seq"], confirmation.attributes["vox.turn.seq"]] == [1, 2]
    assert intro.end_ns <= user.start_ns < user.end_ns <= tool.start_ns <= confirmation.start_ns
    spoken = sum(len(word) for word in prompt.TRANSFER_CONFIRMATION.split())
    assert 0 < confirmation.attributes["vox.turn.characters"] <= len(prompt.TRANSFER_CONFIRMATION)
    assert confirmation.attributes["vox.turn.characters"] >= spoken
    assert confirmation.attributes["vox.turn.interrupted"] is False
    assert [link.span_id for link in tool.links] == [action.span_id]
    assert action.attributes["vox.action.outcome"] == "delivered"
    assert action.attributes["vox.action.attempts"] == 2
    assert action.attributes["vox.action.carrier_turn"] == 2


async def test_the_action_is_delivered_after_the_confirming_turn_ends(traced_transfer: TracedCall) -> None:
    spans = traced_transfer.spans
    confirmation = named(spans, "agent.turn")[1]
    [action] = named(spans, "control call_transfer")
    posts = named(spans, "POST")
    # The action span opens when the tool holds the action (before the confirmation is spoken);
    # its delivery starts when the turn that spoke the confirmation ends, and not before.
    assert action.start_ns < confirmation.start_ns
    [link] = action.links
    assert (link.span_id, link.attributes["vox.link.type"]) == (confirmation.span_id, "released_by")
    assert action.event("released").time_ns == confirmation.end_ns
    assert not_after(confirmation.end_ns, posts[0].start_ns)
    assert action.event_names() == [
        "armed", "released", "retry", "accepted",
        "call_ended",  # a transfer's span waits for VoxEngine's outcome, which this call never got
    ]  # fmt: skip
    # And the simulated harness agrees: VoxEngine heard nothing while the confirmation played.
    turn = traced_transfer.confirmation
    assert turn.ended_at is not None
    assert all(request.time >= turn.ended_at for request in traced_transfer.requests)


async def test_each_attempt_is_an_http_child_of_the_action(traced_transfer: TracedCall) -> None:
    spans = traced_transfer.spans
    [action] = named(spans, "control call_transfer")
    first, second = named(spans, "POST")
    assert {first.kind, second.kind} == {CLIENT}
    assert first.parent_span_id == second.parent_span_id == action.span_id
    codes = [s.attributes["http.response.status_code"] for s in (first, second)]
    assert codes == [503, 200]
    # The address the guarded connection layer resolved, checked and connected to.
    assert {s.attributes["network.peer.address"] for s in (first, second)} == {"127.0.0.1"}
    assert all(isinstance(s.attributes["network.peer.port"], int) for s in (first, second))
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.request.resend_count"] == 1
    assert first.start_ns < first.end_ns <= second.start_ns < second.end_ns
    assert not_after(action.start_ns, first.start_ns) and not_after(second.end_ns, action.end_ns)


async def test_the_wire_carries_the_trace(traced_transfer: TracedCall) -> None:
    spans = traced_transfer.spans
    [action] = named(spans, "control call_transfer")
    posts = named(spans, "POST")
    requests = traced_transfer.requests
    assert [r.status for r in requests] == [503, 200]
    for request, span in zip(requests, posts, strict=True):
        assert names(request.headers["traceparent"], span)  # this attempt's POST span
        assert names(request.headers["x-traceparent"], span)  # and its mirror VoxEngine shows
        assert span.parent_span_id == action.span_id
        assert request.headers["x-idempotency-key"] == action.attributes["vox.action.id"]


async def test_no_control_url_secret_in_the_exported_bytes(traced_transfer: TracedCall) -> None:
    token = traced_transfer.control_url.rsplit("/", 1)[1]
    assert len(token) >= 16 and traced_transfer.payload
    assert token.encode() not in traced_transfer.payload
    assert b"/request/" not in traced_transfer.payload
    for span in traced_transfer.spans:
        assert token not in repr(span)
    assert {s.attributes["url.full"] for s in named(traced_transfer.spans, "POST")} == {
        traced_transfer.control_url.split("/request/")[0] + "/REDACTED"
    }
