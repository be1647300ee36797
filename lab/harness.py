"""Harness simulator: plays Cartesia's harness against a real Line app served on loopback.

In production Cartesia's harness connects to the app's ``/ws``, sends ``start``, streams the
caller's speech as transcripts and reports what the TTS actually played. This simulator does the
same over a real websocket, with speech timed by a :class:`TtsModel`, and records everything on
one clock (:class:`Timeline`) so tests can measure when telephony actions fire relative to the
speech that announces them.

Every message sent is built from the SDK's own wire models and every message received is parsed
with the SDK's ``OutputMessage`` union, so an SDK change to the shapes breaks the lab's tests.

Playback of a turn (behaviour per ``HarnessProfile``, see ``lab/harness_profile.py`` for each
rule's source): the turn starts (``agent_state: speaking``) ``first_audio_s`` + jitter after its
first text arrived; word *i*'s audio ends at ``start + i * word_s``, scheduled on the event loop's
clock against absolute deadlines (no drift), and is acknowledged (``agent_speech``) then, or
later, merged, dropped or with a full stop added, as the profile's ``WordAcks`` say; text arriving
while the turn is open is appended to it. When nothing is left to play the turn ends
(``agent_state: idle``, the app's AgentTurnEnded moment): at once under the idealised profile;
under the faithful one only once the harness closed the turn (the app's ``response_end``, or
``inactivity_s`` without agent output), text arriving meanwhile still playing in the same turn.
Text for a closed turn opens the next one, played after it. Timeline kinds recorded:

- sent (recorded just before the frame is written, in wire order): ``call_start``,
  ``agent_turn_started``, ``agent_word``, ``agent_turn_ended``, ``user_turn_started``,
  ``user_text_sent``, ``user_turn_ended``, ``user_dtmf``, ``user_custom``;
- received: ``agent_text_received``, ``tool_call``, ``end_call_received``, ``transfer_received``,
  ``response_end``, ``error``, ``log_event``, ``log_metric``, ``agent_dtmf``, ``config``,
  ``custom``, ``unknown_output`` (unparseable frames: recorded, otherwise ignored);
- local: ``agent_playback_ended`` (the turn's audio has played out, so far),
  ``agent_playback_resumed`` (more text for the turn plays after a pause), ``agent_turn_closed``
  (``by``: ``response_end``, ``inactivity``, ``playback``), ``agent_playback_stopped`` (barge-in /
  hang-up), ``agent_turn_dropped`` (interrupted before its first audio), ``socket_closed``
  (``by``: ``app``, ``caller``, ``end_call``, ...).

Each sent input carries a unique ``event_id`` (in the event's detail); the app echoes it as
``responding_to`` and uses it as the id of the event the agent sees. With ``event_ids=False`` the
harness sends none, as the SDK allows (the app then generates the ids itself).
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup
from line._harness_types import (
    AgentSpeechInput,
    AgentStateInput,
    CustomInput,
    DTMFInput,
    EndCallOutput,
    MessageOutput,
    OutputMessage,
    ResponseEndOutput,
    StartInput,
    TranscriptionInput,
    UserStateInput,
)
from pydantic import BaseModel, TypeAdapter, ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from lab.harness_profile import FAITHFUL, HarnessProfile
from lab.timeline import Timeline, TimelineEvent, ToolCall, Turn, now
from lab.tts_model import TtsModel

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "CloseAfterEndCall",
    "HarnessSimulator",
    "Timeline",
    "TimelineEvent",
    "ToolCall",
    "TtsModel",
    "Turn",
    "parse_output",
    "read_output",
    "start_message",
    "wire",
]

CloseAfterEndCall = Literal["no", "immediately", "after_speech"]
CALLER, CALLEE = "+15550000001", "+15550000002"  # the call's default `from` and `to`

_OUTPUT_ADAPTER: TypeAdapter[Any] = TypeAdapter(OutputMessage)
# Timeline kind for each output ``type``; others are recorded under their own ``type``.
_OUTPUT_KINDS = {
    "message": "agent_text_received",
    "end_call": "end_call_received",
    "transfer": "transfer_received",
    "dtmf": "agent_dtmf",
}


def wire(message: BaseModel) -> dict[str, Any]:
    """The JSON object sent for one of the SDK's wire models (aliases applied, nulls left out)."""
    return message.model_dump(mode="json", by_alias=True, exclude_none=True)


