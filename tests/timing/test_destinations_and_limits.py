"""Issue #18 on whole lab calls: a transfer falls back to the next destination and connects; a
voicemail is never bridged and the agent speaks again at once; the silence goodbye and the
time-limit close are never cut (the hang-up POST comes after the goodbye's speech ended, within
the suite's 300 ms); keys reach the LLM one way and the phone the other, and no digit reaches a
log line or a span."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from loguru import logger
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent import prompt
from agent.settings import Settings
from lab.assertions import assert_fired_at_turn_end
from lab.call_lab import CallLab
from lab.results import CallResult
from lab.scenarios import CATALOGUE, KEYPAD_THANKS, VOICEMAIL_APOLOGY, run_scenario
from lab.scripted_llm import LlmReply, ToolCallSpec
from lab.tts_model import TtsModel
from telemetry import TracingObserverFactory
from tests.tiers import at_tier_pace

# Every call here takes seconds of real telephony time (rings, AMD, silences, limits).
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RESUME_BOUND_S = 1.5  # as tests/timing/test_transfer_outcomes.py: the caller hears the agent again
LATE_S = 0.300  # lab/assertions.py LATE_BOUND_S


def outcomes(result: CallResult) -> list[dict[str, Any]]:
    """The transfer's outcome events the agent got, as the harness delivered them."""
    return [e.detail["metadata"] for e in result.timeline.of_kind("user_custom")]


async def test_a_busy_destination_falls_back_to_the_next_which_connects() -> None:
    result = await run_scenario(at_tier_pace(CATALOGUE["transfer-fallback"]()))
    assert_fired_at_turn_end(result, "call_transfer")
    seen = [(m["status"], m["destination"], m["attempt"]) for m in outcomes(result)]
    assert seen == [
        ("ringing", "sales", 1),
        ("attempt_failed", "sales", 1),
        ("ringing", "support", 2),
        ("connected", "support", 2),
    ], result.render()
    assert outcomes(result)[1]["reason"] == "busy" and outcomes(result)[3]["amd"] == "human"
    names = [r.name for r in result.actions]
    assert names.index("telephony.attempt_failed") < names.index("telephony.connected")
    [request] = result.requests  # one POST: the fallback is VoxEngine's, not the agent's
    assert b'"destination":"sales"' in request.body
    closed = result.timeline.first("socket_closed")
    assert closed is not None and closed.detail["by"] == "voxengine"  # bridged: the agent detached
    phone = [what for _, what in result.phone]
    assert (
        phone.index("amd: human") < phone.index("whisper started") < phone.index("told the agent: connected")
    )


async def test_a_voicemail_is_never_bridged_and_the_agent_speaks_again_at_once() -> None:
    result = await run_scenario(at_tier_pace(CATALOGUE["transfer-voicemail"]()))
    [_, failed] = outcomes(result)
    assert (failed["status"], failed["reason"], failed["destination"]) == ("failed", "voicemail", "sales")
    phone = [what for _, what in result.phone]
    assert "whisper started" not in phone and not any(w.startswith("bridged") for w in phone)
    apology = result.timeline.turns()[2]
    assert apology.text == VOICEMAIL_APOLOGY
    [told] = [e for e in result.timeline.of_kind("user_custom") if e.detail["metadata"]["status"] == "failed"]
    assert 0 < apology.started_at - told.at <= RESUME_BOUND_S


async def test_voicemail_is_worded_for_the_llm() -> None:
    scenario = at_tier_pace(CATALOGUE["transfer-voicemail"]())
    settings = dataclasses.replace(Settings(), **scenario.agent_settings)
    async with CallLab(
        scenario.replies, destinations=scenario.destinations, pace=scenario.pace, settings=settings
    ) as lab:
        async with lab.call(tts=scenario.tts, close_after_end_call="no") as sim:
            await scenario.drive(sim)
        await lab.wait_calls_ended(1)
    told = [str(m.get("content")) for m in lab.llm.requests[-1]["messages"]]
    assert any("did not go through" in text and "voicemail answered" in text for text in told)


