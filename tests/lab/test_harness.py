"""The harness simulator against a real VoiceAgentApp (and a bare peer for the wire shapes)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import anyio
import pytest
import uvicorn
from line._harness_types import (
    AgentSpeechInput,
    AgentStateInput,
    DTMFInput,
    InputMessage,
    StartInput,
    TranscriptionInput,
    UserStateInput,
)
from line.agent import AgentEnv, TurnEnv
from line.events import (
    AgentEndCall,
    AgentSendText,
    AgentToolCalled,
    AgentToolReturned,
    AgentTurnEnded,
    CallEnded,
    CallStarted,
    InputEvent,
    OutputEvent,
    UserTurnEnded,
    UserTurnStarted,
)
from line.voice_agent_app import CallRequest, VoiceAgentApp
from pydantic import TypeAdapter
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from lab.harness import HarnessSimulator, Timeline, TimelineEvent, TtsModel, parse_output
from lab.harness_profile import FAITHFUL, IDEALISED, HarnessProfile, WordAcks

pytestmark = pytest.mark.anyio

CONTROL_URL = "https://127.0.0.1:12092/request/session-1/token-1"
Step: TypeAlias = "OutputEvent | float"  # a float makes the agent pause that long between outputs
Reply = Callable[[InputEvent], Sequence[Step]]


class Probe:
    """A hand-written agent: replies per ``reply`` and records every event the app derives."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.seen = Timeline()  # agent-side observations, on the lab clock
        self.requests: list[CallRequest] = []

    async def get_agent(self, env: AgentEnv, request: CallRequest) -> Any:
        self.requests.append(request)
        return (self.agent, self.run_filter, self.cancel_filter)

    def run_filter(self, event: InputEvent) -> bool:
        # The app asks the run filter about every event, so it doubles as the observer.
        self.seen.record(type(event).__name__, {"event": event, "event_id": event.event_id})
        return isinstance(event, (CallStarted, UserTurnEnded, AgentTurnEnded, CallEnded))

    @staticmethod
    def cancel_filter(event: InputEvent) -> bool:
        return isinstance(event, UserTurnStarted)

    async def agent(self, env: TurnEnv, event: InputEvent) -> AsyncIterator[OutputEvent]:
        for step in self.reply(event):
            if isinstance(step, float):
                await anyio.sleep(step)
            else:
                yield step

    def names(self) -> list[str]:
        return [e.kind for e in self.seen.events]


def spoken_content(event: TimelineEvent) -> list[str]:
    """The words of an agent-side AgentTurnEnded event."""
    return [c.content for c in event.detail["event"].content]


@asynccontextmanager
async def serve_app(probe: Probe) -> AsyncIterator[str]:
    """A real VoiceAgentApp on 127.0.0.1 (ephemeral port), in this event loop."""
    app = VoiceAgentApp(get_agent=probe.get_agent)
    server = uvicorn.Server(uvicorn.Config(app.fastapi_app, lifespan="off", log_level="warning"))
    # Bound and listening before the server starts: early clients wait in the backlog.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            try:
                yield f"ws://127.0.0.1:{sock.getsockname()[1]}/ws"
            finally:
                server.should_exit = True


def on(**replies: Sequence[Step]) -> Reply:
    """Reply by event class name, e.g. ``on(CallStarted=[AgentSendText(text="Hi")])``."""
    return lambda event: replies.get(type(event).__name__, [])


# ---------------------------------------------------------------- the TTS model


def test_tts_model_durations_and_seeded_jitter() -> None:
    tts = TtsModel(first_audio_s=0.25, words_per_s=2.5, jitter_s=0.05, seed=3)
    assert tts.duration_of("  one two\nthree  four ") == pytest.approx(1.6)
    assert tts.duration_of("") == 0.0
    draws = [tts.first_audio_delay_s(rng) for rng in (tts.rng(), tts.rng())]
    assert draws[0] == draws[1]
    assert 0.25 <= draws[0] <= 0.30
    assert TtsModel(jitter_s=0.0).first_audio_delay_s(TtsModel().rng()) == 0.25
    with pytest.raises(ValueError):
        TtsModel(words_per_s=0)


