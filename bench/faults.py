"""Section 4, faults: delivery when VoxEngine misbehaves. The emulator answers 30% of control
requests with a 5xx, holds 10% past the client's per-attempt timeout, and drops 5% of
connections without an answer (`FaultPlan` rates, seeded; every attempt draws again). The app
runs with a shortened per-attempt timeout so hung attempts give up quickly; the total delivery
deadline is the shipped one. (The faults themselves are lab/faults.py's `FaultPlan`; this module
only plays calls under one and counts what got through.)

Delivered: the action got an accepted answer. Duplicate effects: telephony effects per action
id at the emulator beyond the first (the contract's idempotency: must be 0).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from agent.retry_policy import RetryPolicy
from bench.app_process import AppOptions
from bench.config import BenchConfig
from bench.load import CallSample, LoadShape, play_round, wait_drained, warmed_app
from bench.progress import Progress
from bench.stats import Summary, summarize
from bench.world import World, generators_for
from lab.faults import FaultKind, FaultPlan

SECTION = "faults"
FAULT_RATES: dict[FaultKind, float] = {"status": 0.30, "hang": 0.10, "drop": 0.05}
FAULT_STATUS = 503


@dataclass(frozen=True)
class FaultResult:
    retry: RetryPolicy
    actions: tuple[CallSample, ...]  # one a call; `answers`: what each of its POSTs met, in order

    @property
    def calls(self) -> int:
        return len(self.actions)

    @property
    def delivered(self) -> int:
        return self.calls - len(self.undelivered)

    @property
    def undelivered(self) -> tuple[CallSample, ...]:
        return tuple(a for a in self.actions if a.accepted_at is None)

    @property
    def delivered_pct(self) -> float:
        return 100.0 * self.delivered / self.calls if self.calls else 0.0

    @property
    def time_to_accepted_s(self) -> tuple[float, ...]:
        """The confirmation's turn end → the accepted POST's arrival, for each delivered action."""
        since = (a.since_turn_end(a.accepted_at) for a in self.actions)
        return tuple(s for s in since if s is not None)

    @property
    def time_to_accepted(self) -> Summary | None:
        return summarize(self.time_to_accepted_s)

    @property
    def effects(self) -> int:
        return sum(a.effects for a in self.actions)

    @property
    def duplicate_effects(self) -> int:
        """Effects beyond the first, per action id."""
        return sum(max(0, a.effects - 1) for a in self.actions)

    @property
    def duplicate_answers(self) -> int:
        """Requests answered `"duplicate": true` (retries after an effect)."""
        return sum(a.answers.count("duplicate") for a in self.actions)

    @property
    def injected(self) -> dict[str, int]:
        """The injected faults met, by kind (an injected 5xx under its fault kind)."""
        met = Counter(x for a in self.actions for x in a.answers if x not in ("accepted", "duplicate"))
        return {_KIND.get(k, k): v for k, v in met.items() if not k.startswith("refused")}


async def run_faults(config: BenchConfig, progress: Progress) -> FaultResult:
    retry = RetryPolicy(attempt_timeout_s=config.fault_attempt_timeout_s)
    plan = FaultPlan(rates=FAULT_RATES, seed=config.seed)
    shape = LoadShape(
        calls=config.fault_calls,
        spread_s=config.spread_s,
        words_per_s=config.words_per_s,
        chat=False,
        hold_until_accepted=True,
        action_timeout_s=retry.deadline_s + 5.0,
    )
    progress.say(
        SECTION, f"{shape.calls} calls; faults {FAULT_RATES}; attempt timeout {retry.attempt_timeout_s} s"
    )
    generators = generators_for(shape.calls, config.calls_per_generator, config.max_generators)
    async with World(generators, faults=plan) as world:
        async with warmed_app(AppOptions(retry=retry), world, config.warmup_calls, floor=False) as app:
            played = await play_round(app, world, shape, tag="fault", seed=config.seed)
            await wait_drained(app)
    result = FaultResult(retry, played.samples)
    progress.say(
        SECTION, f"delivered {result.delivered}/{result.calls}; to accepted {result.time_to_accepted}"
    )
    return result


_KIND = {str(FAULT_STATUS): "status"}
