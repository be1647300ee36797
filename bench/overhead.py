"""Section 2, overhead: from the harness's `agent_state: idle` leaving the client to the action's
POST arriving at the world, at 1, 100, 500 and 1,000 concurrent calls, next to the floor: a
bare pooled httpx POST from the app's own process to the same world, in the same window.

The app runs in its own process with the LLM-free agent (`bench.light_agent`) and the server
runtime `python main.py` ships (`agent.runtime`); generator processes (`bench.world`) play the
harness and VoxEngine. One call at a time, the confirmation plays fast (the path measured starts at the
idle); under load it plays at a spoken pace. The 500-call runs are shared with section 5: each
is a fresh app process, tracing off or on, measured for latency and for CPU and memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.app_process import AppOptions
from bench.config import BenchConfig
from bench.load import LoadRound, LoadShape, fast_shape, latencies, play_round, wait_drained, warmed_app
from bench.noise import Noise, combine
from bench.progress import Progress
from bench.resources import SHIPPED, SPANS_DISCARDED, ResourceRun, measured_round
from bench.stats import Summary, summarize
from bench.world import World, generators_for
from lab.otlp_receiver import OtlpReceiver

SECTION = "overhead"


@dataclass(frozen=True)
class Level:
    """One load level: our path and the floor, measured in the same rounds."""

    label: str
    concurrency: int
    rounds: tuple[LoadRound, ...]
    pace_words_per_s: float
    tracing: bool = False

    @property
    def ours(self) -> Summary | None:
        return summarize(latencies(self.rounds))

    @property
    def floor(self) -> Summary | None:
        return summarize([f for r in self.rounds for f in r.floor_s])

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.rounds)

    @property
    def lost(self) -> int:
        """Calls whose POST never arrived (or whose turn end was never seen)."""
        return sum(1 for r in self.rounds for s in r.samples if s.latency_s is None)

    @property
    def dropped(self) -> tuple[str, ...]:
        """Calls that failed to connect or whose socket broke during the round."""
        return tuple(d for r in self.rounds for d in r.dropped)

    @property
    def app_lag(self) -> Summary | None:
        return summarize([x for r in self.rounds for x in r.app.lag_s])

    @property
    def world_lag(self) -> Summary | None:
        return summarize([x for r in self.rounds for x in r.world_lag_s])

    def segment(self, index: int) -> Summary | None:
        """0: idle → released (websocket, Line, the flush policy); 1: released → POST started
        (the sender task, the retry loop); 2: POST started → arrival (httpx, loopback, world)."""
        parts = [s.segments() for r in self.rounds for s in r.samples]
        return summarize([p[index] for p in parts if p is not None])

    @property
    def app_busy_pct(self) -> float:
        """The app process's CPU during the rounds, in % of one core."""
        wall = sum(r.wall_s for r in self.rounds)
        return 100.0 * sum(r.app_cpu_s for r in self.rounds) / wall if wall else 0.0

    @property
    def noise(self) -> Noise | None:
        return combine([r.noise for r in self.rounds if r.noise is not None])

    @property
    def gc_full_pauses_ms(self) -> list[float]:
        return [d * 1000 for r in self.rounds for gen, d in r.app.gc_pauses if gen == 2]


@dataclass(frozen=True)
class OverheadResult:
    levels: tuple[Level, ...]
    high_runs: tuple[ResourceRun, ...] = field(default=())
    otlp_requests: int = 0


async def run_overhead(config: BenchConfig, progress: Progress) -> OverheadResult:
    levels: list[Level] = []
    runs: list[ResourceRun] = []
    with OtlpReceiver(decode=False) as sink:
        generators = generators_for(config.top_calls, config.calls_per_generator, config.max_generators)
        async with World(generators) as world:
            async with warmed_app(AppOptions(), world, config.warmup_calls) as app:
                single = fast_shape(1)
                rounds = []
                for i in range(config.single_rounds):
                    rounds.append(await play_round(app, world, single, tag=f"one{i}", floor=True, seed=i))
                levels.append(Level("1 call", 1, tuple(rounds), single.words_per_s))
                progress.say(SECTION, f"1 call at a time: {levels[-1].ours}")
                mid = LoadShape(
                    calls=config.mid_calls, spread_s=config.spread_s, words_per_s=config.words_per_s
                )
                rounds = []
                for i in range(config.mid_rounds):
                    await wait_drained(app)
                    rounds.append(await play_round(app, world, mid, tag=f"mid{i}", floor=True, seed=100 + i))
                    progress.say(SECTION, f"{mid.calls} calls, round {i + 1}/{config.mid_rounds}")
                levels.append(Level(f"{mid.calls} calls", mid.calls, tuple(rounds), mid.words_per_s))
                progress.say(SECTION, f"{mid.calls} calls: {levels[-1].ours}")
            high = LoadShape(
                calls=config.high_calls, spread_s=config.spread_s, words_per_s=config.words_per_s
            )
            plan = config.tracing_plan
            for n, mode in enumerate(plan):
                tracing, label = mode != "off", SPANS_DISCARDED if mode == "discard" else SHIPPED
                options = AppOptions(
                    otlp_endpoint=sink.endpoint if mode == "otlp" else None, discard_spans=mode == "discard"
                )
                async with warmed_app(options, world, config.warmup_calls) as app:
                    run = await measured_round(
                        app, world, high, tag=f"high{n}", label=label, tracing=tracing, seed=200 + n
                    )
                runs.append(run)
                progress.say(
                    SECTION,
                    f"{high.calls} calls, run {n + 1}/{len(plan)} (tracing {mode}): "
                    f"{summarize(latencies([run.round]))}; {run.cpu_ms_per_call:.1f} ms CPU/call",
                )
            for tracing, label in ((False, ""), (True, ", tracing on")):
                chosen = tuple(r.round for r in runs if r.tracing == tracing and r.label == SHIPPED)
                levels.append(
                    Level(f"{high.calls} calls{label}", high.calls, chosen, high.words_per_s, tracing)
                )
            top = LoadShape(calls=config.top_calls, spread_s=config.spread_s, words_per_s=config.words_per_s)
            async with warmed_app(AppOptions(), world, config.warmup_calls) as app:
                await wait_drained(app)
                played = await play_round(app, world, top, tag="top", floor=True, seed=300)
            levels.append(Level(f"{top.calls} calls", top.calls, (played,), top.words_per_s))
            progress.say(SECTION, f"{top.calls} calls: {levels[-1].ours}")
    return OverheadResult(tuple(levels), tuple(runs), len(sink.payloads))