def start_message(
    *,
    metadata: Mapping[str, Any] | None = None,
    call_id: str = "sim-call",
    from_: str = CALLER,
    to: str = CALLEE,
    agent_call_id: str | None = None,
    agent_id: str = "sim-agent",
    system_prompt: str | None = None,
    introduction: str | None = None,
) -> dict[str, Any]:
    """The ``start`` message the harness sends first."""
    agent: dict[str, Any] = {"id": agent_id}
    if system_prompt is not None:
        agent["system_prompt"] = system_prompt
    if introduction is not None:
        agent["introduction"] = introduction
    return wire(
        StartInput(
            call_id=call_id,
            from_=from_,
            to=to,
            agent_call_id=agent_call_id or call_id,
            agent=agent,
            metadata=dict(metadata or {}),
        )
    )


def parse_output(data: Any) -> BaseModel | None:
    """One received JSON value as the SDK's output model, or None if it is none of them."""
    try:
        parsed: BaseModel = _OUTPUT_ADAPTER.validate_python(data)
    except ValidationError:
        return None
    return parsed


def read_output(raw: str | bytes) -> tuple[str, dict[str, Any], BaseModel | None]:
    """One frame from the app: its timeline kind, detail (the message without ``type``) and the
    SDK model, or ``("unknown_output", {"raw": ...}, None)`` when it is none of them."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    try:
        message = parse_output(json.loads(text))
    except ValueError:
        message = None
    if message is None:
        return "unknown_output", {"raw": text[:2000]}, None
    detail = message.model_dump(mode="json")
    out_type = str(detail.pop("type"))
    return _OUTPUT_KINDS.get(out_type, out_type), detail, message


def _pop_word(buffer: str) -> tuple[str | None, str]:
    """The next whitespace-delimited word of ``buffer`` and the rest after it."""
    text = buffer.lstrip()
    if not text:
        return None, ""
    parts = text.split(maxsplit=1)
    return parts[0], (text[len(parts[0]) :])


@dataclass
class _Turn:
    index: int
    queued_at: float  # timeline clock
    queued_loop: float  # event-loop clock
    last_output_loop: float  # the agent's last output frame while this turn was open
    buffer: str = ""  # text not yet played
    playing: str = ""  # the word being played (not yet acknowledged)
    spoken: list[str] = field(default_factory=list)
    merging: str = ""  # played words whose acknowledgement rides with the next one's
    claimed: bool = False  # the speaker has taken it
    started: bool = False  # ``agent_state: speaking`` was sent
    closed: bool = False  # no more text joins this turn
    stopped: bool = False  # interrupted: the speaker must leave it alone
    scope: anyio.CancelScope | None = None


class HarnessSimulator:
    """A simulated Cartesia harness on one websocket. Create it with :meth:`connect`."""

    def __init__(
        self,
        ws: ClientConnection,
        tg: TaskGroup,
        *,
        tts: TtsModel,
        profile: HarnessProfile,
        close_after_end_call: CloseAfterEndCall,
        timeline: Timeline,
        send_timeout_s: float = 5.0,
        event_ids: bool = True,
    ) -> None:
        self.timeline = timeline
        self.tts = tts
        self.profile = profile
        self.close_after_end_call: CloseAfterEndCall = close_after_end_call
        self._ws = ws
        self._tg = tg
        self._rng = tts.rng()
        self._ack_rng = random.Random(f"acks-{tts.seed}")  # apart, so jitter draws stay as they were
        self._late_acks: list[tuple[float, AgentSpeechInput, dict[str, Any]]] = []
        self._ack_wait = anyio.CancelScope()
        self._send_lock = anyio.Lock()
        self._send_timeout_s = send_timeout_s
        self._turns: list[_Turn] = []  # the one playing (or next to) first, then queued ones
        self._turn_count = 0
        self._speaker_busy = False
        self._pending_stale = 0
        self._seq = 0
        self._closed = False
        self._last_user_idle_id: str | None = None
        self._last_user_idle_at: float | None = None
        self._event_ids = event_ids

    # ---- lifecycle ----

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        ws_url: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        tts: TtsModel | None = None,
        profile: HarnessProfile = FAITHFUL,
        close_after_end_call: CloseAfterEndCall = "after_speech",
        timeline: Timeline | None = None,
        call_id: str = "sim-call",
        from_: str = CALLER,
        to: str = CALLEE,
        agent_id: str = "sim-agent",
        system_prompt: str | None = None,
        introduction: str | None = None,
        connect_timeout_s: float = 5.0,
        event_ids: bool = True,
    ) -> AsyncIterator[HarnessSimulator]:
        """Connect, send ``start``, and run the simulator until the block exits.

        The receive loop, playback and any delayed sends live in a task group owned by this
        context: on exit the socket is closed (if still open) and all of them are cancelled.
        """
        timeline = timeline if timeline is not None else Timeline()
        with anyio.fail_after(connect_timeout_s):
            ws = await ws_connect(ws_url, open_timeout=connect_timeout_s, max_size=None)
        body_error: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                sim = cls(
                    ws,
                    tg,
                    tts=tts or TtsModel(),
                    profile=profile,
                    close_after_end_call=close_after_end_call,
                    timeline=timeline,
                    event_ids=event_ids,
                )
                start = start_message(
                    metadata=metadata,
                    call_id=call_id,
                    from_=from_,
                    to=to,
                    agent_id=agent_id,
                    system_prompt=system_prompt,
                    introduction=introduction,
                )
                timeline.record("call_start", {"call_id": call_id})
                await ws.send(json.dumps(start))
                tg.start_soon(sim._receive_loop)
                tg.start_soon(sim._speaker_loop)
                tg.start_soon(sim._late_ack_loop)
                try:
                    yield sim
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    await sim._close_socket("harness_exit")
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The task group wraps an error of the ``async with`` body; hand it back unwrapped.
            if body_error is not None and list(group.exceptions) == [body_error]:
                raise body_error from None
            raise
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                await ws.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def hang_up(self) -> None:
        """The caller hangs up: playback stops and the socket is closed."""
        await self._close_socket("caller")

    async def close(self, by: str = "harness") -> None:
        """Close the socket (the context's exit does this too); `by` says who ended the call."""
        await self._close_socket(by)

    # ---- user side ----

    async def user_says(self, text: str, *, timeout_s: float = 5.0) -> bool:
        """One user turn: ``user_state: speaking``, the transcript, ``user_state: idle``.

        If the agent is speaking (or about to), this is a barge-in at once. Returns whether an
        agent turn was interrupted.
        """
        with anyio.fail_after(timeout_s):
            return await self._user_turn(text, stale_idle_delay_s=None)

    async def barge_in(
        self,
        *,
        after_s: float,
        text: str,
        stale_idle_delay_s: float | None = None,
        timeout_s: float = 10.0,
    ) -> bool:
        """Interrupt the current (or next) agent turn ``after_s`` seconds after its start.

        Sends ``user_state: speaking``, stops playback at once (queued, unspoken text is
        dropped), sends ``agent_state: idle`` for the interrupted turn, then the transcript and
        ``user_state: idle``. With ``stale_idle_delay_s`` the interrupted turn's idle is instead
        sent that long after the interruption, and never before the new user turn ended (a late,
        stale turn end). Returns whether a turn was still playing at that moment; if it had
        ended, this is a plain user turn.
        """
        with anyio.fail_after(timeout_s):
            found: list[TimelineEvent] = []

            def playing() -> bool:
                turn = self._current()
                if turn is None:
                    return False
                started = self.timeline.first(
                    "agent_turn_started", where=lambda e: e.detail["turn"] == turn.index
                )
                if started is not None:
                    found.append(started)
                return started is not None

            await self.timeline.wait_until(playing, timeout_s=None, what="an agent turn to barge into")
            await anyio.sleep_until(found[-1].detail["loop_at"] + after_s)
            return await self._user_turn(text, stale_idle_delay_s=stale_idle_delay_s)

    async def send_dtmf(self, button: str) -> None:
        await self._send(DTMFInput(button=button, event_id=self._next_id()), "user_dtmf", {"button": button})

    async def send_custom(self, metadata: Mapping[str, object]) -> bool:
        """A custom event for the agent (VoxEngine's ``AgentsClient.custom`` → Line ``UserCustomSent``)."""
        message = CustomInput(metadata=dict(metadata), event_id=self._next_id())
        return await self._send(message, "user_custom", {"metadata": dict(metadata)})

    # ---- waiting ----

    async def wait_for(
        self,
        kind: str,
        *,
        where: Callable[[TimelineEvent], bool] | None = None,
        since: float | None = None,
        timeout_s: float = 5.0,
    ) -> TimelineEvent:
        """The first timeline event of ``kind`` (see :meth:`Timeline.wait_for`)."""
        return await self.timeline.wait_for(kind, where=where, since=since, timeout_s=timeout_s)

    async def wait_agent_turn_end(self, n: int = 1, *, timeout_s: float = 10.0) -> Turn:
        """Agent turn ``n`` (1-based, in order of first text) once its idle was sent."""
        await self.timeline.wait_for(
            "agent_turn_ended", where=lambda e: e.detail["turn"] == n, timeout_s=timeout_s
        )
        return next(t for t in self.timeline.turns() if t.index == n)

    async def wait_closed(self, *, timeout_s: float = 5.0) -> TimelineEvent:
        return await self.timeline.wait_for("socket_closed", timeout_s=timeout_s)

    async def wait_until_idle(self, *, timeout_s: float = 10.0, quiet_s: float = 0.1) -> None:
        """Wait until the call is quiet.

        Quiet: nothing queued or playing, no stale idle pending, the app answered the last user
        turn (its ``response_end``), and no timeline event for ``quiet_s``. A closed socket is
        quiet at once.
        """

        def quiet() -> bool:
            if self._closed:
                return True
            return (
                not self._turns and not self._speaker_busy and self._pending_stale == 0 and self._answered()
            )

        with anyio.fail_after(timeout_s):
            while True:
                await self.timeline.wait_until(quiet, timeout_s=None, what="the call to go quiet")
                if self._closed:
                    return
                count = len(self.timeline.events)
                await anyio.sleep_until(
                    anyio.current_time() + quiet_s - (now() - self.timeline.events[-1].at)
                )
                if len(self.timeline.events) == count and quiet():
                    return

    def turns(self) -> list[Turn]:
        return self.timeline.turns()

    def tool_calls(self) -> list[ToolCall]:
        return self.timeline.tool_calls()

    # ---- internals: sending ----

    def _next_id(self) -> str | None:
        """A unique `event_id`, or None when this harness sends none (the SDK makes it optional
        and then generates `responding_to` ids itself: `line/_harness_types.py`)."""
        self._seq += 1
        return f"sim-{self._seq}" if self._event_ids else None

    async def _send(self, message: BaseModel, kind: str, detail: Mapping[str, Any]) -> bool:
        """Record and send one input message; False if the socket is closed.

        Shielded, so a barge-in cancelling playback never cuts a frame in half; the lock keeps
        the timeline's order the wire's order.
        """
        sent = False
        with anyio.CancelScope(shield=True):
            async with self._send_lock:
                if self._closed:
                    return False
                event_id = getattr(message, "event_id", None)
                self.timeline.record(kind, {**detail, "event_id": event_id})
                try:
                    with anyio.fail_after(self._send_timeout_s):
                        await self._ws.send(json.dumps(wire(message)))
                    sent = True
                except ConnectionClosed as exc:
                    self._socket_gone(exc)
        return sent

    async def _close_socket(self, by: str) -> None:
        if self._closed:
            return
        self._stop_turn(reason=by)
        self._closed = True
        self.timeline.record("socket_closed", {"by": by})
        with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
            await self._ws.close()

    def _socket_gone(self, exc: ConnectionClosed) -> None:
        if self._closed:
            return
        self._stop_turn(reason="socket_closed")
        self._closed = True
        code = exc.rcvd.code if exc.rcvd is not None else None
        reason = exc.rcvd.reason if exc.rcvd is not None else None
        self.timeline.record("socket_closed", {"by": "app", "code": code, "reason": reason})

    # ---- internals: receiving ----

    async def _receive_loop(self) -> None:
        while True:
            try:
                raw = await self._ws.recv()
            except ConnectionClosed as exc:
                self._socket_gone(exc)
                return
            self._on_frame(raw)

    def _on_frame(self, raw: str | bytes) -> None:
        kind, detail, message = read_output(raw)
        if message is None:
            self.timeline.record(kind, detail)
            return
        open_turn = self._open_turn()
        if open_turn is not None:  # any output restarts the turn's inactivity timer
            open_turn.last_output_loop = anyio.current_time()
        if isinstance(message, MessageOutput):
            self._on_agent_text(message.content, detail)
            return
        self.timeline.record(kind, detail)
        if isinstance(message, ResponseEndOutput) and self.profile.closes_turns and open_turn is not None:
            self._close_turn(open_turn, "response_end")
        if isinstance(message, EndCallOutput):
            if self.close_after_end_call == "immediately":
                self._tg.start_soon(self._close_socket, "end_call")
            elif self.close_after_end_call == "after_speech":
                self._tg.start_soon(self._close_after_speech)

    def _current(self) -> _Turn | None:
        """The turn playing, or next to play."""
        return self._turns[0] if self._turns else None

    def _open_turn(self) -> _Turn | None:
        """The turn new agent text joins, if one is still open."""
        last = self._turns[-1] if self._turns else None
        return last if last is not None and not last.closed else None

    def _close_turn(self, turn: _Turn, by: str) -> None:
        turn.closed = True
        self.timeline.record("agent_turn_closed", {"turn": turn.index, "by": by})

    def _on_agent_text(self, content: str, detail: Mapping[str, Any]) -> None:
        turn = self._open_turn()
        if turn is None and content.strip() and not self._closed:
            self._turn_count += 1
            loop_now = anyio.current_time()
            turn = _Turn(
                index=self._turn_count, queued_at=now(), queued_loop=loop_now, last_output_loop=loop_now
            )
            self._turns.append(turn)
        if turn is not None:
            turn.buffer += content
        self.timeline.record("agent_text_received", {**detail, "turn": turn.index if turn else None})

    async def _close_after_speech(self) -> None:
        await self.timeline.wait_until(
            lambda: self._closed or (not self._turns and not self._speaker_busy),
            timeout_s=None,
            what="queued speech to finish",
        )
        await self._close_socket("end_call")

    # ---- internals: playback ----

    async def _speaker_loop(self) -> None:
        while True:
            await self.timeline.wait_until(
                lambda: bool(self._turns) and not self._turns[0].claimed, timeout_s=None, what="agent text"
            )
            turn = self._turns[0]
            turn.claimed = True
            self._speaker_busy = True
            try:
                with anyio.CancelScope() as scope:
                    turn.scope = scope
                    if not turn.stopped:
                        await self._play(turn)
            finally:
                if self._turns and self._turns[0] is turn:
                    self._turns.pop(0)
                self._speaker_busy = False
                self.timeline.notify()

    async def _play(self, turn: _Turn) -> None:
        start = turn.queued_loop + self.tts.first_audio_delay_s(self._rng)
        await anyio.sleep_until(start)
        if self._pending_stale:
            # Line's runner assumes agent_state alternates speaking/idle (it takes a turn's content
            # from the last `speaking`), so a late idle of an interrupted turn still goes out
            # before the next turn's speaking.
            await self.timeline.wait_until(
                lambda: self._pending_stale == 0, timeout_s=None, what="a late idle"
            )
            start = max(start, anyio.current_time())
        turn.started = True
        lag = anyio.current_time() - start
        to_timeline = now() - anyio.current_time()  # loop clock -> timeline clock
        if not await self._send(
            AgentStateInput(value="speaking", event_id=self._next_id()),
            "agent_turn_started",
            {
                "turn": turn.index,
                "queued_at": turn.queued_at,
                "scheduled_at": start + to_timeline,
                "loop_at": start,
                "late_s": lag,
            },
        ):
            return
        end = start  # when the audio played so far ends (loop clock)
        while True:
            word, turn.buffer = _pop_word(turn.buffer)
            if word is None:
                self.timeline.record(
                    "agent_playback_ended", {"turn": turn.index, "audio_end": end + to_timeline}
                )
                if not await self._wait_for_more_or_close(turn):
                    break
                end = max(end, anyio.current_time())  # text after a pause starts now
                self.timeline.record(
                    "agent_playback_resumed", {"turn": turn.index, "audio_start": end + to_timeline}
                )
                continue
            end += self.tts.word_s
            turn.playing = word
            await anyio.sleep_until(end)
            turn.playing = ""
            turn.spoken.append(word)
            await self._acknowledge(turn, word, end, end + to_timeline)
            if turn.stopped:
                return
        if turn.merging:  # the last words' acknowledgement, held for a merge that never came
            await self._acknowledge(turn, "", end, end + to_timeline)
        await self._send_late_acks(all_of_them=True)
        await self._send(
            AgentStateInput(value="idle", event_id=self._next_id()),
            "agent_turn_ended",
            {"turn": turn.index, "text": " ".join(turn.spoken), "interrupted": False},
        )

    async def _wait_for_more_or_close(self, turn: _Turn) -> bool:
        """The turn's audio has played out: True when more text came for it (play on), False
        when it is over. Idealised: over at once. Faithful: over once the harness closed it
        (`response_end`, or `inactivity_s` after the agent's last output)."""
        if not self.profile.closes_turns:
            self._close_turn(turn, "playback")
            return False
        while not turn.buffer.strip():
            if turn.closed:
                return False
            deadline = turn.last_output_loop + self.profile.inactivity_s
            if anyio.current_time() >= deadline:
                self._close_turn(turn, "inactivity")
                return False
            with anyio.move_on_after(deadline - anyio.current_time()):
                # Woken by every record: new text, a response_end, any output frame.
                await self._timeline_grows()
        return True

    async def _timeline_grows(self) -> None:
        seen = len(self.timeline.events)
        await self.timeline.wait_until(lambda: len(self.timeline.events) > seen, timeout_s=None, what="news")

    async def _acknowledge(self, turn: _Turn, word: str, audio_end: float, scheduled_at: float) -> None:
        """`agent_speech` for a played word, as the profile's `WordAcks` say (merged with the next,
        dropped, with a full stop added, late). An empty `word` flushes a held merge."""
        acks, rng = self.profile.acks, self._ack_rng
        words = [*turn.merging.split(), *([word] if word else [])]
        if word and not acks.exact:
            if rng.random() < acks.drop_p:
                words = words[:-1]  # this word's timestamp never came
            elif turn.buffer.strip() and rng.random() < acks.merge_p:
                turn.merging = " ".join(words)  # rides with the next word's acknowledgement
                return
        turn.merging = ""
        if not words:
            return
        content = "".join(words)  # the harness strips whitespace
        if not turn.buffer.strip() and content[-1].isalnum() and rng.random() < acks.full_stop_p:
            content += "."
        message = AgentSpeechInput(content=content, event_id=self._next_id())
        detail = {"turn": turn.index, "word": content, "words": words, "scheduled_at": scheduled_at}
        due = max(audio_end + acks.lag_s(rng), self._late_acks[-1][0] if self._late_acks else 0.0)
        if due <= anyio.current_time() and not self._late_acks:
            await self._send(message, "agent_word", {**detail, "late_s": anyio.current_time() - audio_end})
        else:  # in order, after the ones already waiting
            self._late_acks.append((due, message, {**detail, "late_s": due - audio_end}))
            self.timeline.notify()

    async def _late_ack_loop(self) -> None:
        while True:
            await self.timeline.wait_until(lambda: bool(self._late_acks), timeout_s=None, what="late acks")
            with anyio.CancelScope() as self._ack_wait:  # cut short when a turn ends
                await anyio.sleep_until(self._late_acks[0][0])
            await self._send_late_acks(all_of_them=False)

    async def _send_late_acks(self, *, all_of_them: bool) -> None:
        """Send the late acknowledgements that are due, or all of them: a turn's acknowledgements
        all precede its idle (assumption: the harness keeps a turn's frames in order), so Line
        counts them in the turn they belong to."""
        if all_of_them:
            self._ack_wait.cancel()
        while self._late_acks and (all_of_them or self._late_acks[0][0] <= anyio.current_time()):
            _, message, detail = self._late_acks.pop(0)
            await self._send(message, "agent_word", detail)

    def _stop_turn(self, *, reason: str) -> _Turn | None:
        """Stop playback now and drop unspoken and queued text; the caller owns the turn's end."""
        turns, self._turns = self._turns, []
        for queued in turns[1:]:
            queued.stopped = queued.closed = True
            self.timeline.record(
                "agent_turn_dropped",
                {"turn": queued.index, "reason": reason, "spoken": "", "dropped": queued.buffer.strip()},
            )
        turn = turns[0] if turns else None
        if turn is None:
            return None
        turn.stopped = turn.closed = True
        if turn.scope is not None:
            turn.scope.cancel()
        dropped = f"{turn.playing} {turn.buffer.lstrip()}".strip()
        turn.playing = turn.buffer = ""
        kind = "agent_playback_stopped" if turn.started else "agent_turn_dropped"
        self.timeline.record(
            kind,
            {"turn": turn.index, "reason": reason, "spoken": " ".join(turn.spoken), "dropped": dropped},
        )
        return turn

    # ---- internals: user turns ----

    async def _user_turn(self, text: str, *, stale_idle_delay_s: float | None) -> bool:
        interrupted = self._stop_turn(reason="barge_in")
        stopped_loop = anyio.current_time()
        await self._send(
            UserStateInput(value="speaking", event_id=self._next_id()),
            "user_turn_started",
            {"text": text, "barge_in": interrupted is not None},
        )
        if interrupted is not None and interrupted.started and stale_idle_delay_s is None:
            await self._send_interrupted_idle(interrupted, stale=False)
        await self._send(
            TranscriptionInput(content=text, event_id=self._next_id()), "user_text_sent", {"text": text}
        )
        idle_id = self._next_id()
        self._last_user_idle_at = now()
        await self._send(UserStateInput(value="idle", event_id=idle_id), "user_turn_ended", {"text": text})
        self._last_user_idle_id = idle_id
        if interrupted is not None and interrupted.started and stale_idle_delay_s is not None:
            self._pending_stale += 1
            self._tg.start_soon(self._stale_idle, interrupted, stopped_loop + stale_idle_delay_s)
        return interrupted is not None and interrupted.started

    async def _stale_idle(self, turn: _Turn, deadline: float) -> None:
        try:
            await anyio.sleep_until(deadline)
            await self._send_interrupted_idle(turn, stale=True)
        finally:
            self._pending_stale -= 1
            self.timeline.notify()

    async def _send_interrupted_idle(self, turn: _Turn, *, stale: bool) -> None:
        await self._send_late_acks(all_of_them=True)  # the SDK's "late ack-backs", after the barge-in
        await self._send(
            AgentStateInput(value="idle", event_id=self._next_id()),
            "agent_turn_ended",
            {"turn": turn.index, "text": " ".join(turn.spoken), "interrupted": True, "stale": stale},
        )

    def _answered(self) -> bool:
        if self._last_user_idle_at is None:
            return bool(self.timeline.of_kind("response_end"))
        if self._last_user_idle_id is None:  # no event ids: any answer since the caller's turn
            return bool(self.timeline.of_kind("response_end", since=self._last_user_idle_at))
        return (
            self.timeline.first(
                "response_end", where=lambda e: e.detail.get("responding_to") == self._last_user_idle_id
            )
            is not None
        )
