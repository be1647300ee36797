"""Many concurrent calls against the app process: the outside world's side of the load sections.

A round connects `calls` harness simulators to the app (staggered), waits until every one is
connected, and only then lets each call fire its action at a random moment within `spread_s`,
so every action is measured while all the calls are held. Before its action a call chats (the
caller asks something, the agent answers with a sentence played at a spoken pace) when there is
time, so held calls carry speech traffic. The action: the caller asks for an operator, our
`call_transfer` tool speaks its confirmation, the harness plays it and sends `agent_state: idle`,
and the app POSTs the transfer to the emulator. Calls stay connected until every call's POST
arrived, then all hang up.
"""

from __future__ import annotations

import contextlib
import gc
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace

import anyio

from agent import prompt
from bench.app_instruments import FloorSample
from bench.app_process import AppOptions, AppProcess, LoopHealth
from bench.light_agent import CHAT_REPLY, TRANSFER_WORD
from bench.noise import Noise, cpu_snapshot, noise_between
from lab.harness import HarnessSimulator
from lab.timeline import Timeline, TimelineEvent, now
from lab.tts_model import TtsModel
from lab.voxengine_emulator import RecordedRequest, VoxEngineEmulator

LAG_TICK_S = 0.02


@dataclass(frozen=True)
class LoadShape:
    calls: int
    spread_s: float  # actions fire uniformly over this window once every call is connected
    words_per_s: float = 2.8
    first_audio_s: float = 0.2
    jitter_s: float = 0.1
    chat: bool = True
    connect_rate: float = 100.0  # new websockets per second
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
class CallSample:
    session: str
    turn_ended_at: float | None  # the harness sent `agent_state: idle` for the confirmation
    post_at: float | None  # the first POST of the action arrived at the emulator
    accepted_at: float | None
    posts: int
    effects: int
    released_at: float | None = None  # the app released the action (it saw AgentTurnEnded)
    sent_at: float | None = None  # the app's client started the first POST

    @property
    def latency_s(self) -> float | None:
        if self.turn_ended_at is None or self.post_at is None:
            return None
        return self.post_at - self.turn_ended_at

    def segments(self) -> tuple[float, float, float] | None:
        """(idle → released, released → POST started, POST started → arrival), or None."""
        points = (self.turn_ended_at, self.released_at, self.sent_at, self.post_at)
        if any(p is None for p in points):
            return None
        a, b, c, d = (p or 0.0 for p in points)
        return b - a, c - b, d - c


@dataclass(frozen=True)
class LoadRound:
    calls: int
    samples: tuple[CallSample, ...]
    floor_s: tuple[float, ...]  # bare pooled POST: client call → arrival at the emulator
    world_lag_s: tuple[float, ...]
    app: LoopHealth
    wall_s: float
    noise: Noise | None = None
    app_cpu_s: float = 0.0  # the app process's CPU time during the round
    dropped: tuple[str, ...] = ()  # "<session>: <error>" for each call that did not last the round


class PostWatch:
    """Wakes whoever waits for a session's first control request, or its first accepted one
    (one watcher over the emulator's record, not one scan per waiting call)."""

    def __init__(self, emulator: VoxEngineEmulator) -> None:
        self._emulator = emulator
        self._seen = 0
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


async def _sample_lag(into: list[float]) -> None:
    while True:
        due = anyio.current_time() + LAG_TICK_S
        await anyio.sleep_until(due)
        into.append(anyio.current_time() - due)


