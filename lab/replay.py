"""Replay a recorded call (`VOX_RECORD_DIR`, `agent/call_recording.py`) against the current app.

The recorded harness side (every frame the harness sent: start, the caller's turns, the agent's
`speaking` / `agent_speech` / `idle`, DTMF, custom events) is played at its recorded times; the
app's answers come from the real `LlmAgent` through a scripted LLM rebuilt from the recorded agent
outputs, and its control requests reach the lab's VoxEngine emulator (the recorded control URL's
origin is replaced by the emulator's). Each action the recording asked for (a tool call to
`end_call` or `call_transfer`) is then judged as in the timing suite (`lab.action_timing`):
fired while its confirmation played (early), never accepted (lost), or on time, with its offset
from the recorded end of the confirming turn.

The agent's replies are rebuilt without relying on `event_id` (the SDK makes it optional, and
then generates the `responding_to` ids itself): each caller turn (its `user_state: idle`) is
paired with the first group of outputs sharing a `responding_to` (or, without one, the outputs)
that began after it and before the caller's next turn, in time order. A recording whose replies
cannot be rebuilt so (a telephony tool call that falls in no caller turn's reply) raises
`CannotRebuild`; a file that is missing or is not a recording, `NotARecording`.

What the recording cannot tell, so the replay assumes: the caller stopped hearing a turn at its
recorded `idle`, or when the caller started talking over it; the tools' own speech is ours
(`agent.prompt`), so it is taken out of the text rebuilt for the LLM; the LLM took as long to
its first chunk as `LlmAgent` measured then (`llm_first_chunk_ms`), else no time.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from agent import prompt
from agent.call_recording import FORMAT
from agent.settings import Settings
from lab.action_timing import ActionTiming
from lab.call_lab import CallLab
from lab.faults import FaultPlan
from lab.harness import read_output
from lab.results import CallResult
from lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec
from lab.timeline import Timeline, now

__all__ = ["CannotRebuild", "NotARecording", "Recording", "ReplayResult", "load_recording", "replay"]

ACTIONS = ("end_call", "call_transfer")
CONTROL_URL_KEY = "vox_session_control_url"
TOOL_SPEECH = (prompt.TRANSFER_CONFIRMATION, prompt.UNAVAILABLE)  # what our tools say themselves
OUTCOME_TIMEOUT_S = 30.0


class NotARecording(ValueError):
    """The file is missing, unreadable, or not a `VOX_RECORD_DIR` recording (one line)."""


class CannotRebuild(ValueError):
    """The recording is one, but the agent's replies cannot be rebuilt from it."""

    def __init__(self, why: str) -> None:
        super().__init__(f"could not rebuild the agent's replies: {why}")


@dataclass(frozen=True)
class Frame:
    s: float  # seconds from the socket's accept
    direction: str  # "in" (harness → agent) or "out"
    msg: Any


@dataclass(frozen=True)
class Recording:
    path: Path
    call_id: str
    frames: tuple[Frame, ...]

    @property
    def start(self) -> dict[str, Any]:
        first = self.frames[0].msg if self.frames else None
        if not isinstance(first, dict) or first.get("type") != "start":
            raise NotARecording(f"{self.path}: not a recording (the first frame is not the harness's start)")
        return first

    def inputs(self) -> list[Frame]:
        return [f for f in self.frames[1:] if f.direction == "in"]

    def outputs(self) -> list[Frame]:
        return [f for f in self.frames if f.direction == "out"]

    def asked_actions(self) -> list[str]:
        """The telephony tools the agent called, in order."""
        return [str(f.msg["name"]) for f in self.outputs() if _asks_action(f)]

    def llm_replies(self) -> list[LlmReply]:
        """One scripted reply per caller turn the agent answered, rebuilt from its outputs
        (see the module docstring); `CannotRebuild` when a telephony tool call is left over."""
        inputs = self.inputs()
        idles = [n for n, f in enumerate(inputs) if _is_user_state(f, "idle")]
        outputs = self.outputs()
        replies: list[LlmReply] = []
        paired = 0
        for i, n in enumerate(idles):
            until = inputs[idles[i + 1]].s if i + 1 < len(idles) else float("inf")
            task = _first_reply(f for f in outputs if inputs[n].s <= f.s < until)
            if task:
                paired += sum(1 for f in task if _asks_action(f))
                replies.append(_reply(task, _turn_words(inputs, n)))
        asked = len(self.asked_actions())
        if paired != asked:
            raise CannotRebuild(
                f"{asked - paired} of {asked} telephony tool calls follow no caller turn "
                f"({len(idles)} caller turns in {self.path.name})"
            )
        return replies


