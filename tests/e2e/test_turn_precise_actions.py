"""Issue "done when": the real app served by uvicorn, a scripted LLM, the harness simulator and a
VoxEngine emulator on loopback. Each action arrives 0–300 ms after the turn that confirmed it
ended, exactly once, and never while that turn was speaking."""

from __future__ import annotations

import pytest

from agent import prompt
from agent.lab.call_lab import CallLab
from agent.lab.faults import Fault, FaultPlan
from agent.lab.scripted_llm import LlmReply, ToolCallSpec
from agent.lab.timeline import Turn
from agent.lab.tts_model import TtsModel
from agent.lab.voxengine_emulator import RecordedRequest

pytestmark = pytest.mark.anyio

LATE_BOUND_S = 0.300  # generous for a loaded 2-core machine; benchmarks give the real figures
TRANSFER = LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": "Caller wants a person."}),))
GOODBYE = LlmReply(
    text="Thanks for calling, have a great day. Goodbye!", tool_calls=(ToolCallSpec("end_call", {}),)
)


def tts_for(text: str, seconds: float) -> TtsModel:
    """A TTS pace at which `text` takes `seconds` to speak."""
    return TtsModel(first_audio_s=0.1, jitter_s=0.05, words_per_s=len(text.split()) / seconds, seed=7)


def assert_one_post_after(turn: Turn, requests: list[RecordedRequest], action: str) -> RecordedRequest:
    assert turn.ended_at is not None
    [request] = requests
    assert request.response is not None and request.response["ok"] is True
    assert request.response["action"] == action
    assert not turn.started_at <= request.time < turn.ended_at, "POST arrived during the speech"
    assert 0.0 <= request.time - turn.ended_at <= LATE_BOUND_S, request.time - turn.ended_at
    return request


@pytest.mark.parametrize("seconds", [7.0, 1.0])
async def test_transfer_fires_at_the_end_of_the_confirmation(seconds: float) -> None:
    async with CallLab([TRANSFER]) as lab:
        async with lab.call(tts=tts_for(prompt.TRANSFER_CONFIRMATION, seconds)) as sim:
            await sim.wait_agent_turn_end(1, timeout_s=30)  # the introduction
            await sim.user_says("Can I talk to a person?")
            turn = await sim.wait_agent_turn_end(2, timeout_s=30)
            await lab.emulator.wait_for_effects(1, timeout=5)
        await lab.wait_calls_ended(1)
    assert turn.text == prompt.TRANSFER_CONFIRMATION and not turn.interrupted
    assert turn.ended_at is not None and turn.ended_at - turn.started_at >= seconds * 0.95
    request = assert_one_post_after(turn, lab.emulator.requests, "call_transfer")
    assert request.headers["x-idempotency-key"] == request.id
    assert [e.summary for e in lab.emulator.effects] == ["Caller wants a person."]


async def test_goodbye_hangs_up_when_the_goodbye_ends() -> None:
    async with CallLab([GOODBYE]) as lab:
        async with lab.call(tts=tts_for(GOODBYE.text, 2.0), close_after_end_call="after_speech") as sim:
            await sim.wait_agent_turn_end(1, timeout_s=30)
            await sim.user_says("That's all, thanks.")
            turn = await sim.wait_agent_turn_end(2, timeout_s=30)
            await sim.wait_closed(timeout_s=10)
        await lab.wait_calls_ended(1)
    assert turn.text == GOODBYE.text
    assert_one_post_after(turn, lab.emulator.requests, "end_call")
    assert [e.action for e in lab.emulator.effects] == ["end_call"]


async def test_goodbye_interrupted_by_the_caller_still_hangs_up() -> None:
    async with CallLab([GOODBYE]) as lab:
        async with lab.call(tts=tts_for(GOODBYE.text, 3.0), close_after_end_call="no") as sim:
            await sim.wait_agent_turn_end(1, timeout_s=30)
            await sim.user_says("That's all, thanks.")
            await sim.barge_in(after_s=1.0, text="oh wait, one more thing")
            turn = await sim.wait_agent_turn_end(2, timeout_s=30)
            await lab.emulator.wait_for_effects(1, timeout=5)
        await lab.wait_calls_ended(1)
    assert turn.interrupted and turn.text != GOODBYE.text
    assert_one_post_after(turn, lab.emulator.requests, "end_call")


async def test_harness_closing_the_socket_right_after_end_call_still_hangs_up() -> None:
    async with CallLab([GOODBYE]) as lab:
        async with lab.call(tts=tts_for(GOODBYE.text, 2.0), close_after_end_call="immediately") as sim:
            await sim.wait_agent_turn_end(1, timeout_s=30)
            await sim.user_says("Bye.")
            closed = await sim.wait_closed(timeout_s=10)
        await lab.wait_calls_ended(1)
    [request] = lab.emulator.requests
    assert request.response is not None and request.response["ok"] is True
    assert 0.0 <= request.time - closed.at <= LATE_BOUND_S
    [outcome] = lab.recorder.outcomes()
    assert outcome.name == "accepted"
    assert lab.recorder.first("released") is not None


async def test_two_503s_then_success_is_three_attempts_with_one_id() -> None:
    faults = FaultPlan(sequence=(Fault.http(503), Fault.http(503)))
    async with CallLab([TRANSFER], faults=faults) as lab:
        async with lab.call(tts=tts_for(prompt.TRANSFER_CONFIRMATION, 1.0)) as sim:
            await sim.wait_agent_turn_end(1, timeout_s=30)
            await sim.user_says("A human please.")
            await lab.emulator.wait_for_effects(1, timeout=10)
        await lab.wait_calls_ended(1)
    requests = lab.emulator.requests
    assert [r.status for r in requests] == [503, 503, 200]
    assert len({r.id for r in requests}) == 1
    assert len({r.headers["x-idempotency-key"] for r in requests}) == 1
    assert len(lab.emulator.effects) == 1
    [outcome] = lab.recorder.outcomes()
    assert outcome.name == "accepted" and outcome.attrs["attempts"] == 3
