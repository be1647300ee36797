"""Section 8, capacity: how many concurrent calls one server process (one core: one event loop)
holds while the dead air its callers hear stays within target, on the real `LlmAgent` path.

The app runs as in section 2 (its own process, the shipped runtime) but with the conversational
agent of `agent.conversation` (Line's `LlmAgent` through LiteLLM) against the scripted
OpenAI-compatible LLM of `lab.scripted_llm`, served by the first generator process. Each level
is a fresh app process and a fresh world; every call of the round connects and hears the
introduction, then, over `capacity_spread_s`, chats once (when there is time) and asks for an
operator; the LLM answers with the `call_transfer` tool, the tool speaks its confirmation, and
VoxEngine's emulator records the POST. Dead air is `lab.action_timing`'s: the end of the
confirming speech → the accepted POST, for actions that neither cut the caller off nor were lost.

Levels are tried in order until one fails: its dead-air p99 over target, an action lost or cut
off, or a call dropped. A level whose floor (a bare pooled POST from the app's process in the
same window) itself misses the target is INVALID: the machine, not the app, was the limit then.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bench.app_process import AppOptions
from bench.config import BenchConfig
from bench.generator import LoadShape, llm_replies
from bench.load import wait_drained, warm_shape, warmed_app
from bench.progress import Progress
from bench.resources import SHIPPED, ResourceRun, measured_round
from bench.stats import Summary, summarize
from bench.world import World, generators_for

SECTION = "capacity"
DEAD_AIR_P99_MS = 50.0
FLOOR_P99_MS = DEAD_AIR_P99_MS  # a floor slower than the target leaves nothing to judge the app by
WARM_TAG, SEED = "warm", 800


@dataclass(frozen=True)
class CapacityStep:
    calls: int
    run: ResourceRun | None  # None: the level could not run (why says why)
    why: str = ""

    @property
    def dead_air(self) -> Summary | None:
        if self.run is None:
            return None
        return summarize([s.dead_air_s for s in self.run.round.samples if s.dead_air_s is not None])

    @property
    def floor(self) -> Summary | None:
        return summarize(list(self.run.round.floor_s)) if self.run else None

    @property
    def lost(self) -> int:
        """Actions never accepted, or that cut the caller off."""
        if self.run is None:
            return self.calls
        return sum(1 for s in self.run.round.samples if s.accepted_at is None or s.early)

    @property
    def dropped(self) -> int:
        return len(self.run.round.dropped) if self.run else 0

    @property
    def verdict(self) -> str:
        """PASS, FAIL, or INVALID (the floor itself missed the target, or nothing was measured)."""
        air, floor = self.dead_air, self.floor
        if self.run is None or floor is None or floor.p99 > FLOOR_P99_MS:
            return "INVALID"
        ok = air is not None and air.p99 <= DEAD_AIR_P99_MS and not self.lost and not self.dropped
        return "PASS" if ok else "FAIL"


@dataclass(frozen=True)
class CapacityResult:
    steps: tuple[CapacityStep, ...]
    spread_s: float
    words_per_s: float

    @property
    def largest_passing(self) -> CapacityStep | None:
        """The largest level that passed with every smaller level tried passing too."""
        best = None
        for step in self.steps:
            if step.verdict != "PASS":
                break
            best = step
        return best


async def run_capacity(config: BenchConfig, progress: Progress) -> CapacityResult:
    steps: list[CapacityStep] = []
    for n, calls in enumerate(config.capacity_levels):
        step = await _level(config, calls, n)
        steps.append(step)
        air = step.dead_air
        progress.say(SECTION, f"{calls} calls: {step.verdict}; dead air {air}; floor {step.floor} {step.why}")
        if step.verdict != "PASS":
            break
    return CapacityResult(tuple(steps), config.capacity_spread_s, config.words_per_s)


async def _level(config: BenchConfig, calls: int, n: int) -> CapacityStep:
    shape = LoadShape(
        calls=calls,
        spread_s=config.capacity_spread_s,
        words_per_s=config.words_per_s,
        hold_until_accepted=True,
    )
    tag, seed = f"cap{n}", SEED + n
    replies = llm_replies(WARM_TAG, warm_shape(config.warmup_calls), 0) + llm_replies(tag, shape, seed)
    generators = generators_for(calls, config.calls_per_generator, config.max_generators)
    try:
        async with World(generators, replies=replies) as world:
            async with warmed_app(AppOptions(), world, config.warmup_calls, llm=True, tag=WARM_TAG) as app:
                await wait_drained(app)
                run = await measured_round(
                    app, world, shape, tag=tag, label=SHIPPED, tracing=False, seed=seed, llm=True
                )
    except Exception as exc:  # a level that cannot run is a row that says why
        return CapacityStep(calls, None, why=f"did not run: {exc!r}")
    return CapacityStep(calls, replace(run, label=f"{calls} calls"))