# ---------------------------------------------------------------- wire shapes

START_WIRE = {
    "type": "start",
    "call_id": "c-9",
    "from": "+15551230000",
    "to": "+15559870000",
    "agent_call_id": "c-9",
    "agent": {"id": "agent-7", "introduction": "Hi"},
    "metadata": {"vox_session_control_url": CONTROL_URL},
}
# What the real harness sends, event ids left out; pinned so that a renamed SDK field fails here.
INPUTS_WIRE: list[tuple[dict[str, Any], type]] = [
    ({"type": "agent_state", "value": "speaking"}, AgentStateInput),
    ({"type": "agent_speech", "content": "Hi"}, AgentSpeechInput),
    ({"type": "agent_speech", "content": "there."}, AgentSpeechInput),
    ({"type": "agent_state", "value": "idle"}, AgentStateInput),
    ({"type": "user_state", "value": "speaking"}, UserStateInput),
    ({"type": "message", "content": "hello"}, TranscriptionInput),
    ({"type": "user_state", "value": "idle"}, UserStateInput),
    ({"type": "dtmf", "button": "5"}, DTMFInput),
]
OUTPUTS_WIRE: list[Any] = [
    {"type": "message", "content": "Hi  there.", "interruptible": True, "responding_to": None},
    {
        "type": "tool_call",
        "name": "transfer_call",
        "arguments": {"summary": "wants a human"},
        "result": "accepted",
        "id": "t-1",
        "responding_to": "e-1",
    },
    {"type": "log_metric", "name": "llm_ttft_s", "value": 0.4},
    {"type": "response_end", "responding_to": "e-1"},
    {"type": "error", "content": "boom"},
    {"type": "brand_new_output", "x": 1},
    "not an object",
]


async def test_wire_shapes_round_trip_through_the_sdk_models() -> None:
    received: list[Any] = []

    async def peer(ws: ServerConnection) -> None:
        received.append(json.loads(await ws.recv()))
        for out in OUTPUTS_WIRE:
            await ws.send(out if isinstance(out, str) else json.dumps(out))
        try:
            async for frame in ws:
                received.append(json.loads(frame))
        except ConnectionClosed:
            pass

    tts = TtsModel(first_audio_s=0.02, words_per_s=50.0)
    async with (
        ws_serve(peer, "127.0.0.1", 0) as server,
        HarnessSimulator.connect(
            f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}",
            metadata={"vox_session_control_url": CONTROL_URL},
            tts=tts,
            profile=IDEALISED,
            call_id="c-9",
            from_="+15551230000",
            to="+15559870000",
            agent_id="agent-7",
            introduction="Hi",
        ) as sim,
    ):
        turn = await sim.wait_agent_turn_end(1, timeout_s=5)
        await sim.user_says("hello")
        await sim.send_dtmf("5")
        await sim.wait_for("unknown_output", where=lambda e: "not an object" in e.detail["raw"])
        await sim.close()

    assert received[0] == START_WIRE
    start = StartInput.model_validate(received[0])
    assert (start.from_, start.metadata) == ("+15551230000", {"vox_session_control_url": CONTROL_URL})
    inputs = received[1:]
    assert [{k: v for k, v in m.items() if k != "event_id"} for m in inputs] == [w for w, _ in INPUTS_WIRE]
    adapter: TypeAdapter[Any] = TypeAdapter(InputMessage)
    assert [type(adapter.validate_python(m)) for m in inputs] == [cls for _, cls in INPUTS_WIRE]
    ids = [m["event_id"] for m in inputs]
    assert all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids)

    assert turn.text == "Hi there." and not turn.interrupted
    tl = sim.timeline
    assert [e.detail["content"] for e in tl.of_kind("agent_text_received")] == ["Hi  there."]
    [call] = sim.tool_calls()
    assert (call.name, dict(call.arguments), call.result, call.id) == (
        "transfer_call",
        {"summary": "wants a human"},
        "accepted",
        "t-1",
    )
    assert tl.of_kind("log_metric")[0].detail == {"name": "llm_ttft_s", "value": 0.4, "responding_to": None}
    assert tl.of_kind("response_end")[0].detail["responding_to"] == "e-1"
    assert tl.of_kind("error")[0].detail["content"] == "boom"
    assert len(tl.of_kind("unknown_output")) == 2
    assert parse_output({"type": "end_call"}) is not None
    assert parse_output({"type": "message"}) is None  # content is required