class _Round:
    def __init__(
        self, app: AppProcess, emulator: VoxEngineEmulator, shape: LoadShape, tag: str, seed: int
    ) -> None:
        self.app, self.emulator, self.shape, self.tag = app, emulator, shape, tag
        rng = random.Random(seed)
        self.offsets = [rng.uniform(0.0, shape.spread_s) for _ in range(shape.calls)]
        # Chat turns start at random moments too: no call speaks in step with another.
        self.chat_offsets = [rng.uniform(0.0, max(0.0, o - shape.chat_turn_s)) for o in self.offsets]
        self.sessions = [f"{tag}-{i}" for i in range(shape.calls)]
        self.timelines = [Timeline() for _ in range(shape.calls)]
        self.turn_of_action = [0] * shape.calls
        self.connected = self.finished = 0
        self.dropped: list[str] = []  # calls that failed to connect or whose socket broke
        self.all_connected, self.all_finished = anyio.Event(), anyio.Event()
        self.start_at = 0.0
        self.watch = PostWatch(emulator)
        self.seed = seed

    async def call(self, i: int) -> None:
        shape = self.shape
        await anyio.sleep(i / shape.connect_rate)
        meta = {"vox_session_control_url": self.emulator.control_url(self.sessions[i])}
        connected = finished = False
        try:
            async with HarnessSimulator.connect(
                self.app.ws_url,
                metadata=meta,
                tts=shape.tts(self.seed * 100_003 + i),
                close_after_end_call="no",
                timeline=self.timelines[i],
                call_id=self.sessions[i],
                connect_timeout_s=60,
            ) as sim:
                connected = self._arrived()
                await self.all_connected.wait()
                await self._converse(i, sim)
                finished = self._finished()
                await self.all_finished.wait()
        except Exception as exc:  # a dropped call is a result of the round, not the end of it
            self.dropped.append(f"{self.sessions[i]}: {exc!r}")
            if not connected:
                self._arrived()
            if not finished:
                self._finished()

    def _arrived(self) -> bool:
        self.connected += 1
        if self.connected == self.shape.calls:
            self.start_at = anyio.current_time() + 0.2
            self.all_connected.set()
        return True

    def _finished(self) -> bool:
        self.finished += 1
        if self.finished == self.shape.calls:
            self.all_finished.set()
        return True

    async def _converse(self, i: int, sim: HarnessSimulator) -> None:
        shape = self.shape
        fire_at = self.start_at + self.offsets[i]
        turns = 0
        if shape.chat and self.offsets[i] > shape.chat_turn_s:
            await anyio.sleep_until(self.start_at + self.chat_offsets[i])
            await sim.user_says("Hello, I have a question about my last bill.", timeout_s=60)
            turns += 1
            await sim.wait_agent_turn_end(turns, timeout_s=120)
        await anyio.sleep_until(fire_at)
        await sim.user_says(f"Can I talk to an {TRANSFER_WORD}, please?", timeout_s=60)
        turns += 1
        self.turn_of_action[i] = turns
        await sim.wait_agent_turn_end(turns, timeout_s=120)
        await self.watch.wait(self.sessions[i], shape.action_timeout_s, accepted=shape.hold_until_accepted)

    async def floor(self, out: list[FloorSample]) -> None:
        await self.all_connected.wait()
        await anyio.sleep_until(self.start_at)
        urls = [self.emulator.control_url(f"{self.tag}-floor-{i}") for i in range(self.shape.calls)]
        delays = [offset + self.shape.confirmation_s for offset in self.offsets]
        out.extend(await self.app.command("floor", self.emulator.origin, urls, delays, timeout_s=600))

    def samples(self, marks: Mapping[str, Mapping[str, float]]) -> tuple[CallSample, ...]:
        requests: defaultdict[str, list[RecordedRequest]] = defaultdict(list)
        for request in self.emulator.requests:
            requests[request.session].append(request)
        effects: defaultdict[str, int] = defaultdict(int)
        for effect in self.emulator.effects:
            effects[effect.session] += 1
        out = []
        for i, session in enumerate(self.sessions):
            turn = self.turn_of_action[i]
            ended = _turn_end(self.timelines[i], turn)
            mine = requests.get(session, [])
            accepted = next(
                (r for r in mine if r.response is not None and r.response.get("ok") is True), None
            )
            out.append(
                CallSample(
                    session,
                    ended.at if ended is not None and turn else None,
                    mine[0].time if mine else None,
                    accepted.time if accepted else None,
                    len(mine),
                    effects.get(session, 0),
                    marks.get(session, {}).get("released"),
                    marks.get(session, {}).get("sent"),
                )
            )
        return tuple(out)


