"""Section 1, alignment: when each action reaches VoxEngine against the end of the speech that
announced it, for the published fixed-sleep policy and ours, on the same scripted calls.

Each policy plays the whole corpus on its own `CallLab` (the real app under uvicorn, the scripted
LLM through LiteLLM, the VoxEngine emulator), many calls at a time; the two labs run side by side
in two worker processes (one per core) during the same wall-clock window.

Each call's action is judged by `lab.action_timing.measure_action`, the same judgement as the
timing suite's: the first agent turn that started after the caller's request is the confirming
turn, and its speech ends when its audio ended, when the caller talked over it, or when the
socket closed, whichever came first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing import get_context

import anyio

from agent.conversation import build_llm_agent
from agent.runtime import SERVER_GC
from bench.corpus import BARGE_IN_TEXT, CallSpec, Kind
from bench.noise import Noise, cpu_snapshot, noise_between
from bench.progress import Progress, quiet_logs
from bench.stats import Summary, pct, summarize
from lab.action_timing import ActionTiming, measure_action
from lab.call_lab import CallLab
from lab.harness import HarnessSimulator
from lab.published_example import TRANSFER_DELAY_S, build_published_agent
from lab.scenarios import Policy
from lab.scripted_llm import LlmReply
from lab.timeline import now

POLICIES: tuple[Policy, ...] = ("fixed-sleeps", "turn-end")
SETTLE_S = 0.3  # after an action's outcome, to catch anything fired later
START_INTERVAL_S = 0.25  # calls start at least this far apart: no two callers speak in lockstep
OUTCOME_TIMEOUT_S = 40.0


@dataclass(frozen=True)
class CallOutcome:
    """One call of the corpus under one policy: what it was, and its action measured by the
    lab's one judgement (`lab.action_timing`)."""

    index: int
    policy: str
    kind: Kind
    close_after_end_call: str
    barged_in: bool
    planned_speech_s: float
    timing: ActionTiming
    effects: int

    @property
    def delivered(self) -> bool:
        return self.timing.delivered

    @property
    def early(self) -> bool:
        return self.timing.early

    @property
    def offset_s(self) -> float | None:
        return self.timing.offset_s

    @property
    def dead_air_s(self) -> float | None:
        return self.timing.dead_air_s

    @property
    def release_lag_s(self) -> float | None:
        return self.timing.release_lag_s

    @property
    def speech_s(self) -> float | None:
        return self.timing.speech_s

    @property
    def posts(self) -> int:
        return self.timing.posts


@dataclass(frozen=True)
class AlignmentRun:
    outcomes: tuple[CallOutcome, ...]
    concurrency: int
    wall_s: float
    parallel: bool
    noise: Noise | None = None


async def _wait_post_or_close(lab: CallLab, sim: HarnessSimulator, session: str, until: float) -> None:
    """The published policy reports nothing: wait for its POST, the socket's end, or its sleeps."""

    def posted() -> bool:
        return any(r.session == session for r in lab.emulator.requests)

    with anyio.move_on_after(max(0.0, until - now())):
        while not posted() and not sim.closed:
            with anyio.move_on_after(0.25):  # the socket closing wakes nothing here: look again
                await lab.emulator.wait_for_requests(len(lab.emulator.requests) + 1, timeout=1e9)


async def _wait_outcome(lab: CallLab, call_id: str) -> None:
    with anyio.move_on_after(OUTCOME_TIMEOUT_S):
        while not lab.recorder.outcomes(call_id):
            await lab.recorder.changed.wait()


async def play_call(lab: CallLab, spec: CallSpec, policy: Policy) -> CallOutcome:
    async with lab.call(
        tts=spec.tts(),
        close_after_end_call=spec.close_after_end_call,
        session=spec.session,
        call_id=spec.call_id,
    ) as sim:
        await sim.wait_agent_turn_end(1, timeout_s=60)  # the introduction
        asked_at = now()
        await sim.user_says(spec.utterance, timeout_s=30)
        if spec.barge_in_after_s is not None:
            await sim.barge_in(after_s=spec.barge_in_after_s, text=BARGE_IN_TEXT, timeout_s=60)
        if policy == "turn-end":
            await _wait_outcome(lab, spec.call_id)
        else:
            await _wait_post_or_close(lab, sim, spec.session, asked_at + TRANSFER_DELAY_S + 4.0)
        with contextlib.suppress(TimeoutError):
            await sim.wait_until_idle(timeout_s=30)
        await anyio.sleep(SETTLE_S)
    released = next(
        (r.at for r in lab.recorder.actions if r.call_id == spec.call_id and r.name == "released"), None
    )
    mine = [r for r in lab.emulator.requests if r.session == spec.session]
    return CallOutcome(
        index=spec.index,
        policy=policy,
        kind=spec.kind,
        close_after_end_call=spec.close_after_end_call,
        barged_in=spec.barge_in_after_s is not None,
        planned_speech_s=spec.planned_speech_s,
        timing=measure_action(sim.timeline, mine, spec.action, asked_at=asked_at, released_at=released),
        effects=sum(1 for e in lab.emulator.effects if e.session == spec.session),
    )