# ---------------------------------------------------------------- against the real app


async def test_start_metadata_reaches_get_agent() -> None:
    probe = Probe(on())
    async with (
        serve_app(probe) as url,
        HarnessSimulator.connect(url, metadata={"vox_session_control_url": CONTROL_URL}, call_id="c-1"),
    ):
        await probe.seen.wait_for("CallStarted", timeout_s=5)
    [request] = probe.requests
    assert request.metadata == {"vox_session_control_url": CONTROL_URL}
    assert (request.call_id, request.agent_call_id, request.agent.id) == ("c-1", "c-1", "sim-agent")


async def test_agent_text_plays_on_the_model_schedule() -> None:
    intro = "Hello there, this is the lab agent speaking to you now."
    tts = TtsModel(first_audio_s=0.2, words_per_s=10.0, jitter_s=0.05, seed=7)
    probe = Probe(on(CallStarted=[AgentSendText(text=intro)]))
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=IDEALISED) as sim:
        turn = await sim.wait_agent_turn_end(1, timeout_s=5)
        agent_end = await probe.seen.wait_for("AgentTurnEnded", timeout_s=5)

    first_audio = tts.first_audio_delay_s(tts.rng())  # the simulator's first draw
    assert first_audio - 0.002 <= turn.started_at - turn.queued_at <= first_audio + 0.1
    duration = tts.duration_of(intro)
    assert turn.ended_at is not None
    assert duration - 0.002 <= turn.ended_at - turn.started_at <= duration + 0.1
    words = sim.timeline.of_kind("agent_word")
    assert [w.detail["word"] for w in words] == intro.split()
    # Word i is due at start + i * word_s on the loop clock (no drift accumulates) and lands then.
    [started] = sim.timeline.of_kind("agent_turn_started")
    start = started.detail["scheduled_at"]
    assert 0 <= turn.started_at - start <= 0.1
    for i, word in enumerate(words, start=1):
        assert word.detail["scheduled_at"] == pytest.approx(start + i * tts.word_s, abs=1e-6)
        assert 0 <= word.at - word.detail["scheduled_at"] <= 0.1
    kinds = [
        e.kind
        for e in sim.timeline.events
        if e.kind in {"agent_text_received", "agent_turn_started", "agent_word", "agent_turn_ended"}
    ]
    assert kinds == ["agent_text_received", "agent_turn_started"] + ["agent_word"] * len(intro.split()) + [
        "agent_turn_ended"
    ]
    assert spoken_content(agent_end) == intro.split()
    assert turn.text == intro and not turn.interrupted


async def test_playback_catches_up_after_a_loop_stall_without_drift() -> None:
    text = " ".join(["tick"] * 12)
    tts = TtsModel(first_audio_s=0.05, words_per_s=10.0)
    probe = Probe(on(CallStarted=[AgentSendText(text=text)]))
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=IDEALISED) as sim:
        await sim.timeline.wait_until(lambda: len(sim.timeline.of_kind("agent_word")) >= 3, timeout_s=5)
        time.sleep(0.25)  # noqa: ASYNC251 -- stall the event loop on purpose
        turn = await sim.wait_agent_turn_end(1, timeout_s=5)

    late = [w.at - w.detail["scheduled_at"] for w in sim.timeline.of_kind("agent_word")]
    assert len(late) == 12
    assert max(late) >= 0.1  # the stall did delay words...
    assert late[-1] < 0.05  # ...but later words keep their absolute deadlines
    start = sim.timeline.of_kind("agent_turn_started")[0].detail["scheduled_at"]
    assert turn.ended_at is not None
    assert 0 <= turn.ended_at - (start + tts.duration_of(text)) < 0.05


