"""One load-generator process: a VoxEngine emulator on 127.0.0.1 (and, for the `LlmAgent` path,
the scripted LLM) plus the harness simulators of the calls it is given, each playing the same
conversation (`RoundPlan`). The parent (`bench.world`) runs several of these side by side and
keeps their rounds in step; this module is what one of them does.

A call connects (staggered), waits until every call of the round is connected (the parent's
`go`: a start time on the shared monotonic clock), chats once when there is time, asks for an
operator at its moment, and waits for its action's POST (or its accepted POST). Calls stay
connected until every call of the round is done (the parent's `hangup`), so each action is
measured while all the calls are held.
"""

from __future__ import annotations

import contextlib
import gc
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

import anyio

from agent import prompt
from bench.child import run_child, sample_lag, serve_parent
from bench.light_agent import CHAT_REPLY, TRANSFER_WORD
from lab.action_timing import measure_action
from lab.faults import FaultPlan
from lab.harness import HarnessSimulator
from lab.scenarios import transfer_reply
from lab.scripted_llm import LlmReply, ScriptedLlm
from lab.timeline import Timeline, now
from lab.tts_model import TtsModel
from lab.voxengine_emulator import RecordedRequest, VoxEngineEmulator

CHAT_TEXT = "Hello, I have a question about my last bill."
ASK_TEXT = f"Can I talk to an {TRANSFER_WORD}, please?"


@dataclass(frozen=True)
class LoadShape:
    calls: int
    spread_s: float  # actions fire uniformly over this window once every call is connected
    words_per_s: float = 2.8
    first_audio_s: float = 0.2
    jitter_s: float = 0.1
    chat: bool = True
    connect_rate: float = 100.0  # new websockets per second, over the whole round
    action_timeout_s: float = 30.0
    hold_until_accepted: bool = False  # calls wait for an accepted POST, not just the first one

    def tts(self, seed: int) -> TtsModel:
        return TtsModel(
            first_audio_s=self.first_audio_s, words_per_s=self.words_per_s, jitter_s=self.jitter_s, seed=seed
        )

    @property
    def confirmation_s(self) -> float:
        return self.first_audio_s + len(prompt.TRANSFER_CONFIRMATION.split()) / self.words_per_s

    @property
    def chat_turn_s(self) -> float:
        return self.first_audio_s + self.jitter_s + len(CHAT_REPLY.split()) / self.words_per_s + 0.5


@dataclass(frozen=True)
class RoundPlan:
    """What one generator plays of a round: its calls (indices into the round) and everything
    the calls need, drawn by the parent so the round is the same however it is split."""

    tag: str
    ws_url: str
    shape: LoadShape
    calls: tuple[int, ...]
    offsets: tuple[float, ...]  # per call of the round: when it asks, after the start
    chat_offsets: tuple[float, ...]  # per call of the round: when it chats, after the start
    seed: int
    llm: bool  # the app runs the LlmAgent: the caller's words carry the call's reference token


