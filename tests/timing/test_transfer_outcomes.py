"""The closed loop with VoxEngine, on whole lab calls: a transfer whose target is busy gives the
caller back to the agent, who speaks again at once; one that connects whispers to the human first,
then bridges."""

from __future__ import annotations

import pytest

from agent import prompt
from lab.call_lab import CallLab
from lab.scenarios import transfer_reply
from lab.scripted_llm import LlmReply
from lab.telephony import TransferScript
from lab.tts_model import TtsModel

pytestmark = pytest.mark.anyio

SUMMARY = "Caller wants a refund for order 1234."
APOLOGY = "I'm sorry, nobody is free right now. Can I take a message for you?"
TTS = TtsModel(first_audio_s=0.2, words_per_s=6.0)
RESUME_BOUND_S = 1.5  # the bound: the caller hears the agent again within 1.5 s


async def test_a_busy_target_gives_the_caller_back_to_the_agent_who_speaks_within_1_5_s() -> None:
    replies = [transfer_reply(summary=SUMMARY), LlmReply(text=APOLOGY)]
    async with CallLab(replies, transfer=TransferScript.busy(ring_s=0.2, fail_s=0.6)) as lab:
        async with lab.call(tts=TTS) as sim:
            await sim.wait_agent_turn_end(1, timeout_s=30)
            await sim.user_says("Can I talk to a real person, please?")
            apology = await sim.wait_agent_turn_end(3, timeout_s=30)
            assert not sim.closed  # the call stays up
        await lab.wait_calls_ended(1)
    [failed] = [e for e in sim.timeline.of_kind("user_custom") if e.detail["metadata"]["status"] == "failed"]
    assert failed.detail["metadata"]["reason"] == "busy" and failed.detail["metadata"]["sip_code"] == 486
    assert apology.text == APOLOGY
    assert 0 < apology.started_at - failed.at <= RESUME_BOUND_S
    # The LLM was told why, in the request that produced the apology (LlmAgent's context entry).
    told = [str(m.get("content")) for m in lab.llm.requests[-1]["messages"]]
    assert any("did not go through" in text and "busy" in text for text in told)
    names = [r.name for r in lab.recorder.actions]
    assert names.index("delivered") < names.index("telephony.ringing") < names.index("telephony.failed")
    assert [e.action for e in lab.emulator.effects] == ["call_transfer"]  # nobody hung up


async def test_an_answered_transfer_whispers_the_summary_then_bridges_the_caller() -> None:
    script = TransferScript.answers(ring_s=0.2, answer_s=0.5, whisper_s=0.8)
    async with CallLab([transfer_reply(summary=SUMMARY)], transfer=script) as lab:
        async with lab.call(tts=TTS, close_after_end_call="no") as sim:
            await sim.wait_agent_turn_end(1, timeout_s=30)
            await sim.user_says("I need a person.")
            closed = await sim.wait_closed(timeout_s=30)
        await lab.wait_calls_ended(1)
    [play] = lab.emulator.transfers
    log = {what: at for at, what in play.log}
    assert play.whisper == SUMMARY and play.caller_with == "target"
    assert log["answered"] < log["whisper started"] < log["bridged (whisper done)"]
    assert closed.detail["by"] == "voxengine"  # the agent is detached at the bridge
    assert closed.at >= log["bridged (whisper done)"]
    statuses = [m["status"] for _, m in lab.emulator.custom_events]
    assert statuses == ["ringing", "connected"]
    names = [r.name for r in lab.recorder.actions]
    assert names.index("delivered") < names.index("telephony.ringing") < names.index("telephony.connected")
    confirmation = sim.turns()[1]
    assert confirmation.text == prompt.TRANSFER_CONFIRMATION
    assert confirmation.stopped_at is not None and confirmation.stopped_at <= log["dialled"]