async def test_streamed_chunks_join_one_turn_and_later_text_opens_the_next() -> None:
    tts = TtsModel(first_audio_s=0.1, words_per_s=20.0)
    chunks: list[Step] = [AgentSendText(text="Hum"), 0.01, AgentSendText(text="ana is "), 0.01]
    probe = Probe(
        on(
            CallStarted=[*chunks, AgentSendText(text="calling.")],
            AgentTurnEnded=[AgentSendText(text="Second turn.")],
        )
    )
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=IDEALISED) as sim:
        first = await sim.wait_agent_turn_end(1, timeout_s=5)
        second = await sim.wait_agent_turn_end(2, timeout_s=5)
        await probe.seen.wait_for(
            "AgentTurnEnded", where=lambda e: spoken_content(e) == ["Second", "turn."], timeout_s=5
        )
    assert first.text == "Humana is calling."
    assert second.text == "Second turn."
    assert first.ended_at is not None and first.ended_at < second.queued_at
    assert second.started_at - second.queued_at >= tts.first_audio_s - 0.002
    ended = [spoken_content(e) for e in probe.seen.of_kind("AgentTurnEnded")]
    assert ended[:2] == [["Humana", "is", "calling."], ["Second", "turn."]]


async def test_barge_in_truncates_speech_and_the_agent_sees_the_user_turn() -> None:
    intro = " ".join(f"word{i}" for i in range(1, 21))  # 2 s at 10 words/s
    tts = TtsModel(first_audio_s=0.05, words_per_s=10.0)
    probe = Probe(on(CallStarted=[AgentSendText(text=intro)], UserTurnEnded=[AgentSendText(text="Sure.")]))
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=IDEALISED) as sim:
        interrupted = await sim.barge_in(after_s=0.55, text="wait a moment")
        reply = await sim.wait_agent_turn_end(2, timeout_s=5)
        await probe.seen.wait_for("UserTurnEnded", timeout_s=5)

    assert interrupted
    first = sim.turns()[0]
    spoken = intro.split()[:5]  # words end at 0.1, 0.2, ... 0.5 s; the barge-in is at 0.55 s
    assert first.interrupted and first.text == " ".join(spoken)
    assert first.stopped_at is not None and first.ended_at is not None
    assert 0.55 - 0.002 <= first.stopped_at - first.started_at <= 0.55 + 0.05
    [stop] = sim.timeline.of_kind("agent_playback_stopped")
    assert stop.detail["dropped"] == " ".join(intro.split()[5:])
    assert all(w.at < stop.at for w in sim.timeline.of_kind("agent_word") if w.detail["turn"] == 1)
    assert reply.text == "Sure." and not reply.interrupted

    names = [n for n in probe.names() if n not in {"AgentTextSent", "CallEnded"}]
    assert names[:7] == [
        "CallStarted",
        "AgentTurnStarted",
        "UserTurnStarted",
        "AgentTurnEnded",
        "UserTextSent",
        "UserTurnEnded",
        "AgentTurnStarted",
    ]
    assert spoken_content(probe.seen.of_kind("AgentTurnEnded")[0]) == spoken
    user_end = probe.seen.of_kind("UserTurnEnded")[0].detail["event"]
    assert [c.content for c in user_end.content] == ["wait a moment"]


