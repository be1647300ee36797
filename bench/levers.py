"""Section 7, levers: the server runtime's choices (agent/runtime.py) and the hot-path trims,
each against the shipped app, side by side: the same round of calls (config.lever_calls, as in
section 2: every call connected and chatting, actions spread over the window), one fresh app
process per lever, the floor probed in the same window, in one run.

A lever is the shipped app with one thing changed; the last row changes the runtime back to what
ran before (asyncio, h11, CPython's GC). The shipped app plays first and last, so drift over the
section shows in its two rows. Levers of the app's own code (an older `agent/`) are not rows:
they ran once, their figures are history in bench/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent.runtime import CPYTHON_GC, FREEZE_GC, NO_GC
from bench.app_process import AppOptions
from bench.config import BenchConfig
from bench.load import LoadShape, latencies, wait_drained, warmed_app
from bench.progress import Progress
from bench.resources import SHIPPED, ResourceRun, measured_round
from bench.stats import Summary, summarize
from bench.world import World, generators_for

SECTION = "levers"


@dataclass(frozen=True)
class Lever:
    name: str
    change: str  # what differs from the shipped app
    options: AppOptions


@dataclass(frozen=True)
class LeverRun:
    lever: Lever
    run: ResourceRun | None  # None: could not run (why says why)
    garbage: int = 0  # unreachable objects a full collection found after the round drained
    collect_s: float = 0.0  # and how long that collection stopped the process
    why: str = ""

    @property
    def ours(self) -> Summary | None:
        return summarize(latencies([self.run.round])) if self.run else None

    @property
    def floor(self) -> Summary | None:
        return summarize(list(self.run.round.floor_s)) if self.run else None

    def gc_pauses_ms(self, full: bool) -> list[float]:
        if self.run is None:
            return []
        return [d * 1000 for gen, d in self.run.round.app.gc_pauses if (gen == 2) == full]


@dataclass(frozen=True)
class LeverResult:
    calls: int
    runs: tuple[LeverRun, ...]


def plan(config: BenchConfig) -> list[Lever]:
    """The levers, shipped first (and last, with `lever_repeats` > 1)."""
    shipped = AppOptions()
    levers = [
        Lever("asyncio loop", "event loop: asyncio, not uvloop", replace(shipped, loop="asyncio")),
        Lever(
            "GC: CPython defaults", "GC: no freeze, thresholds (700, 10, 10)", replace(shipped, gc=CPYTHON_GC)
        ),
        Lever("GC: freeze only", "GC: freeze, thresholds (700, 10, 10)", replace(shipped, gc=FREEZE_GC)),
        Lever("GC: off (a bound)", "no cyclic GC at all: cycles leak", replace(shipped, gc=NO_GC)),
        Lever("2 workers", "WEB_CONCURRENCY=2: two processes, one socket", replace(shipped, workers=2)),
        Lever(
            "runtime as before",
            "asyncio, h11, CPython's GC",
            replace(shipped, loop="asyncio", http="h11", gc=CPYTHON_GC),
        ),
    ]
    first = [Lever(SHIPPED, "—", shipped)]
    last = [Lever(SHIPPED, "— (again, last)", shipped)] if config.lever_repeats > 1 else []
    return first + levers + last


async def run_levers(config: BenchConfig, progress: Progress) -> LeverResult:
    shape = LoadShape(calls=config.lever_calls, spread_s=config.spread_s, words_per_s=config.words_per_s)
    runs: list[LeverRun] = []
    levers = plan(config)
    async with World(generators_for(shape.calls, config.calls_per_generator, config.max_generators)) as world:
        for n, lever in enumerate(levers):
            runs.append(await _one(lever, world, shape, config, n))
            progress.say(SECTION, f"{n + 1}/{len(levers)} {lever.name}: {runs[-1].ours or runs[-1].why}")
    return LeverResult(shape.calls, tuple(runs))


async def _one(lever: Lever, world: World, shape: LoadShape, config: BenchConfig, n: int) -> LeverRun:
    try:
        async with warmed_app(lever.options, world, config.warmup_calls) as app:
            run = await measured_round(
                app, world, shape, tag=f"lever{n}", label=lever.name, tracing=False, seed=400 + n
            )
            await wait_drained(app)
            garbage, collect_s = await app.command("collect")
    except Exception as exc:  # a lever that cannot run is a row that says why, not a lost section
        return LeverRun(lever, None, why=f"did not run: {exc!r}")
    return LeverRun(lever, run, garbage, collect_s)
