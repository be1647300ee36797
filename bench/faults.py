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
from bench.load import LoadShape, play_round, wait_drained, warmed_app
from bench.progress import Progress
from bench.stats import Summary, summarize
from bench.world import World, generators_for
from lab.faults import FaultKind, FaultPlan

SECTION = "faults"
FAULT_RATES: dict[FaultKind, float] = {"status": 0.30, "hang": 0.10, "drop": 0.05}
FAULT_STATUS = 503


@dataclass(frozen=True)
class ActionTrace:
    """One action under faults: what each of its POSTs met, in order."""

    session: str
    accepted: bool
    to_accepted_s: float | None
    answers: tuple[str, ...]  # per POST: "503", "hang", "drop", "accepted", "duplicate", "refused:…"
    last_post_after_s: float | None  # after the confirmation's turn end

    @property
    def posts(self) -> int:
        return len(self.answers)


@dataclass(frozen=True)
class FaultResult:
    calls: int
    delivered: int
    retry: RetryPolicy
    concurrency: int
    time_to_accepted_s: tuple[float, ...]  # the confirmation's turn end → the accepted POST's arrival
    posts_per_action: tuple[int, ...]
    injected: dict[str, int]
    effects: int
    duplicate_effects: int  # effects beyond the first, per action id
    duplicate_answers: int  # requests answered "duplicate": true (retries after an effect)
    actions: tuple[ActionTrace, ...] = ()

    @property
    def undelivered(self) -> tuple[ActionTrace, ...]:
        return tuple(a for a in self.actions if not a.accepted)

    @property
    def delivered_pct(self) -> float:
        return 100.0 * self.delivered / self.calls if self.calls else 0.0

    @property
    def time_to_accepted(self) -> Summary | None:
        return summarize(self.time_to_accepted_s)


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
    traces = [
        ActionTrace(
            session=s.session,
            accepted=s.accepted_at is not None,
            to_accepted_s=_since(s.accepted_at, s.turn_ended_at),
            answers=s.answers,
            last_post_after_s=_since(s.last_post_at, s.turn_ended_at),
        )
        for s in played.samples
    ]
    injected = Counter(a for t in traces for a in t.answers if a not in ("accepted", "duplicate"))
    result = FaultResult(
        calls=shape.calls,
        delivered=sum(1 for t in traces if t.accepted),
        retry=retry,
        concurrency=shape.calls,
        time_to_accepted_s=tuple(t.to_accepted_s for t in traces if t.to_accepted_s is not None),
        posts_per_action=tuple(s.posts for s in played.samples),
        injected={_KIND.get(k, k): v for k, v in injected.items() if not k.startswith("refused")},
        effects=sum(s.effects for s in played.samples),
        duplicate_effects=sum(max(0, s.effects - 1) for s in played.samples),
        duplicate_answers=sum(t.answers.count("duplicate") for t in traces),
        actions=tuple(traces),
    )
    progress.say(
        SECTION, f"delivered {result.delivered}/{result.calls}; to accepted {result.time_to_accepted}"
    )
    return result


_KIND = {str(FAULT_STATUS): "status"}  # an injected 5xx is counted under its fault kind


def _since(at: float | None, start: float | None) -> float | None:
    return None if at is None or start is None else at - start