def draw(shape: LoadShape, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A round's random moments: when each call asks (after the start), and when it chats."""
    rng = random.Random(seed)
    offsets = tuple(rng.uniform(0.0, shape.spread_s) for _ in range(shape.calls))
    # Chat turns start at random moments too: no call speaks in step with another.
    chats = tuple(rng.uniform(0.0, max(0.0, o - shape.chat_turn_s)) for o in offsets)
    return offsets, chats


def chats(shape: LoadShape, offset: float) -> bool:
    """Whether a call asking at `offset` has time to chat first."""
    return shape.chat and offset > shape.chat_turn_s


def session_of(tag: str, i: int) -> str:
    return f"{tag}-{i}"


def chat_token(tag: str, i: int) -> str:
    return f"q{tag}n{i}x"


def ask_token(tag: str, i: int) -> str:
    return f"t{tag}n{i}x"


def llm_replies(tag: str, shape: LoadShape, seed: int) -> list[LlmReply]:
    """The scripted LLM's replies for a round on the `LlmAgent` path: per call, an answer to its
    chat (if it chats) and the `call_transfer` tool call for its ask, matched by the call's token."""
    replies = []
    for i, offset in enumerate(draw(shape, seed)[0]):
        if chats(shape, offset):
            replies.append(LlmReply(text=CHAT_REPLY, when_user_says=chat_token(tag, i)))
        ask = transfer_reply()
        replies.append(LlmReply(tool_calls=ask.tool_calls, when_user_says=ask_token(tag, i)))
    return replies


@dataclass(frozen=True)
class CallSample:
    session: str
    turn_ended_at: float | None  # the harness sent `agent_state: idle` for the confirmation
    post_at: float | None  # the first POST of the action arrived at the emulator
    accepted_at: float | None
    posts: int
    effects: int
    released_at: float | None = None  # the app released the action (it saw AgentTurnEnded)
    sent_at: float | None = None  # the app's client started the first POST
    # The end of the confirming speech → the action (`lab.action_timing`: accepted, else first
    # POST), for delivered actions that did not cut the caller off; None otherwise.
    dead_air_s: float | None = None
    early: bool = False  # a POST arrived while the confirmation still played
    answers: tuple[str, ...] = ()  # per POST: "503", "hang", "drop", "accepted", "duplicate", …
    last_post_at: float | None = None

    @property
    def latency_s(self) -> float | None:
        return self.since_turn_end(self.post_at)

    def since_turn_end(self, at: float | None) -> float | None:
        """Seconds from the confirmation's turn end to `at`; None when either is unknown."""
        return None if at is None or self.turn_ended_at is None else at - self.turn_ended_at

    def segments(self) -> tuple[float, float, float] | None:
        """(idle → released, released → POST started, POST started → arrival), or None."""
        points = (self.turn_ended_at, self.released_at, self.sent_at, self.post_at)
        if any(p is None for p in points):
            return None
        a, b, c, d = (p or 0.0 for p in points)
        return b - a, c - b, d - c


@dataclass(frozen=True)
class GeneratorRound:
    """What one generator saw of a round."""

    samples: tuple[CallSample, ...]
    lag_s: tuple[float, ...]  # its event loop's lag during the round
    cpu_s: float  # its CPU time during the round
    dropped: tuple[str, ...]


def answer_of(request: RecordedRequest) -> str:
    if request.fault is not None:
        return str(request.fault.status) if request.fault.kind == "status" else request.fault.kind
    response = request.response or {}
    if response.get("duplicate") is True:
        return "duplicate"
    if response.get("ok") is True:
        return "accepted"
    return f"refused:{response.get('error')}"


class PostWatch:
    """Wakes whoever waits for a session's first control request, or its first accepted one
    (one watcher over the emulator's record, not one scan per waiting call)."""

    def __init__(self, emulator: VoxEngineEmulator) -> None:
        self._emulator = emulator
        self._seen = len(emulator.requests)
        self._posted: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)
        self._accepted: defaultdict[str, anyio.Event] = defaultdict(anyio.Event)

    async def run(self) -> None:
        while True:
            await self._emulator.wait_for_requests(self._seen + 1, timeout=1e9)
            fresh = self._emulator.requests[self._seen :]
            self._seen += len(fresh)
            for request in fresh:
                self._posted[request.session].set()
                if request.response is not None and request.response.get("ok") is True:
                    self._accepted[request.session].set()

    async def wait(self, session: str, timeout_s: float, *, accepted: bool = False) -> None:
        with anyio.move_on_after(timeout_s):
            await (self._accepted if accepted else self._posted)[session].wait()


@dataclass
class _Barrier:
    """This generator's side of a round-wide step: report when all local calls got here, then
    wait for the parent's word (which comes once every generator's calls got here)."""

    calls: int
    report: Callable[[], None]
    reached: int = 0
    passed: anyio.Event = field(default_factory=anyio.Event)

    def arrive(self) -> None:
        self.reached += 1
        if self.reached == self.calls:
            self.report()