def assert_goodbye_never_cut(result: CallResult, goodbye: str) -> None:
    timing = assert_fired_at_turn_end(result, "end_call")
    turn = timing.turn
    assert turn is not None and turn.text == goodbye and not turn.interrupted, result.render()
    [hang_up] = result.hang_ups
    assert turn.stopped_at is not None and hang_up.time >= turn.stopped_at  # the goodbye played out


async def test_the_silence_goodbye_is_never_cut() -> None:
    result = await run_scenario(CATALOGUE["silence-hangup"]())
    intro, check_in, _ = result.timeline.turns()
    assert check_in.text == prompt.SILENCE_CHECK_IN
    assert intro.ended_at is not None and check_in.started_at - intro.ended_at >= 2.0  # VOX_SILENCE_PROMPT_S
    [enqueued] = [r for r in result.actions if r.name == "enqueued"]
    assert 5.0 <= enqueued.at - intro.ended_at < 5.0 + 1.0  # VOX_SILENCE_HANGUP_S, from the last speech
    assert_goodbye_never_cut(result, prompt.SILENCE_GOODBYE)


async def test_the_time_limit_close_is_never_cut() -> None:
    result = await run_scenario(CATALOGUE["max-call"]())
    [enqueued] = [r for r in result.actions if r.name == "enqueued"]
    start = result.timeline.events[0].at
    assert 7.0 <= enqueued.at - start < 7.0 + 1.0  # VOX_MAX_CALL_S 10 minus the 3 s margin
    assert_goodbye_never_cut(result, prompt.TIME_LIMIT_GOODBYE)


async def test_keys_reach_the_llm_and_the_phone_and_no_digit_reaches_a_log_or_a_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}", level="DEBUG")
    replies = [
        LlmReply(text=KEYPAD_THANKS, when_user_says="*7*7#"),
        LlmReply(text="Pressing it now.", tool_calls=(ToolCallSpec("send_dtmf", {"button": "9"}),)),
    ]
    try:
        async with CallLab(replies, observers=[TracingObserverFactory(provider)]) as lab:
            async with lab.call(tts=TtsModel(first_audio_s=0.1, words_per_s=8.0)) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
                assert await lab.emulator.caller_presses("*7*7#") == 5  # VoxEngine → the agent
                await sim.wait_agent_turn_end(2, timeout_s=30)
                await sim.user_says("Please press nine for me.")
                [tone] = await lab.emulator.wait_for_tones(1, timeout=30)
                await sim.wait_agent_turn_end(3, timeout_s=30)
            await lab.wait_calls_ended(1)
    finally:
        logger.remove(sink)
        provider.shutdown()
    # One entry, as the caller's turn, in the request that produced the thanks, and still there,
    # where it was typed, when the caller asks for a key.
    thanks = next(i for i, r in enumerate(lab.llm.served) if r.text == KEYPAD_THANKS)
    press = next(i for i, r in enumerate(lab.llm.served) if r.tool_calls)
    asked = [str(m.get("content")) for m in lab.llm.requests[thanks]["messages"] if m.get("role") == "user"]
    assert asked == [prompt.keypad_note("*7*7#")]
    later = [str(m.get("content")) for m in lab.llm.requests[press]["messages"] if m.get("role") == "user"]
    assert later == [prompt.keypad_note("*7*7#"), "Please press nine for me."]
    assert sim.turns()[1].text == KEYPAD_THANKS
    assert (tone.leg, tone.key) == ("caller", "9")  # the agent's key, played to the caller's leg
    # Counted, never shown.
    log = "".join(lines)
    assert "*7*7" not in log and "keypad: an entry of 5 keys from the caller" in log
    assert log.count("DTMF received: REDACTED") == 5 and "DTMF sent: REDACTED" in log
    assert "'button': '9'" not in log
    shown = [
        str(value)
        for span in exporter.get_finished_spans()
        for attributes in (span.attributes or {}, *(e.attributes or {} for e in span.events))
        for value in attributes.values()
    ]
    assert shown and not any("*7*7" in value for value in shown)