async def test_stale_idle_arrives_after_the_new_user_turn_and_the_reaction() -> None:
    intro = " ".join(f"word{i}" for i in range(1, 21))
    tts = TtsModel(first_audio_s=0.05, words_per_s=10.0)
    probe = Probe(on(CallStarted=[AgentSendText(text=intro)], UserTurnEnded=[AgentSendText(text="Okay.")]))
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts) as sim:
        await sim.barge_in(after_s=0.25, text="stop", stale_idle_delay_s=0.3)
        stale = await sim.wait_for("agent_turn_ended", where=lambda e: e.detail["turn"] == 1, timeout_s=5)
        agent_stale = await probe.seen.wait_for(
            "AgentTurnEnded", where=lambda e: e.detail["event_id"] == stale.detail["event_id"], timeout_s=5
        )

    tl = sim.timeline
    assert stale.detail["interrupted"] and stale.detail["stale"]
    assert stale.detail["text"] == "word1 word2"
    [stop] = [e for e in tl.of_kind("agent_playback_stopped") if e.detail["turn"] == 1]
    assert stale.at - stop.at >= 0.3 - 0.002
    # Line's runner needs speaking/idle to alternate: the reaction's turn waits for the late idle.
    reaction_start = tl.first("agent_turn_started", where=lambda e: e.detail["turn"] == 2)
    assert reaction_start is None or reaction_start.at > stale.at
    user_end = tl.of_kind("user_turn_ended")[0]
    reaction = tl.first("agent_text_received", where=lambda e: e.detail["content"] == "Okay.")
    assert reaction is not None
    assert stop.at < user_end.at < reaction.at < stale.at
    # The agent saw the new user turn start and end before the stale end of the interrupted turn.
    agent_user_start = probe.seen.of_kind("UserTurnStarted")[0]
    agent_user_end = probe.seen.of_kind("UserTurnEnded")[0]
    assert agent_user_start.at < agent_user_end.at < agent_stale.at
    assert not [e for e in probe.seen.of_kind("AgentTurnEnded") if e.at < agent_user_end.at]


@pytest.mark.parametrize("mode", ["no", "immediately", "after_speech"])
async def test_close_after_end_call(mode: Any) -> None:
    goodbye = "Goodbye, have a nice day."
    tts = TtsModel(first_audio_s=0.05, words_per_s=10.0)
    probe = Probe(on(UserTurnEnded=[AgentSendText(text=goodbye), AgentEndCall()]))
    async with (
        serve_app(probe) as url,
        HarnessSimulator.connect(url, tts=tts, close_after_end_call=mode) as sim,
    ):
        await sim.user_says("bye")
        end_call = await sim.wait_for("end_call_received", timeout_s=5)
        if mode == "no":
            await sim.wait_agent_turn_end(1, timeout_s=5)
            await sim.wait_until_idle(timeout_s=5)
            assert not sim.closed and not sim.timeline.of_kind("socket_closed")
            await sim.hang_up()
        closed = await sim.wait_closed(timeout_s=5)
        await probe.seen.wait_for("CallEnded", timeout_s=5)

    assert end_call.detail["reason"] == "agent_ended"
    tl = sim.timeline
    if mode == "immediately":
        assert closed.detail["by"] == "end_call"
        assert 0 <= closed.at - end_call.at < 0.1
        assert not tl.of_kind("agent_turn_ended")
        assert not probe.seen.of_kind("AgentTurnEnded")
    else:
        [turn] = sim.turns()
        assert turn.text == goodbye and turn.ended_at is not None
        assert turn.ended_at <= closed.at
        assert closed.detail["by"] == ("end_call" if mode == "after_speech" else "caller")
        names = probe.names()
        assert names.index("AgentTurnEnded") < names.index("CallEnded")
        if mode == "after_speech":
            assert closed.at - turn.ended_at < 0.1


async def test_action_after_turn_end_is_measured_on_one_clock() -> None:
    """The lab's purpose: an action fired on AgentTurnEnded lands 0–300 ms after the speech."""
    announcement = "Transferring you to a human now."

    def reply(event: InputEvent) -> Sequence[Step]:
        if isinstance(event, UserTurnEnded):
            return [AgentSendText(text=announcement)]
        if isinstance(event, AgentTurnEnded) and " ".join(c.content for c in event.content) == announcement:
            args = {"summary": "wants a human"}
            return [
                AgentToolCalled(tool_call_id="t-1", tool_name="transfer_call", tool_args=args),
                AgentToolReturned(tool_call_id="t-1", tool_name="transfer_call", tool_args=args, result="ok"),
            ]
        return []

    probe = Probe(reply)
    tts = TtsModel(first_audio_s=0.1, words_per_s=12.0, jitter_s=0.05)
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=IDEALISED) as sim:
        await sim.user_says("I want a human")
        turn = await sim.wait_agent_turn_end(1, timeout_s=5)
        await sim.wait_for("tool_call", where=lambda e: e.detail["result"] == "ok", timeout_s=5)
        await sim.wait_until_idle(timeout_s=5)

    calls = sim.tool_calls()
    assert [(c.name, c.result) for c in calls] == [("transfer_call", None), ("transfer_call", "ok")]
    assert dict(calls[0].arguments) == {"summary": "wants a human"}
    assert turn.ended_at is not None
    assert 0 <= calls[0].at - turn.ended_at <= 0.3