class _Round:
    def __init__(self, plan: RoundPlan, emulator: VoxEngineEmulator, say: Callable[[str], None]) -> None:
        self.plan, self.emulator = plan, emulator
        self.timelines = {i: Timeline() for i in plan.calls}
        self.asked_at: dict[int, float] = {}
        self.turn_of_action: dict[int, int] = {}
        self.dropped: list[str] = []
        self.connected = _Barrier(len(plan.calls), lambda: say("connected"))
        self.finished = _Barrier(len(plan.calls), lambda: say("finished"))
        self.start_at = 0.0
        self.watch = PostWatch(emulator)

    async def call(self, i: int) -> None:
        plan, shape = self.plan, self.plan.shape
        session = session_of(plan.tag, i)
        await anyio.sleep(i / shape.connect_rate)
        connected = finished = False
        try:
            async with HarnessSimulator.connect(
                plan.ws_url,
                metadata=self.emulator.start_metadata(session),
                tts=shape.tts(plan.seed * 100_003 + i),
                close_after_end_call="no",
                timeline=self.timelines[i],
                call_id=session,
                connect_timeout_s=60,
            ) as sim:
                if plan.llm:  # the LlmAgent introduces itself first
                    await sim.wait_agent_turn_end(1, timeout_s=60)
                connected = True
                self.connected.arrive()
                await self.connected.passed.wait()
                await self._converse(i, sim, 1 if plan.llm else 0)
                finished = True
                self.finished.arrive()
                await self.finished.passed.wait()
        except Exception as exc:  # a dropped call is a result of the round, not the end of it
            self.dropped.append(f"{session}: {exc!r}")
            if not connected:
                self.connected.arrive()
            if not finished:
                self.finished.arrive()

    async def _converse(self, i: int, sim: HarnessSimulator, turns: int) -> None:
        plan, shape = self.plan, self.plan.shape
        chat, ask = CHAT_TEXT, ASK_TEXT
        if plan.llm:
            chat += f" My reference is {chat_token(plan.tag, i)}."
            ask += f" My reference is {ask_token(plan.tag, i)}."
        if chats(shape, plan.offsets[i]):
            await anyio.sleep_until(self.start_at + plan.chat_offsets[i])
            await sim.user_says(chat, timeout_s=60)
            turns += 1
            await sim.wait_agent_turn_end(turns, timeout_s=120)
        await anyio.sleep_until(self.start_at + plan.offsets[i])
        self.asked_at[i] = now()
        await sim.user_says(ask, timeout_s=60)
        turns += 1
        self.turn_of_action[i] = turns
        await sim.wait_agent_turn_end(turns, timeout_s=120)
        session = session_of(plan.tag, i)
        await self.watch.wait(session, shape.action_timeout_s, accepted=shape.hold_until_accepted)

    def samples(self) -> tuple[CallSample, ...]:
        requests: defaultdict[str, list[RecordedRequest]] = defaultdict(list)
        for request in self.emulator.requests:
            requests[request.session].append(request)
        effects: defaultdict[str, int] = defaultdict(int)
        for effect in self.emulator.effects:
            effects[effect.session] += 1
        out = []
        for i in self.plan.calls:
            session = session_of(self.plan.tag, i)
            timeline, turn = self.timelines[i], self.turn_of_action.get(i, 0)
            ended = next((e for e in timeline.of_kind("agent_turn_ended") if e.detail["turn"] == turn), None)
            mine = requests.get(session, [])
            timing = measure_action(timeline, mine, "call_transfer", asked_at=self.asked_at.get(i, now()))
            out.append(
                CallSample(
                    session,
                    ended.at if ended is not None and turn else None,
                    mine[0].time if mine else None,
                    timing.accepted_at,
                    len(mine),
                    effects.get(session, 0),
                    dead_air_s=timing.dead_air_s,
                    early=timing.early,
                    answers=tuple(answer_of(r) for r in mine),
                    last_post_at=mine[-1].time if mine else None,
                )
            )
        return tuple(out)


class _Generator:
    def __init__(self, conn: Connection, faults: FaultPlan | None, replies: list[LlmReply] | None) -> None:
        self.conn = conn
        self.faults = faults
        self.replies = replies

    async def run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            emulator = await stack.enter_async_context(VoxEngineEmulator(faults=self.faults))
            llm = None
            if self.replies is not None:
                llm = await stack.enter_async_context(ScriptedLlm(self.replies))
            ready = (emulator.network, emulator.origin, llm.api_base if llm else None)
            await serve_parent(self.conn, ready, partial(self._command, emulator))

    async def _command(self, emulator: VoxEngineEmulator, command: str, args: list[Any]) -> Any:
        if command == "round":
            return await self._round(emulator, args[0])
        if command == "urls":  # control URLs of these sessions (for the app's floor probes)
            return [emulator.control_url(s) for s in args[0]]
        if command == "arrivals":  # when each request of sessions with this prefix arrived, by id
            return {r.id: r.time for r in emulator.requests if r.session.startswith(args[0])}
        raise ValueError(f"unknown command {command!r}")

    async def _round(self, emulator: VoxEngineEmulator, plan: RoundPlan) -> GeneratorRound:
        def say(step: str) -> None:
            self.conn.send((step, None))

        run = _Round(plan, emulator, say)
        lag: list[float] = []
        cpu = time.process_time()
        # This process is the instrument: its own GC pauses would delay arrival stamps (ours and
        # the floor's alike), so it collects before the round and not during it.
        gc.collect()
        gc.disable()
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(run.watch.run)
                outer.start_soon(sample_lag, lag)
                async with anyio.create_task_group() as tg:
                    for i in plan.calls:
                        tg.start_soon(run.call, i)
                    tg.start_soon(self._steps, run)
                outer.cancel_scope.cancel()
        finally:
            gc.enable()
        return GeneratorRound(run.samples(), tuple(lag), time.process_time() - cpu, tuple(run.dropped))

    async def _steps(self, run: _Round) -> None:
        """The parent's two words of a round: `go` (with the start time), then `hangup`."""
        if not run.plan.calls:
            self.conn.send(("connected", None))
        step, start_at = await anyio.to_thread.run_sync(self.conn.recv)
        assert step == "go", step
        run.start_at = start_at
        run.connected.passed.set()
        if not run.plan.calls:
            self.conn.send(("finished", None))
        step, _ = await anyio.to_thread.run_sync(self.conn.recv)
        assert step == "hangup", step
        run.finished.passed.set()


def generator_main(conn: Connection, faults: FaultPlan | None, replies: list[LlmReply] | None) -> None:
    """A generator process's body (spawned by `bench.world.World`)."""
    run_child(conn, _Generator(conn, faults, replies).run, uvloop=_has_uvloop())


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