async def play_corpus(
    specs: Sequence[CallSpec], policy: Policy, *, concurrency: int, progress: Progress, warmup: int = 2
) -> list[CallOutcome]:
    """Play every call on one lab, `concurrency` at a time, after `warmup` unmeasured calls."""
    factory = build_llm_agent if policy == "turn-end" else build_published_agent
    warm = [_warmup_spec(specs[i % len(specs)], i) for i in range(warmup)]
    replies: list[LlmReply] = [s.reply() for s in (*warm, *specs)]
    outcomes: list[CallOutcome] = []
    counter = progress.counter(f"alignment/{policy}", "calls", len(specs))
    limiter = anyio.Semaphore(concurrency)

    async def one(spec: CallSpec, keep: bool, start_at: float) -> None:
        async with limiter:
            await anyio.sleep_until(start_at)
            outcome = await play_call(lab, spec, policy)
        if keep:
            outcomes.append(outcome)
            counter.tick()

    async with CallLab(replies, agent_factory=factory) as lab:
        async with anyio.create_task_group() as tg:
            for i, spec in enumerate(warm):
                tg.start_soon(one, spec, False, anyio.current_time() + i * START_INTERVAL_S)
        # The app in this process runs as in production from here: the server's GC policy after
        # start-up (agent/runtime.py), for both policies alike.
        SERVER_GC.apply()
        async with anyio.create_task_group() as tg:
            for i, spec in enumerate(specs):
                tg.start_soon(one, spec, True, anyio.current_time() + i * START_INTERVAL_S)
    return sorted(outcomes, key=lambda o: o.index)


def _warmup_spec(spec: CallSpec, i: int) -> CallSpec:
    return replace(spec, index=900_000 + i, barge_in_after_s=None, close_after_end_call="after_speech")


def _worker(
    policy: Policy, specs: Sequence[CallSpec], concurrency: int, warmup: int, origin: float, quiet: bool
) -> tuple[list[CallOutcome], float]:
    """One policy's lab, in a worker process of its own; also the CPU time it used."""
    quiet_logs()
    started = time.process_time()
    progress = Progress(origin=origin, quiet=quiet)
    run = partial(play_corpus, specs, policy, concurrency=concurrency, progress=progress, warmup=warmup)
    return anyio.run(run), time.process_time() - started


def run_alignment(
    specs: Sequence[CallSpec], *, concurrency: int, warmup: int, progress: Progress, parallel: bool = True
) -> AlignmentRun:
    """Both policies on the same corpus, side by side (a process each), or one after the other."""
    start, machine = now(), cpu_snapshot()
    progress.say("alignment", f"{len(specs)} calls per policy, {concurrency} at a time per policy")
    results: list[CallOutcome] = []
    ours_cpu = 0.0
    if parallel:
        with ProcessPoolExecutor(max_workers=len(POLICIES), mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_worker, p, list(specs), concurrency, warmup, progress.origin, progress.quiet)
                for p in POLICIES
            ]
            for future in futures:
                outcomes, cpu = future.result()
                results.extend(outcomes)
                ours_cpu += cpu
    else:
        for policy in POLICIES:
            outcomes, cpu = _worker(policy, specs, concurrency, warmup, progress.origin, progress.quiet)
            results.extend(outcomes)
            ours_cpu += cpu
    wall = now() - start
    noise = noise_between(machine, cpu_snapshot(), wall_s=wall, ours_core_s=ours_cpu)
    return AlignmentRun(tuple(results), concurrency, wall, parallel, noise)


@dataclass(frozen=True)
class PolicyStats:
    policy: str
    calls: int
    early: int
    lost: int
    dead_air: Summary | None  # delivered calls not cut off
    offset: Summary | None  # every POST that arrived, signed
    duplicate_effects: int

    @property
    def early_pct(self) -> float:
        return pct(self.early, self.calls)

    @property
    def lost_pct(self) -> float:
        return pct(self.lost, self.calls)


def case_of(outcome: CallOutcome) -> str:
    if outcome.barged_in:
        return "caller talks over the confirmation"
    if outcome.kind == "transfer":
        return "transfer"
    if outcome.close_after_end_call == "immediately":
        return "goodbye, harness closes the socket at end_call"
    return "goodbye, harness closes the socket after the speech"


def policy_stats(outcomes: Sequence[CallOutcome], policy: str) -> PolicyStats:
    mine = [o for o in outcomes if o.policy == policy]
    return PolicyStats(
        policy=policy,
        calls=len(mine),
        early=sum(1 for o in mine if o.early),
        lost=sum(1 for o in mine if not o.delivered),
        dead_air=summarize([o.dead_air_s for o in mine if o.dead_air_s is not None]),
        offset=summarize([o.offset_s for o in mine if o.offset_s is not None]),
        duplicate_effects=sum(max(0, o.effects - 1) for o in mine),
    )