async def test_app_errors_are_recorded() -> None:
    def reply(event: InputEvent) -> Sequence[Step]:
        if isinstance(event, UserTurnEnded):
            raise RuntimeError("agent exploded")
        return []

    probe = Probe(reply)
    async with serve_app(probe) as url, HarnessSimulator.connect(url) as sim:
        await sim.user_says("hello")
        error = await sim.wait_for("error", timeout_s=5)
        closed = await sim.wait_closed(timeout_s=5)
        assert await sim.user_says("anyone?") is False  # nothing is sent on a closed call
    assert "agent exploded" in error.detail["content"]
    assert closed.detail["by"] == "app" and closed.at >= error.at
    assert not sim.timeline.of_kind("user_turn_started", since=closed.at)


async def test_waits_time_out_instead_of_hanging() -> None:
    probe = Probe(on())
    with anyio.fail_after(3):  # fail, don't hang, if a wait ignores its timeout
        async with serve_app(probe) as url, HarnessSimulator.connect(url) as sim:
            before = anyio.current_time()
            with pytest.raises(TimeoutError, match="agent_turn_ended"):
                await sim.wait_agent_turn_end(1, timeout_s=0.2)
            with pytest.raises(TimeoutError):
                await sim.barge_in(after_s=0.0, text="hello?", timeout_s=0.2)
            with pytest.raises(TimeoutError):
                await sim.wait_closed(timeout_s=0.2)
            assert anyio.current_time() - before < 1.0


async def test_nothing_outlives_the_context() -> None:
    long_intro = " ".join(["blah"] * 50)
    probe = Probe(on(CallStarted=[AgentSendText(text=long_intro)]))

    def ours() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if "HarnessSimulator" in t.get_name()]

    async with serve_app(probe) as url:
        async with HarnessSimulator.connect(url, tts=TtsModel(first_audio_s=0.01, words_per_s=10.0)) as sim:
            await sim.wait_for("agent_word", timeout_s=5)
            assert ours()
        assert not ours()
        assert sim.closed and sim.timeline.of_kind("socket_closed")[0].detail["by"] == "harness_exit"
        await probe.seen.wait_for("CallEnded", timeout_s=5)
        stop = sim.timeline.of_kind("agent_playback_stopped")[0]
        assert not [w for w in sim.timeline.of_kind("agent_word") if w.at > stop.at]


async def test_an_error_in_the_body_propagates_unwrapped() -> None:
    async def peer(ws: ServerConnection) -> None:
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass

    async with ws_serve(peer, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"
        with pytest.raises(KeyError, match="from the body"):
            async with HarnessSimulator.connect(url) as sim:
                raise KeyError("from the body")
    assert sim.closed


# ---------------------------------------------------------------- the faithful profile

QUICK_CLOSE = HarnessProfile("test", closes_turns=True, inactivity_s=0.6, acks=WordAcks())


async def test_faithful_a_turn_ends_only_once_its_audio_played_and_the_response_ended() -> None:
    # The task yields its text, then works on for 0.8 s: response_end comes after the audio.
    tts = TtsModel(first_audio_s=0.05, words_per_s=20.0)
    probe = Probe(on(CallStarted=[AgentSendText(text="One two three."), 0.8]))
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=FAITHFUL) as sim:
        turn = await sim.wait_agent_turn_end(1, timeout_s=5)
    tl = sim.timeline
    [end] = tl.of_kind("response_end")
    [closed] = tl.of_kind("agent_turn_closed")
    assert closed.detail["by"] == "response_end"
    assert turn.stopped_at is not None and turn.ended_at is not None
    assert turn.stopped_at < end.at <= turn.ended_at  # audio over first; idle only after response_end
    assert turn.ended_at - turn.stopped_at >= 0.8 - 0.3 - 0.05


