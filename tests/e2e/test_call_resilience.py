"""The call around the actions: bad control URLs, replies in flight, stale turn ends, no leaks."""

from __future__ import annotations

import dataclasses

import pytest

from agent import prompt
from agent.retry_policy import RetryPolicy
from agent.settings import Settings
from lab.call_lab import CallLab
from lab.faults import FaultPlan
from lab.harness_profile import FAITHFUL, IDEALISED, HarnessProfile
from lab.scripted_llm import LlmReply, ToolCallSpec
from lab.timeline import Timeline
from lab.tts_model import TtsModel
from lab.voxengine_emulator import RecordedRequest
from tests.product_tasks import product_tasks

pytestmark = pytest.mark.anyio

FAST_TTS = TtsModel(first_audio_s=0.05, words_per_s=12)
TRANSFER = ToolCallSpec("call_transfer", {"summary": "wants a person"})


@pytest.mark.parametrize(
    "metadata",
    [{}, {"vox_session_control_url": 42}, {"vox_session_control_url": "ftp://example.com/x"}, None],
    ids=["missing", "wrong-type", "bad-scheme", "no-metadata"],
)
async def test_a_refused_control_url_never_stops_the_call(metadata: dict[str, object] | None) -> None:
    replies = [LlmReply(tool_calls=(TRANSFER,)), LlmReply(text="Sure, our hours are nine to five.")]
    async with CallLab(replies) as lab:
        async with lab.call(tts=FAST_TTS, metadata=metadata or {}) as sim:
            await sim.wait_agent_turn_end(1)
            await sim.user_says("Get me a human.")
            cannot = await sim.wait_agent_turn_end(2)
            await sim.user_says("OK, what are your hours?")
            answer = await sim.wait_agent_turn_end(3)
        await lab.wait_calls_ended(1)
    assert cannot.text == prompt.UNAVAILABLE
    assert answer.text == "Sure, our hours are nine to five."
    assert lab.emulator.requests == [] and lab.recorder.actions == []
    assert not sim.timeline.of_kind("error")


async def test_stale_turn_end_of_the_interrupted_introduction_does_not_release() -> None:
    # The caller talks over the introduction; its idle arrives late, after the tool ran.
    # (Line's runner assumes the harness alternates speaking/idle, so the late idle still comes
    # before the confirmation's own turn starts.)
    async with CallLab([LlmReply(tool_calls=(TRANSFER,), first_token_delay_s=0.1)]) as lab:
        async with lab.call(tts=TtsModel(first_audio_s=0.05, words_per_s=6)) as sim:
            await sim.barge_in(after_s=0.3, text="I need a human", stale_idle_delay_s=0.8)
            confirming = await sim.wait_agent_turn_end(2, timeout_s=20)
            await lab.emulator.wait_for_effects(1, timeout=5)
        await lab.wait_calls_ended(1)
    intro_end = sim.timeline.first("agent_turn_ended", where=lambda e: e.detail["turn"] == 1)
    enqueued = lab.recorder.first("enqueued")
    assert intro_end is not None and enqueued is not None
    assert intro_end.at > enqueued.at, "the stale idle must arrive after the tool ran"
    assert confirming.text == prompt.TRANSFER_CONFIRMATION
    [request] = lab.emulator.requests
    assert confirming.ended_at is not None and 0 <= request.time - confirming.ended_at <= 0.3
    [released] = [r for r in lab.recorder.actions if r.name == "released"]
    assert released.attrs["reason"] == "turn_ended"


SLOW_LEAD_IN = "One moment please."


async def slow_reply_call(profile: HarnessProfile) -> tuple[Timeline, list[RecordedRequest]]:
    """A transfer whose reply streams slower than it is spoken: the call's timeline and POSTs."""
    reply = LlmReply(text=SLOW_LEAD_IN, tool_calls=(TRANSFER,), first_token_delay_s=0.1, chunk_delay_s=0.35)
    async with CallLab([reply]) as lab:
        async with lab.call(tts=TtsModel(first_audio_s=0.05, words_per_s=8), profile=profile) as sim:
            await sim.wait_agent_turn_end(1)
            await sim.user_says("I need a human")
            await lab.emulator.wait_for_effects(1, timeout=10)
            await sim.wait_until_idle()
        await lab.wait_calls_ended(1)
    return sim.timeline, lab.emulator.requests


async def test_turn_ends_during_a_slow_reply_never_cancel_it() -> None:
    # The idealised harness goes idle between the reply's words (the hardest case for the run
    # filter): each AgentTurnEnded is observed while the LLM response is still in flight.
    timeline, requests = await slow_reply_call(IDEALISED)
    turns = timeline.turns()
    spoken = " ".join(t.text for t in turns[1:])
    assert spoken == f"{SLOW_LEAD_IN} {prompt.TRANSFER_CONFIRMATION}"  # every chunk arrived and played
    assert len(turns) >= 4, "the harness went idle between the reply's words"
    confirming = turns[-1]
    assert confirming.text.endswith(prompt.TRANSFER_CONFIRMATION)
    [request] = requests
    assert confirming.ended_at is not None and 0 <= request.time - confirming.ended_at <= 0.3


async def test_a_slow_reply_is_one_turn_for_the_faithful_harness_and_the_action_waits_for_its_end() -> None:
    # The real harness keeps the turn open until response_end (line/voice_agent_app.py
    # _send_response_end): the pauses between chunks are silence inside one turn.
    timeline, requests = await slow_reply_call(FAITHFUL)
    _intro, confirming = timeline.turns()
    assert confirming.text == f"{SLOW_LEAD_IN} {prompt.TRANSFER_CONFIRMATION}"
    [request] = requests
    assert confirming.stopped_at is not None and confirming.ended_at is not None
    assert 0 <= request.time - confirming.ended_at <= 0.3


async def test_no_task_of_the_call_outlives_it() -> None:
    async with CallLab([LlmReply(tool_calls=(TRANSFER,))]) as lab:
        async with lab.call(tts=FAST_TTS) as sim:
            await sim.wait_agent_turn_end(1)
            await sim.user_says("A person please.")
            await sim.wait_agent_turn_end(2)
            assert product_tasks(), "the call's control plane runs while the call is live"
            await lab.emulator.wait_for_effects(1, timeout=5)
        await lab.wait_calls_ended(1)
        assert lab.app is not None and lab.app.live_calls == set()
        assert product_tasks() == []


async def test_a_hang_up_that_finally_fails_ends_the_agents_side_of_the_call() -> None:
    quick = dataclasses.replace(Settings(), retry=RetryPolicy(deadline_s=1.0, attempt_timeout_s=0.3))
    goodbye = LlmReply(text="Goodbye!", tool_calls=(ToolCallSpec("end_call", {}),))
    async with CallLab([goodbye], faults=FaultPlan(rates={"status": 1.0}), settings=quick) as lab:
        async with lab.call(tts=FAST_TTS, close_after_end_call="no") as sim:
            await sim.wait_agent_turn_end(1)
            await sim.user_says("Bye.")
            closed = await sim.wait_closed(timeout_s=10)
        await lab.wait_calls_ended(1)
    [failed] = [r for r in lab.recorder.actions if r.name == "failed"]
    assert failed.attrs["reason"] == "deadline_exceeded:http_503"
    assert closed.detail["by"] == "app" and closed.at >= failed.at
    # The tool sends none (the agent's side ends only once VoxEngine hung up): the fallback's.
    [end_call] = sim.timeline.of_kind("end_call_received")
    assert failed.at <= end_call.at <= closed.at