def load_recording(path: str | Path) -> Recording:
    """Read a `VOX_RECORD_DIR` file; `NotARecording` (one line) for anything else."""
    path = Path(path)
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        header, *rows = [json.loads(line) for line in lines]
    except OSError as exc:
        raise NotARecording(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSON, UTF-8, or an empty file
        raise NotARecording(f"{path}: not a recording ({str(exc).splitlines()[0]})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise NotARecording(f"{path}: not a recording (no {FORMAT} header)")
    try:
        frames = tuple(Frame(float(r["ms"]) / 1000, str(r["dir"]), dict(r["msg"])) for r in rows)
    except (KeyError, TypeError, ValueError) as exc:
        raise NotARecording(f"{path}: not a recording (a frame is malformed: {exc!r})") from None
    recording = Recording(path, str(header.get("call_id") or path.stem), frames)
    recording.start  # noqa: B018  (checked now: a file without it is no recording)
    return recording


def _asks_action(frame: Frame) -> bool:
    msg = frame.msg
    return bool(msg.get("type") == "tool_call" and msg.get("result") is None and msg.get("name") in ACTIONS)


def _first_reply(outputs: Iterable[Frame]) -> list[Frame]:
    """The first reply among `outputs` (in time order): the outputs sharing the first
    `responding_to` that carries something said or a tool call; without `responding_to`, all."""
    frames = list(outputs)
    for frame in frames:
        if frame.msg.get("type") in ("message", "tool_call"):
            key = frame.msg.get("responding_to")
            return [f for f in frames if f.msg.get("responding_to") == key]
    return []


def _turn_words(inputs: Sequence[Frame], n: int) -> str:
    """What the caller said in the turn `inputs[n]` belongs to (its transcripts, from its
    `speaking` to its `idle`)."""
    start = n
    while start > 0 and not _is_user_state(inputs[start], "speaking"):
        start -= 1
    words = []
    for frame in inputs[start + 1 :]:
        if _is_user_state(frame, "speaking") or _is_user_state(frame, "idle"):
            break
        if frame.msg.get("type") == "message":
            words.append(str(frame.msg.get("content", "")))
    return " ".join(words).strip()


def _is_user_state(frame: Frame, value: str) -> bool:
    return bool(frame.msg.get("type") == "user_state" and frame.msg.get("value") == value)


def _reply(task: Sequence[Frame], said: str) -> LlmReply:
    text = "".join(str(f.msg.get("content", "")) for f in task if f.msg.get("type") == "message")
    calls = [f.msg for f in task if f.msg.get("type") == "tool_call" and f.msg.get("result") is None]
    for speech in TOOL_SPEECH:  # a tool's own confirmation comes back when the tool runs again
        if calls and text.rstrip().endswith(speech):
            text = text.rstrip()[: -len(speech)]
    first_chunk = next(
        (
            f.msg.get("value")
            for f in task
            if f.msg.get("type") == "log_metric" and f.msg.get("name") == "llm_first_chunk_ms"
        ),
        None,
    )
    delay = float(first_chunk) / 1000 if isinstance(first_chunk, (int, float)) else 0.0
    return LlmReply(
        text=text,
        tool_calls=tuple(ToolCallSpec(str(c["name"]), dict(c.get("arguments") or {})) for c in calls),
        first_token_delay_s=delay,
        when_user_says=said or None,
    )


@dataclass(frozen=True)
class ReplayResult:
    """A replayed call, measured: `call` renders and plots like any lab call."""

    recording: Recording
    call: CallResult
    actions: tuple[ActionTiming, ...]

    @property
    def problems(self) -> list[str]:
        """Why the replay fails: an action fired during speech, or was lost."""
        found = []
        for timing in self.actions:
            if not timing.delivered:
                found.append(f"{timing.action} was never accepted ({timing.posts} POSTs)")
            elif timing.early or not self.call.speech_end_before(timing.first_post_at):
                found.append(f"{timing.action} fired while the agent was speaking")
        return found

    def report(self) -> str:
        lines = [self.call.render()]
        for timing in self.actions:
            offset = "-" if timing.offset_s is None else f"{timing.offset_s * 1000:+.0f} ms"
            lines.append(f"  {timing.action}: {offset} from the end of its confirming turn")
        lines += [f"  FAIL: {problem}" for problem in self.problems]
        return "\n".join(lines)


class _ReplayHarness:
    """Sends the recorded harness frames on schedule and records both sides on a `Timeline`,
    in the kinds the harness simulator uses, so the lab's measurements read it the same way."""

    def __init__(self, ws: ClientConnection, timeline: Timeline) -> None:
        self.ws = ws
        self.timeline = timeline
        self.turn = 0
        self.open_turn: int | None = None  # speaking, no idle yet
        self.interrupted: list[int] = []  # talked over, their idle still to come
        self.heard: dict[int, list[str]] = {}

    async def send(self, msg: Mapping[str, Any], said: str) -> None:
        self._record(msg, said)
        await self.ws.send(json.dumps(msg))

    def _record(self, msg: Mapping[str, Any], said: str) -> None:
        kind, value, tl = msg.get("type"), msg.get("value"), self.timeline
        if kind == "agent_state" and value == "speaking":
            self.turn += 1
            self.open_turn, self.heard[self.turn] = self.turn, []
            tl.record(
                "agent_turn_started", {"turn": self.turn, "queued_at": now(), "loop_at": anyio.current_time()}
            )
        elif kind == "agent_state" and value == "idle" and self.open_turn is not None:
            # Assumption: the caller stopped hearing the turn at its idle (nothing finer is recorded).
            turn, self.open_turn = self.open_turn, None
            tl.record("agent_playback_ended", {"turn": turn, "audio_end": now()})
            tl.record(
                "agent_turn_ended", {"turn": turn, "text": " ".join(self.heard[turn]), "interrupted": False}
            )
        elif kind == "agent_state" and value == "idle" and self.interrupted:
            turn = self.interrupted.pop(0)
            tl.record(
                "agent_turn_ended", {"turn": turn, "text": " ".join(self.heard[turn]), "interrupted": True}
            )
        elif kind == "agent_speech":
            speaking = self.open_turn or (self.interrupted[-1] if self.interrupted else None)
            words = [str(msg.get("content", ""))]
            if speaking is not None:
                self.heard[speaking] += words
            tl.record("agent_word", {"turn": speaking, "word": words[0], "words": words})
        elif kind == "user_state" and value == "speaking":
            if self.open_turn is not None:  # the caller talks over the agent: it stops being heard
                turn, self.open_turn = self.open_turn, None
                self.interrupted.append(turn)
                spoken = " ".join(self.heard[turn])
                tl.record("agent_playback_stopped", {"turn": turn, "reason": "barge_in", "spoken": spoken})
            tl.record("user_turn_started", {"text": said})
        elif kind == "message":
            tl.record("user_text_sent", {"text": msg.get("content")})
        elif kind == "user_state" and value == "idle":
            tl.record("user_turn_ended", {"text": said})
        else:
            tl.record(f"user_{kind}", dict(msg))

    async def receive(self) -> None:
        try:
            async for raw in self.ws:
                kind, detail, _ = read_output(raw)
                self.timeline.record(kind, detail)
        except ConnectionClosed:
            pass
        self.timeline.record("socket_closed", {"by": "app"})


async def warm_up_llm_client() -> None:
    """LiteLLM's first completion in a process costs some 0.3 s more than the next (imports,
    client set-up): pay it before the recorded clock starts, so the replayed agent answers as
    fast as the recorded one did."""
    import litellm

    async with ScriptedLlm([]) as llm:
        messages = [{"role": "user", "content": "warm-up"}]
        stream = await litellm.acompletion(
            model="openai/warm-up", api_base=llm.api_base, api_key="sk-lab", messages=messages, stream=True
        )
        async for _ in stream:
            pass


async def replay(
    path: str | Path, *, settings: Settings | None = None, faults: FaultPlan | None = None
) -> ReplayResult:
    """Play `path` against the current app in a fresh lab (`settings`: the app's, as in
    `CallLab`; `faults`: VoxEngine's); see the module docstring."""
    recording = load_recording(path)
    replies = recording.llm_replies()  # before anything runs: a recording we cannot rebuild says so
    await warm_up_llm_client()
    start = dict(recording.start)
    asked = recording.asked_actions()
    async with CallLab(replies, settings=settings, faults=faults) as lab:
        metadata = dict(start.get("metadata") or {})
        if CONTROL_URL_KEY in metadata:
            metadata[CONTROL_URL_KEY] = lab.emulator.control_url()
        start["metadata"] = metadata
        timeline = Timeline()
        async with ws_connect(lab.ws_url, max_size=None) as ws:
            harness = _ReplayHarness(ws, timeline)
            async with anyio.create_task_group() as tg:
                tg.start_soon(harness.receive)
                timeline.record("call_start", {"call_id": recording.call_id})
                begun = anyio.current_time()
                await ws.send(json.dumps(start))
                inputs = recording.inputs()
                for n, frame in enumerate(inputs):
                    await anyio.sleep_until(begun + frame.s)
                    await harness.send(frame.msg, _turn_words(inputs, n))
                with contextlib.suppress(TimeoutError):  # a lost action shows in the result
                    await lab.wait_outcomes(len(asked), timeout_s=OUTCOME_TIMEOUT_S)
                await ws.close()
        await lab.wait_calls_ended(1, timeout_s=OUTCOME_TIMEOUT_S)
    call = CallResult.collect(recording.path.stem, "turn-end", timeline, lab)
    return ReplayResult(recording, call, tuple(call.timing(action) for action in dict.fromkeys(asked)))