def _turn_end(timeline: Timeline, turn: int) -> TimelineEvent | None:
    return next((e for e in timeline.of_kind("agent_turn_ended") if e.detail["turn"] == turn), None)


async def play_round(
    app: AppProcess,
    emulator: VoxEngineEmulator,
    shape: LoadShape,
    *,
    tag: str,
    floor: bool = False,
    seed: int = 0,
) -> LoadRound:
    """One round of `shape.calls` concurrent calls; with `floor`, bare POSTs in the same window."""
    started = now()
    run = _Round(app, emulator, shape, tag, seed)
    floor_samples: list[FloorSample] = []
    world_lag: list[float] = []
    await app.command("health")  # drop samples from before the round
    await app.command("marks")
    machine, world_cpu, app_cpu = cpu_snapshot(), time.process_time(), (await app.stats()).cpu_s
    window = now()
    # The world process is the instrument: its own GC pauses would delay POST arrival stamps
    # (ours and the floor's alike), so it collects before the round and not during it.
    gc.collect()
    gc.disable()
    try:
        async with anyio.create_task_group() as outer:
            outer.start_soon(run.watch.run)
            outer.start_soon(_sample_lag, world_lag)
            async with anyio.create_task_group() as tg:
                for i in range(shape.calls):
                    tg.start_soon(run.call, i)
                if floor:
                    tg.start_soon(run.floor, floor_samples)
            outer.cancel_scope.cancel()
    finally:
        gc.enable()
    app_used = (await app.stats()).cpu_s - app_cpu
    noise = noise_between(
        machine, cpu_snapshot(), wall_s=now() - window, ours_core_s=time.process_time() - world_cpu + app_used
    )
    health: LoopHealth = await app.command("health")
    arrivals = {r.id: r.time for r in emulator.requests if r.session.startswith(f"{tag}-floor-")}
    floor_s = tuple(arrivals[s.id] - s.sent_at for s in floor_samples if s.id in arrivals)
    marks: dict[str, dict[str, float]] = await app.command("marks")
    return LoadRound(
        shape.calls,
        run.samples(marks),
        floor_s,
        tuple(world_lag),
        health,
        now() - started,
        noise,
        app_used,
        tuple(run.dropped),
    )


async def wait_drained(app: AppProcess, timeout_s: float = 30.0) -> None:
    """Until the app has no live call left (every hang-up drained)."""
    with anyio.move_on_after(timeout_s):
        while (await app.stats()).live_calls:  # noqa: ASYNC110  (another process: nothing to wait on)
            await anyio.sleep(0.1)


def fast_shape(calls: int, spread_s: float = 0.0) -> LoadShape:
    """Calls that get to their action at once: no chat, the confirmation played at 40 words/s."""
    return LoadShape(
        calls=calls, spread_s=spread_s, words_per_s=40.0, first_audio_s=0.05, jitter_s=0.0, chat=False
    )


@contextlib.asynccontextmanager
async def warmed_app(
    options: AppOptions, emulator: VoxEngineEmulator, warmup_calls: int, *, floor: bool = True
) -> AsyncIterator[AppProcess]:
    """A fresh app process, warmed up (first-call costs, pooled connections) by a few calls."""
    async with AppProcess(replace(options, network=emulator.network)) as app:
        shape = replace(fast_shape(warmup_calls, 1.0), hold_until_accepted=True)
        await play_round(app, emulator, shape, tag=f"warm-{app.pid}", floor=floor)
        await wait_drained(app)
        yield app


def latencies(rounds: Sequence[LoadRound]) -> list[float]:
    return [s.latency_s for r in rounds for s in r.samples if s.latency_s is not None]
