"""Hostile harness input against the real app on loopback: junk start messages, junk frames,
huge frames, and agent/user state events out of order, duplicated or missing.

What must hold: the server never crashes (it serves a normal call afterwards), no action is
stuck (the flush deadlines or the call's end release it, and it gets exactly one outcome), and no
action is fired while its confirming turn is speaking. A raw websocket client sends exactly the
frames under test; the app's own observer hook (`HarnessEventLog`) tells when the app has
processed them, so "nothing was released" is checked at a known point, not after a sleep.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from agent import prompt
from agent.flush_policy import FlushTimings
from agent.retry_policy import RetryPolicy
from agent.settings import Settings
from lab.call_lab import ActionRecord, CallLab
from lab.harness import start_message
from lab.tts_model import TtsModel
from lab.voxengine_emulator import Effect
from tests.hardening._support import CHAT_REPLY, INTRO_TEXT, HarnessEventLog, RawHarness, tool_agent

pytestmark = pytest.mark.anyio

QUICK_TTS = TtsModel(first_audio_s=0.01, words_per_s=200)
QUICK_RETRY = RetryPolicy(
    deadline_s=2.0, attempt_timeout_s=0.5, backoff_initial_s=0.02, backoff_max_s=0.05, jitter_s=0.01
)
# Turn events alone decide: the deadlines are far beyond anything these tests wait for.
TURNS_ONLY = FlushTimings(no_speech_s=5.0, max_hold_s=10.0)


@asynccontextmanager
async def hostile_lab(timings: FlushTimings = TURNS_ONLY) -> AsyncIterator[tuple[CallLab, HarnessEventLog]]:
    events = HarnessEventLog()
    settings = dataclasses.replace(Settings(), timings=timings, retry=QUICK_RETRY, drain_timeout_s=4.0)
    async with CallLab(agent_factory=tool_agent, settings=settings, observers=[events.factory]) as lab:
        yield lab, events
        await serves_a_normal_call(lab)
        assert lab.app is not None and lab.app.live_calls == set()


async def serves_a_normal_call(lab: CallLab) -> None:
    """The server still plays a whole normal call: transfer asked, confirmed, delivered."""
    before = len(lab.recorder.outcomes())
    async with lab.call(tts=QUICK_TTS, session="normal", call_id="normal") as sim:
        await sim.wait_agent_turn_end(1)
        await sim.user_says("An operator, please.")
        confirming = await sim.wait_agent_turn_end(2)
        outcomes = await lab.wait_outcomes(before + 1, timeout_s=10)
    assert confirming.text == prompt.TRANSFER_CONFIRMATION
    [outcome] = [o for o in outcomes if o.call_id == "normal"]
    assert outcome.name == "delivered", outcome


def records(lab: CallLab, call_id: str, name: str | None = None) -> list[ActionRecord]:
    return [r for r in lab.recorder.actions if r.call_id == call_id and name in (None, r.name)]


def effects_of(lab: CallLab, session: str) -> list[Effect]:
    return [e for e in lab.emulator.effects if e.session == session]


def message_is(text: str) -> Any:
    return lambda m: isinstance(m, dict) and m.get("type") == "message" and m.get("content") == text


def start_with(**fields: Any) -> dict[str, Any]:
    message = start_message(call_id="junk-start")
    message.update(fields)
    return message


# ---- start messages ---------------------------------------------------------------------------

JUNK_STARTS: list[tuple[str, dict[str, Any], str]] = [
    # Line refuses a start message it cannot parse: an error frame, then the socket is closed.
    ("metadata-list", {"start": start_with(metadata=["https://8.8.4.4/request/a/b"])}, "refused"),
    ("metadata-string", {"start": start_with(metadata="https://8.8.4.4/request/a/b")}, "refused"),
    ("metadata-number", {"start": start_with(metadata=42)}, "refused"),
    ("metadata-bool", {"start": start_with(metadata=True)}, "refused"),
    ("agent-string", {"start": start_with(agent="sim-agent")}, "refused"),
    ("call-id-number", {"start": start_with(call_id=12345)}, "refused"),
    ("wrong-type", {"start": {"type": "message", "content": "hi"}}, "refused"),
    ("start-list", {"start": [1, 2, 3]}, "refused"),
    ("start-string", {"start": "start"}, "refused"),
    ("start-null", {"raw_start": "null"}, "refused"),
    ("start-not-json", {"raw_start": "hello, I am not JSON"}, "refused"),
    ("start-binary", {"raw_start": b"\x00\xff\xfe binary"}, "refused"),
    ("start-deep-nesting", {"raw_start": "[" * 200_000 + "]" * 200_000}, "refused"),
    # A start message Line accepts, with junk where the control URL should be: the call goes on
    # without telephony actions.
    ("metadata-null", {"start": start_with(metadata=None)}, "missing"),
    ("start-empty-object", {"start": {}}, "missing"),
    (
        "url-nested-junk",
        {"metadata": {"vox_session_control_url": {"$gt": ""}, "x": [[{"a": [None]}]]}},
        "not_a_string",
    ),
    ("url-list", {"metadata": {"vox_session_control_url": ["https://8.8.4.4/request/a/b"]}}, "not_a_string"),
    ("url-number", {"metadata": {"vox_session_control_url": 1e308}}, "not_a_string"),
    ("url-bool", {"metadata": {"vox_session_control_url": False}}, "not_a_string"),
    ("metadata-5mb", {"metadata": {"junk": "x" * 5_000_000}}, "missing"),
]


@pytest.mark.parametrize(
    ("options", "expected"), [(o, e) for _, o, e in JUNK_STARTS], ids=[i for i, _, _ in JUNK_STARTS]
)
async def test_a_junk_start_message_is_refused_or_served_and_the_server_goes_on(
    options: dict[str, Any], expected: str
) -> None:
    async with hostile_lab() as (lab, _):
        async with RawHarness.connect(lab.ws_url, call_id="junk-start", **options) as raw:
            if expected == "refused":
                await raw.wait_closed()
                assert raw.of_type("error"), raw.received  # Line says why before closing
                assert lab.recorder.calls == {}  # no call scope was ever opened
            else:
                await raw.wait_for(message_is(INTRO_TEXT))
                idle = await raw.user_turn("An operator, please.")
                await raw.wait_response_end(idle)
                assert prompt.UNAVAILABLE in raw.texts()  # the tool says it cannot; no crash
                idle = await raw.user_turn("What are your hours?")
                await raw.wait_response_end(idle)
                assert raw.texts()[-1] == CHAT_REPLY
                [call] = lab.recorder.calls.values()
                assert call.control_refusal == expected
                assert not raw.of_type("error")
        assert lab.recorder.actions == []


# ---- junk frames during a call ----------------------------------------------------------------

JUNK_FRAMES: list[Any] = [
    {"type": "bogus", "content": "x"},
    {"type": "message"},  # no content
    {"type": "message", "content": 42},
    {"type": "message", "content": {"nested": ["junk"]}},
    {"type": "user_state", "value": 7},
    {"type": "agent_state"},
    {"type": "dtmf", "button": {"a": 1}},
    {"type": "custom", "metadata": "not a dict"},
    {"type": "custom", "metadata": {"anything": [1, 2, 3]}},
    {"type": "validation_error", "error_message": "x", "error_type": "y"},
    {"type": None},
    {"no_type": True},
    [1, 2, 3],
    "a string",
    42,
    None,
    {"type": "bogus", "content": "y" * 5_000_000},  # 5 MB of nothing useful
]


async def test_junk_frames_during_a_call_are_dropped_and_the_call_goes_on() -> None:
    async with hostile_lab() as (lab, events):
        url = lab.emulator.control_url("junk")
        async with RawHarness.connect(
            lab.ws_url, call_id="junk", metadata={"vox_session_control_url": url}
        ) as raw:
            await raw.wait_for(message_is(INTRO_TEXT))
            for frame in JUNK_FRAMES:
                await raw.send(frame)
            await raw.marker()
            await events.wait_marker("junk", 1, timeout_s=20)
            assert not raw.closed.is_set() and not raw.of_type("error")
            # The call still works end to end.
            await raw.user_turn("An operator, please.")
            await raw.wait_for(message_is(prompt.TRANSFER_CONFIRMATION))
            await raw.agent_state("speaking")
            await raw.agent_state("idle")
            [outcome] = await lab.wait_outcomes(1)
        await lab.wait_calls_ended(1)
    assert outcome.name == "delivered"
    [released] = records(lab, "junk", "released")
    assert released.attrs["reason"] == "turn_ended"


async def test_a_5mb_transcript_is_heard_and_acted_on() -> None:
    async with hostile_lab() as (lab, _):
        url = lab.emulator.control_url("big")
        async with RawHarness.connect(
            lab.ws_url, call_id="big", metadata={"vox_session_control_url": url}
        ) as raw:
            await raw.wait_for(message_is(INTRO_TEXT))
            await raw.user_turn("blah " * 1_000_000 + "operator")  # ~5 MB
            await raw.wait_for(message_is(prompt.TRANSFER_CONFIRMATION), timeout_s=30)
            await raw.agent_state("speaking")
            await raw.agent_state("idle")
            [outcome] = await lab.wait_outcomes(1, timeout_s=30)
        await lab.wait_calls_ended(1)
    assert outcome.name == "delivered"
    [effect] = [e for e in lab.emulator.effects if e.session == "big"]
    assert effect.action == "call_transfer" and effect.summary is not None and len(effect.summary) <= 2000


KILLERS: list[tuple[str, str | bytes]] = [
    ("binary-frame", b"\x00\x01 binary"),
    ("not-json", "{not json"),
    ("over-16mb", "x" * (17 * 1024 * 1024)),  # uvicorn's websocket size limit: closed with 1009
    # Line's input conversion raises on a state it does not know, and ends the call.
    ("agent-state-bogus", json.dumps({"type": "agent_state", "value": "bogus"})),
    ("user-state-bogus", json.dumps({"type": "user_state", "value": "bogus"})),
]


@pytest.mark.parametrize("frame", [f for _, f in KILLERS], ids=[i for i, _ in KILLERS])
async def test_a_frame_that_kills_the_socket_still_delivers_the_held_action(frame: str | bytes) -> None:
    # Line closes the socket on these, without a CallEnded event except for the oversized frame;
    # the call's scope must still release what it holds and deliver it when the call ends.
    async with hostile_lab() as (lab, events):
        url = lab.emulator.control_url("killed")
        async with RawHarness.connect(
            lab.ws_url, call_id="killed", metadata={"vox_session_control_url": url}
        ) as raw:
            await raw.wait_for(message_is(INTRO_TEXT))
            await raw.user_turn("An operator, please.")
            await raw.wait_for(message_is(prompt.TRANSFER_CONFIRMATION))
            await raw.agent_state("speaking")  # mid-confirmation
            await raw.marker()
            await events.wait_marker("killed", 1)
            assert lab.emulator.requests == []
            await raw.send_raw(frame)
            await raw.wait_closed(timeout_s=20)
            [outcome] = await lab.wait_outcomes(1, timeout_s=10)
        await lab.wait_calls_ended(1)
    assert outcome.name == "delivered"
    [released] = records(lab, "killed", "released")
    assert released.attrs["reason"] == "call_ended"
    assert len(effects_of(lab, "killed")) == 1


# ---- turn events out of order, duplicated, missing --------------------------------------------


async def test_out_of_order_turn_events_never_fire_an_action_during_its_speech() -> None:
    async with hostile_lab() as (lab, events):
        url = lab.emulator.control_url("ooo")
        async with RawHarness.connect(
            lab.ws_url, call_id="ooo", metadata={"vox_session_control_url": url}
        ) as raw:
            await raw.wait_for(message_is(INTRO_TEXT))
            # Before any turn: idle before speaking, a user idle without speaking, idle again.
            await raw.agent_state("idle")
            await raw.user_state("idle")
            await raw.agent_state("idle")
            await raw.user_turn("An operator, please.")
            await raw.wait_for(message_is(prompt.TRANSFER_CONFIRMATION))
            await raw.agent_state("speaking")  # the confirmation starts playing
            # While it plays: everything a confused harness might send, except its turn end.
            await raw.send({"type": "agent_speech", "content": "Sure,"})
            await raw.user_state("speaking")
            await raw.user_state("speaking")  # speaking twice
            await raw.transcript("wait, what")
            await raw.user_state("idle")
            await raw.user_state("idle")  # idle twice (each one runs the agent again)
            await raw.user_state("idle")
            await raw.send({"type": "bogus"})
            await raw.send({"type": "agent_speech", "content": "I'm"})
            await raw.marker()
            await events.wait_marker("ooo", 1)
            assert records(lab, "ooo", "released") == [], "released while its turn was speaking"
            assert lab.emulator.requests == []
            assert [r.attrs["turn"] for r in records(lab, "ooo", "armed")] == [1]
            idle_sent = time.perf_counter()
            await raw.agent_state("idle")  # the confirmation's turn ends
            [outcome] = await lab.wait_outcomes(1)
            # Then: duplicate idles, and a turn that carries nothing.
            await raw.agent_state("idle")
            await raw.agent_state("idle")
            await raw.agent_state("speaking")
            await raw.agent_state("idle")
            await raw.marker()
            await events.wait_marker("ooo", 2)
        await lab.wait_calls_ended(1)
    assert outcome.name == "delivered"
    [released] = records(lab, "ooo", "released")
    assert released.attrs["reason"] == "turn_ended"
    [request] = [r for r in lab.emulator.requests if r.session == "ooo"]
    assert request.time >= idle_sent
    assert len(effects_of(lab, "ooo")) == 1
    assert len(records(lab, "ooo", "enqueued")) == 1  # the repeated user turns asked again: held once


async def test_a_second_speaking_without_idle_ends_the_carrier_turn() -> None:
    async with hostile_lab() as (lab, events):
        url = lab.emulator.control_url("twice")
        async with RawHarness.connect(
            lab.ws_url, call_id="twice", metadata={"vox_session_control_url": url}
        ) as raw:
            await raw.wait_for(message_is(INTRO_TEXT))
            await raw.user_turn("An operator, please.")
            await raw.wait_for(message_is(prompt.TRANSFER_CONFIRMATION))
            await raw.agent_state("speaking")
            await raw.marker()
            await events.wait_marker("twice", 1)
            assert records(lab, "twice", "released") == []
            second = time.perf_counter()
            await raw.agent_state("speaking")  # the harness lost the idle: that turn is over
            [outcome] = await lab.wait_outcomes(1)
        await lab.wait_calls_ended(1)
    assert outcome.name == "delivered"
    [released] = records(lab, "twice", "released")
    assert released.attrs["reason"] == "turn_ended"
    assert released.at >= second


async def test_a_turn_that_never_ends_is_released_at_max_hold() -> None:
    timings = FlushTimings(no_speech_s=5.0, max_hold_s=1.0)
    async with hostile_lab(timings) as (lab, events):
        url = lab.emulator.control_url("noidle")
        async with RawHarness.connect(
            lab.ws_url, call_id="noidle", metadata={"vox_session_control_url": url}
        ) as raw:
            await raw.wait_for(message_is(INTRO_TEXT))
            await raw.user_turn("An operator, please.")
            await raw.agent_state("speaking")  # the confirmation plays ... and its idle never comes
            await raw.wait_for(message_is(prompt.TRANSFER_CONFIRMATION))
            await raw.send({"type": "agent_speech", "content": "Sure,"})
            [outcome] = await lab.wait_outcomes(1, timeout_s=10)
            await raw.agent_state("idle")  # far too late
            await raw.marker()
            await events.wait_marker("noidle", 1)
        await lab.wait_calls_ended(1)
    assert outcome.name == "delivered"
    [enqueued] = records(lab, "noidle", "enqueued")
    [released] = records(lab, "noidle", "released")
    assert records(lab, "noidle", "armed"), "the confirmation's turn carried the action"
    assert released.attrs["reason"] == "max_hold"
    assert timings.max_hold_s <= released.at - enqueued.at <= timings.max_hold_s + 2.0
    assert len(effects_of(lab, "noidle")) == 1


async def test_speech_that_never_starts_is_released_at_no_speech() -> None:
    timings = FlushTimings(no_speech_s=0.3, max_hold_s=5.0)
    async with hostile_lab(timings) as (lab, _):
        url = lab.emulator.control_url("mute")
        async with RawHarness.connect(
            lab.ws_url, call_id="mute", metadata={"vox_session_control_url": url}
        ) as raw:
            await raw.wait_for(message_is(INTRO_TEXT))
            await raw.user_turn("An operator, please.")
            await raw.wait_for(message_is(prompt.TRANSFER_CONFIRMATION))
            await raw.agent_state("idle")  # orphan idles and an empty user turn; never `speaking`
            await raw.user_state("idle")
            await raw.agent_state("idle")
            [outcome] = await lab.wait_outcomes(1, timeout_s=10)
        await lab.wait_calls_ended(1)
    assert outcome.name == "delivered"
    [enqueued] = records(lab, "mute", "enqueued")
    [released] = records(lab, "mute", "released")
    assert records(lab, "mute", "armed") == []
    assert released.attrs["reason"] == "no_speech"
    assert timings.no_speech_s <= released.at - enqueued.at <= timings.no_speech_s + 2.0


async def test_junk_json_values_never_reach_the_control_plane_as_events() -> None:
    # Only well-formed inputs become events: the control plane observed exactly what a
    # well-behaved harness would have caused, and none of the junk.
    async with hostile_lab() as (lab, events):
        async with RawHarness.connect(lab.ws_url, call_id="count", metadata={}) as raw:
            await raw.wait_for(message_is(INTRO_TEXT))
            for frame in JUNK_FRAMES[:-1]:
                await raw.send(frame)
            await raw.send_raw(json.dumps({"type": "dtmf", "button": "#"}))
            names = await events.wait_marker("count", 1)
    assert names[0] == "CallStarted"
    # custom with a dict metadata is a valid input; everything else was dropped by Line.
    assert names[1:] == ["UserCustomSent", "UserDtmfSent"], names