async def test_faithful_without_response_end_the_inactivity_timer_closes_the_turn() -> None:
    tts = TtsModel(first_audio_s=0.05, words_per_s=20.0)
    probe = Probe(on(CallStarted=[AgentSendText(text="Hold on."), 5.0]))  # the task outlives the test
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=QUICK_CLOSE) as sim:
        turn = await sim.wait_agent_turn_end(1, timeout_s=5)
    tl = sim.timeline
    [text] = tl.of_kind("agent_text_received")
    [closed] = tl.of_kind("agent_turn_closed")
    assert closed.detail["by"] == "inactivity" and not tl.of_kind("response_end")
    assert turn.ended_at is not None
    assert 0.6 - 0.01 <= turn.ended_at - text.at <= 0.6 + 0.2


async def test_faithful_text_before_the_close_plays_in_the_same_turn_and_after_it_opens_the_next() -> None:
    tts = TtsModel(first_audio_s=0.02, words_per_s=40.0)
    probe = Probe(
        on(
            CallStarted=[AgentSendText(text="First part."), 0.3, AgentSendText(text="Second part.")],
            UserTurnEnded=[AgentSendText(text="Another turn.")],
        )
    )
    async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=FAITHFUL) as sim:
        first = await sim.wait_agent_turn_end(1, timeout_s=5)
        await sim.user_says("hello")
        second = await sim.wait_agent_turn_end(2, timeout_s=5)
    tl = sim.timeline
    # The audio of "First part." ended before "Second part." arrived: still one turn.
    assert len([e for e in tl.of_kind("agent_playback_ended") if e.detail["turn"] == 1]) == 2
    assert first.text == "First part. Second part." and second.text == "Another turn."
    assert len(tl.of_kind("agent_turn_started")) == 2
    assert [e.detail["by"] for e in tl.of_kind("agent_turn_closed")] == ["response_end", "response_end"]


async def test_faithful_acknowledgements_merge_drop_punctuate_and_lag_but_keep_their_order() -> None:
    text = " ".join(f"word{i}" for i in range(1, 41))
    acks = WordAcks(merge_p=0.3, drop_p=0.15, full_stop_p=1.0, lag_max_s=0.08)
    profile = HarnessProfile("noisy", closes_turns=True, inactivity_s=2.5, acks=acks)
    tts = TtsModel(first_audio_s=0.02, words_per_s=40.0, seed=11)

    async def play() -> list[TimelineEvent]:
        probe = Probe(on(CallStarted=[AgentSendText(text=text)]))
        async with serve_app(probe) as url, HarnessSimulator.connect(url, tts=tts, profile=profile) as sim:
            await sim.wait_agent_turn_end(1, timeout_s=5)
            await sim.wait_until_idle(timeout_s=5)
            await probe.seen.wait_for("AgentTurnEnded", timeout_s=5)
        return sim.timeline.of_kind("agent_word")

    words = await play()
    contents = [w.detail["word"] for w in words]
    covered = [x for w in words for x in w.detail["words"]]
    assert any(len(w.detail["words"]) > 1 for w in words), "no merge"  # seeded: these hold
    assert len(covered) < 40, "no drop"
    assert contents[-1].endswith("word40."), "no full stop on the turn's last word"
    assert all(" " not in c for c in contents)  # the harness strips whitespace
    assert covered == sorted(covered, key=lambda w: int(w.removeprefix("word")))  # in order
    assert all(0 <= w.detail["late_s"] <= 0.08 + 0.05 for w in words)
    assert [w.detail["word"] for w in await play()] == contents  # the same seed, the same acks
