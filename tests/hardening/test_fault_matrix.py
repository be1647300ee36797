"""Faults at the VoxEngine end, through the real app: every fault kind alone (on every attempt,
and once where the unit tests do not already cover it), then mixed at seeded rates over many
concurrent calls. Every action gets exactly one recorded outcome (delivered, or failed with a
reason), VoxEngine never acts twice for one action, a control endpoint that hangs costs at most the
delivery deadline, and a call whose hang-up finally fails still ends, with the agent saying why.

(`tests/unit/test_voxengine_client.py` already proves single transient 500/502/503/drop/non_json/
hang faults are retried once with the same id, 429's Retry-After, and 403/404/not_ok refusals, at
the client; they are not repeated here.)
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import anyio
import pytest

from agent.retry_policy import RetryPolicy
from agent.settings import Settings
from lab.call_lab import ActionRecord, CallLab
from lab.faults import Fault, FaultPlan
from lab.harness import CloseAfterEndCall
from lab.timeline import Timeline
from lab.tts_model import TtsModel
from lab.voxengine_emulator import Effect, RecordedRequest
from tests.hardening._support import CHAT_REPLY, captured_logs, tool_agent

pytestmark = pytest.mark.anyio

QUICK_TTS = TtsModel(first_audio_s=0.01, words_per_s=200)
RETRY = RetryPolicy(
    deadline_s=1.5, attempt_timeout_s=0.4, backoff_initial_s=0.02, backoff_max_s=0.05, jitter_s=0.01
)
SETTINGS = dataclasses.replace(Settings(), retry=RETRY, drain_timeout_s=RETRY.deadline_s + 2.0)
SLACK_S = 1.0  # a loaded 2-core machine: event loop lag on top of the deadline

Goal = Literal["transfer", "hangup"]


@dataclass
class Played:
    outcome: ActionRecord
    released: ActionRecord
    effects: list[Effect]
    requests: list[RecordedRequest]
    timeline: Timeline
    logs: str


async def play_one(
    faults: FaultPlan, goal: Goal, *, close_after_end_call: CloseAfterEndCall = "no"
) -> Played:
    """One call on a fresh lab: the caller asks for `goal`; returns how its action ended."""
    utterance = "An operator, please." if goal == "transfer" else "That's all, goodbye."
    with captured_logs() as logs:
        async with CallLab(agent_factory=tool_agent, settings=SETTINGS, faults=faults) as lab:
            async with lab.call(tts=QUICK_TTS, close_after_end_call=close_after_end_call) as sim:
                await sim.wait_agent_turn_end(1)
                await sim.user_says(utterance)
                [outcome] = await lab.wait_outcomes(1, timeout_s=RETRY.deadline_s + 10)
                if goal == "hangup" and outcome.name == "failed":
                    await sim.wait_closed(timeout_s=5)  # the agent ends its own side
                elif not sim.closed:
                    await sim.user_says("What are your hours?")  # the call goes on
                    await sim.wait_for(
                        "agent_text_received", where=lambda e: e.detail["content"] == CHAT_REPLY
                    )
            await lab.wait_calls_ended(1, timeout_s=SETTINGS.drain_timeout_s + 5)
            assert lab.app is not None and lab.app.live_calls == set()
            [released] = [r for r in lab.recorder.actions if r.name == "released"]
            effects, requests = list(lab.emulator.effects), list(lab.emulator.requests)
    return Played(outcome, released, effects, requests, sim.timeline, "\n".join(logs))


def attempts_match(attempts: int, received: int) -> bool:
    """The attempts the app counted reached the emulator; the last one may have been cut by the
    deadline before it arrived."""
    return received <= attempts <= received + 1 and received >= 1


def assert_one_action(played: Played) -> None:
    """Every request carried the same id, and VoxEngine acted at most once."""
    assert len({r.id for r in played.requests}) == 1, "retries must reuse the action's id"
    assert len(played.effects) <= 1, f"duplicate effects: {played.effects}"
    assert attempts_match(played.outcome.attrs["attempts"], len(played.requests))


PERSISTENT: list[tuple[str, Fault, str, int | None]] = [
    # (id, fault on every attempt, final reason, exact attempts or None for "2 or more")
    ("500", Fault.http(500), "deadline_exceeded:http_500", None),
    ("502", Fault.http(502), "deadline_exceeded:http_502", None),
    ("503", Fault.http(503), "deadline_exceeded:http_503", None),
    ("504", Fault.http(504), "deadline_exceeded:http_504", None),
    # Retry-After 1 s: a second try at ~1 s, and a third would start after the 1.5 s deadline.
    ("429-retry-after-1", Fault.http(429, retry_after_s=1), "deadline_exceeded:http_429", 2),
    # Retry-After far beyond the deadline: give up at once rather than sleep past it.
    ("429-retry-after-60", Fault.http(429, retry_after_s=60), "deadline_exceeded:http_429", 1),
    ("429-no-retry-after", Fault.http(429), "deadline_exceeded:http_429", None),
    ("hang", Fault.hang(), "deadline_exceeded:timeout", None),
    ("drop", Fault.drop(), "deadline_exceeded:connection_lost", None),
    ("non_json", Fault.non_json(), "deadline_exceeded:non_json", None),
    ("slow-beyond-timeout", Fault.slow(RETRY.attempt_timeout_s + 0.3), "deadline_exceeded:timeout", None),
    ("not_ok", Fault.not_ok(), "refused:injected", 1),
    ("400", Fault.http(400), "http_400", 1),
]


@pytest.mark.parametrize(
    ("fault", "reason", "attempts"),
    [(f, r, a) for _, f, r, a in PERSISTENT],
    ids=[i for i, _, _, _ in PERSISTENT],
)
async def test_a_fault_on_every_attempt_ends_in_one_failed_outcome_within_the_deadline(
    fault: Fault, reason: str, attempts: int | None
) -> None:
    played = await play_one(FaultPlan(sequence=[fault] * 50, per_attempt=True), "transfer")
    outcome = played.outcome
    assert (outcome.name, outcome.attrs["reason"]) == ("failed", reason)
    if attempts is None:
        assert outcome.attrs["attempts"] >= 2, "a transient fault is retried"
    else:
        assert outcome.attrs["attempts"] == attempts
    assert_one_action(played)
    # Released at the turn end, over at the deadline at the latest.
    assert played.released.attrs["reason"] == "turn_ended"
    assert outcome.at - played.released.at <= RETRY.deadline_s + SLACK_S
    if fault.kind == "slow":
        # The scenario acted on the first attempt, whose answer came too late; the retries were
        # answered as duplicates (just as late): one effect, and an outcome that cannot know it.
        assert len(played.effects) == 1
    else:
        assert played.effects == []
    assert "control action call_transfer" in played.logs and f"failed reason={reason}" in played.logs


ONCE: list[tuple[str, Fault, int]] = [
    ("504-once", Fault.http(504), 2),
    ("slow-below-timeout", Fault.slow(RETRY.attempt_timeout_s / 4), 1),
    # The first answer is late: the effect happened, the retry is answered "duplicate": accepted.
    ("slow-beyond-timeout-once", Fault.slow(RETRY.attempt_timeout_s + 0.3), 2),
]


@pytest.mark.parametrize(("fault", "attempts"), [(f, a) for _, f, a in ONCE], ids=[i for i, _, _ in ONCE])
async def test_a_fault_once_is_delivered_with_exactly_one_effect(fault: Fault, attempts: int) -> None:
    played = await play_one(FaultPlan(sequence=[fault], per_attempt=True), "transfer")
    assert (played.outcome.name, played.outcome.attrs["attempts"]) == ("delivered", attempts)
    assert_one_action(played)
    assert len(played.effects) == 1
    if attempts == 2 and fault.kind == "slow":
        last = played.requests[-1]
        assert last.response is not None and last.response.get("duplicate") is True


async def test_a_hang_up_into_a_hanging_endpoint_costs_the_deadline_then_ends_the_call_and_says_why() -> None:
    started = anyio.current_time()
    played = await play_one(FaultPlan(rates={"hang": 1.0}), "hangup")
    assert (played.outcome.name, played.outcome.attrs["reason"]) == ("failed", "deadline_exceeded:timeout")
    spent = played.outcome.at - played.released.at
    assert RETRY.deadline_s - 0.1 <= spent <= RETRY.deadline_s + SLACK_S
    assert anyio.current_time() - started <= RETRY.deadline_s + 10  # the whole call, drain included
    closed = played.timeline.first("socket_closed")
    assert closed is not None and closed.detail["by"] == "app", "the agent ends its own side"
    assert closed.at >= played.outcome.at
    assert played.effects == []
    assert (
        "hang-up not delivered (deadline_exceeded:timeout); ending the agent's side of the call"
        in played.logs
    )


async def test_a_hang_up_that_fails_after_the_harness_closed_still_drains_and_says_why() -> None:
    # The harness closes right after Line's end_call (as Cartesia's does). The agent sends end_call
    # only once the hang-up is settled (#17), so the goodbye's turn end still releases it; when the
    # hang-up fails, the agent's end_call closes the call, and nothing must hang or raise.
    played = await play_one(FaultPlan(rates={"status": 1.0}), "hangup", close_after_end_call="immediately")
    assert played.released.attrs["reason"] == "turn_ended"
    assert [e.detail["by"] for e in played.timeline.of_kind("socket_closed")] == ["end_call"]
    assert (played.outcome.name, played.outcome.attrs["reason"]) == ("failed", "deadline_exceeded:http_503")
    assert "hang-up not delivered (deadline_exceeded:http_503)" in played.logs
    assert not played.timeline.of_kind("error")


async def test_a_transfer_that_finally_fails_leaves_the_call_up() -> None:
    played = await play_one(FaultPlan(rates={"drop": 1.0}), "transfer")
    assert (played.outcome.name, played.outcome.attrs["reason"]) == (
        "failed",
        "deadline_exceeded:connection_lost",
    )
    # The caller was answered after the failure, and only the caller closed the socket.
    chat = played.timeline.first("agent_text_received", where=lambda e: e.detail["content"] == CHAT_REPLY)
    assert chat is not None and chat.at >= played.outcome.at
    assert [e.detail["by"] for e in played.timeline.of_kind("socket_closed")] == ["harness_exit"]
    assert "ending the agent's side" not in played.logs


# ---- mixed faults at seeded rates, many calls at once -----------------------------------------

# The picker draws once per request in arrival order, so whichever calls they hit, the first 24
# draws of seed 7 are fixed: they include two not_ok (final refusals) and a dozen retryable faults.
MIXED = FaultPlan(
    rates={"status": 0.15, "drop": 0.1, "non_json": 0.1, "hang": 0.05, "slow": 0.1, "not_ok": 0.05},
    seed=7,
    templates={"status": Fault.http(503), "slow": Fault.slow(0.05)},
)
# A little more room per attempt: 24 calls share two cores, and an attempt cut short before the
# emulator even read it would make "attempts == requests received" untrue for a harmless reason.
MIXED_RETRY = dataclasses.replace(RETRY, deadline_s=3.0, attempt_timeout_s=0.8)
MIXED_SETTINGS = dataclasses.replace(SETTINGS, retry=MIXED_RETRY, drain_timeout_s=5.0)
FINAL_REASONS = {
    "accepted",
    "refused:injected",
    "deadline_exceeded:http_503",
    "deadline_exceeded:connection_lost",
    "deadline_exceeded:non_json",
    "deadline_exceeded:timeout",
}


async def test_mixed_faults_over_many_calls_every_action_one_outcome_no_duplicate_effect() -> None:
    calls = 24
    with captured_logs("WARNING") as logs:
        async with CallLab(agent_factory=tool_agent, settings=MIXED_SETTINGS, faults=MIXED) as lab:

            async def call(i: int) -> None:
                goal = "An operator, please." if i % 2 else "That's all, goodbye."
                async with lab.call(
                    tts=QUICK_TTS, session=f"m{i}", call_id=f"m{i}", close_after_end_call="after_speech"
                ) as sim:
                    await sim.wait_agent_turn_end(1, timeout_s=20)
                    await sim.user_says(goal, timeout_s=20)
                    with anyio.fail_after(MIXED_RETRY.deadline_s + 20):
                        while not [o for o in lab.recorder.outcomes(f"m{i}")]:
                            await lab.recorder.changed.wait()

            async with anyio.create_task_group() as tg:
                for i in range(calls):
                    tg.start_soon(call, i)
            await lab.wait_calls_ended(calls, timeout_s=MIXED_SETTINGS.drain_timeout_s + 10)
            assert lab.app is not None and lab.app.live_calls == set()
            recorder, emulator = lab.recorder, lab.emulator
    enqueued = [r for r in recorder.actions if r.name == "enqueued"]
    outcomes = recorder.outcomes()
    assert len(enqueued) == calls
    per_action = Counter(o.action_id for o in outcomes)
    assert set(per_action) == {r.action_id for r in enqueued} and set(per_action.values()) == {1}
    assert {o.attrs["reason"] for o in outcomes} <= FINAL_REASONS, Counter(
        o.attrs["reason"] for o in outcomes
    )
    effects = Counter(e.id for e in emulator.effects)
    assert all(n == 1 for n in effects.values()), "VoxEngine acted twice for one action"
    requests = Counter(r.id for r in emulator.requests)
    for o in outcomes:
        assert attempts_match(o.attrs["attempts"], requests[o.action_id]), o
        if o.name == "delivered":
            assert effects[o.action_id] == 1, o
        elif effects[o.action_id]:
            # Failed although VoxEngine acted: only when its last answer was a late (slow) one.
            last = [r for r in emulator.requests if r.id == o.action_id][-1]
            assert last.fault is not None and last.fault.kind == "slow", o
    assert sum(n > 1 for n in requests.values()) > 0, "the seed must produce some retries"
    assert len({o.name for o in outcomes}) == 2, "the seed must produce both outcomes"
    failed_hangups = [o for o in outcomes if o.name == "failed" and o.action == "end_call"]
    text = "\n".join(logs)
    for o in failed_hangups:
        assert f"hang-up not delivered ({o.attrs['reason']})" in text
