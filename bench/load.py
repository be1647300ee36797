"""Rounds of many concurrent calls against the app process, played by the world's generator
processes (`bench.world`, `bench.generator`).

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
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace

import anyio

from bench.app_instruments import FloorSample
from bench.app_process import AppOptions, AppProcess, LoopHealth
from bench.generator import CallSample, GeneratorRound, LoadShape, RoundPlan, draw
from bench.noise import Noise, cpu_snapshot, noise_between
from bench.world import World
from lab.timeline import now

__all__ = ["CallSample", "LoadRound", "LoadShape", "latencies", "play_round", "wait_drained", "warmed_app"]


@dataclass(frozen=True)
class LoadRound:
    calls: int
    samples: tuple[CallSample, ...]
    floor_s: tuple[float, ...]  # bare pooled POST: client call → arrival at the emulator
    world_lag_s: tuple[float, ...]  # the generators' event-loop lag
    app: LoopHealth
    wall_s: float
    noise: Noise | None = None
    app_cpu_s: float = 0.0  # the app process's CPU time during the round
    dropped: tuple[str, ...] = ()  # "<session>: <error>" for each call that did not last the round
    generators: int = 1


def plan_round(
    world: World, app: AppProcess, shape: LoadShape, tag: str, seed: int, *, llm: bool
) -> list[RoundPlan]:
    """The round's random draws (the same however many generators play it), split by generator."""
    offsets, chats = draw(shape, seed)
    return [
        RoundPlan(tag, app.ws_url, shape, share, offsets, chats, seed, llm)
        for share in world.split(shape.calls)
    ]


async def play_round(
    app: AppProcess,
    world: World,
    shape: LoadShape,
    *,
    tag: str,
    floor: bool = False,
    seed: int = 0,
    llm: bool = False,
) -> LoadRound:
    """One round of `shape.calls` concurrent calls played by the world's generators; with
    `floor`, bare POSTs from the app's process in the same window, at the actions' moments."""
    started = now()
    plans = plan_round(world, app, shape, tag, seed, llm=llm)
    floor_samples: list[FloorSample] = []
    await app.command("health")  # drop samples from before the round
    await app.command("marks")
    machine, app_cpu = cpu_snapshot(), (await app.stats()).cpu_s
    window = now()
    on_start = anyio.Event()
    played: list[GeneratorRound] = []

    # Asked before the round: during it, each generator's pipe carries the round's steps only.
    urls = await world.control_urls([f"{tag}-floor-{i}" for i in range(shape.calls)]) if floor else []

    async def probe_floor() -> None:
        await on_start.wait()
        delays = [world.start_at - anyio.current_time() + o + shape.confirmation_s for o in plans[0].offsets]
        floor_samples.extend(
            await app.command("floor", world.origins, urls, [max(0.0, d) for d in delays], timeout_s=600)
        )

    async def play() -> None:
        played.extend(await world.play(plans, on_start))

    async with anyio.create_task_group() as tg:
        tg.start_soon(play)
        if floor:
            tg.start_soon(probe_floor)
    app_used = (await app.stats()).cpu_s - app_cpu
    world_used = sum(g.cpu_s for g in played)
    noise = noise_between(machine, cpu_snapshot(), wall_s=now() - window, ours_core_s=world_used + app_used)
    health: LoopHealth = await app.command("health")
    arrivals = await world.arrivals(f"{tag}-floor-") if floor else {}
    floor_s = tuple(arrivals[s.id] - s.sent_at for s in floor_samples if s.id in arrivals)
    marks: dict[str, dict[str, float]] = await app.command("marks")
    samples = sorted((s for g in played for s in g.samples), key=lambda s: int(s.session.rsplit("-", 1)[1]))
    return LoadRound(
        shape.calls,
        tuple(_with_marks(s, marks.get(s.session, {})) for s in samples),
        floor_s,
        tuple(x for g in played for x in g.lag_s),
        health,
        now() - started,
        noise,
        app_used,
        tuple(d for g in played for d in g.dropped),
        len(world.generators),
    )


def _with_marks(sample: CallSample, marks: Mapping[str, float]) -> CallSample:
    """`sample` with the app's own stamps of its action: released, and the POST started."""
    return replace(sample, released_at=marks.get("released"), sent_at=marks.get("sent"))


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


def warm_shape(calls: int) -> LoadShape:
    """The warm-up round of a fresh app: fast calls, each waiting for its accepted POST."""
    return replace(fast_shape(calls, 1.0), hold_until_accepted=True)


@contextlib.asynccontextmanager
async def warmed_app(
    options: AppOptions,
    world: World,
    warmup_calls: int,
    *,
    floor: bool = True,
    llm: bool = False,
    tag: str | None = None,
) -> AsyncIterator[AppProcess]:
    """A fresh app process reaching the world's emulators (and its scripted LLM with `llm`),
    warmed up (first-call costs, pooled connections) by a few calls."""
    options = replace(options, network=world.network, llm_api_base=world.llm_api_base if llm else None)
    async with AppProcess(options) as app:
        shape = warm_shape(warmup_calls)
        await play_round(app, world, shape, tag=tag or f"warm{app.pid}", floor=floor, llm=llm)
        await wait_drained(app)
        yield app


def latencies(rounds: Sequence[LoadRound]) -> list[float]:
    return [s.latency_s for r in rounds for s in r.samples if s.latency_s is not None]
