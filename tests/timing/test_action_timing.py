"""Timing regression suite: every telephony action lands at the end of the speech that announced
it, on the real app against a harness that plays speech at a realistic pace and behaves as the
real one is documented to (the faithful profile, `lab/harness_profile.py`; the idealised one is a
smaller comparison set at the end). Bounds are generous (strict ordering, <= 300 ms late);
`python -m bench` measures the real distribution."""

from __future__ import annotations

import dataclasses

import pytest

from agent.retry_policy import RetryPolicy
from agent.settings import Settings
from lab.assertions import LATE_BOUND_S, assert_fired_at_turn_end
from lab.call_lab import CallLab
from lab.faults import Fault, FaultPlan
from lab.harness_profile import FAITHFUL, IDEALISED
from lab.scenarios import CATALOGUE, Scenario, run_scenario
from lab.voxengine_emulator import PlayoutGuard
from tests.tiers import at_tier_pace

pytestmark = pytest.mark.anyio


# Their caller acts seconds into the agent's speech, so it plays at the real pace in every tier.
TIMED_DRIVES = frozenset({"barge-in", "stale-idle"})


def scenario(name: str) -> Scenario:
    """A catalogue scenario; its speech at the tier's pace (tests/tiers.py) where only order counts."""
    played = CATALOGUE[name]()
    return played if name in TIMED_DRIVES else at_tier_pace(played)


@pytest.mark.parametrize("name", ["transfer-short", "transfer-long"])
async def test_transfer_waits_for_the_whole_confirmation(name: str) -> None:
    result = await run_scenario(scenario(name))
    timing = assert_fired_at_turn_end(result, "call_transfer")
    turn = timing.turn
    assert turn is not None and not turn.interrupted


async def test_goodbye_then_hang_up() -> None:
    assert_fired_at_turn_end(await run_scenario(scenario("hangup")), "end_call")


async def test_goodbye_talked_over_still_hangs_up_when_the_turn_ends() -> None:
    result = await run_scenario(scenario("barge-in"))
    timing = assert_fired_at_turn_end(result, "end_call")
    turn = timing.turn
    assert turn is not None and turn.interrupted


async def test_harness_closing_the_socket_after_end_call_still_hangs_up() -> None:
    result = await run_scenario(scenario("socket-close"))
    assert_fired_at_turn_end(result, "end_call")
    [released] = [r for r in result.actions if r.name == "released"]
    assert released.attrs["reason"] == "turn_ended"  # end_call reaches the harness only after
    [hang_up] = result.hang_ups  # VoxEngine hung up the caller, so its close cuts nothing
    closed = result.timeline.first("socket_closed")
    assert hang_up.why == "end_call" and closed is not None and closed.at >= hang_up.time


async def test_stale_turn_end_of_the_introduction_does_not_release_the_transfer() -> None:
    result = await run_scenario(scenario("stale-idle"))
    timing = assert_fired_at_turn_end(result, "call_transfer")
    intro_end = result.timeline.first("agent_turn_ended", where=lambda e: e.detail["turn"] == 1)
    assert intro_end is not None and timing.requested_at is not None
    assert intro_end.at > timing.requested_at, "the intro's idle must arrive after the tool ran"
    assert intro_end.detail.get("stale") is True


async def test_a_tool_that_speaks_nothing_fires_after_the_no_speech_deadline() -> None:
    no_speech_s = Settings().timings.no_speech_s
    result = await run_scenario(scenario("silent-tool"))
    timing = result.timing("end_call")
    assert timing.delivered and timing.requested_at is not None and timing.accepted_at is not None
    waited = timing.accepted_at - timing.requested_at
    assert no_speech_s - 0.05 <= waited <= no_speech_s + LATE_BOUND_S
    [released] = [r for r in result.actions if r.name == "released"]
    assert released.attrs["reason"] == "no_speech"


@pytest.mark.parametrize(
    "faults",
    [
        (Fault.http(503), Fault.http(503)),
        (Fault.http(429, retry_after_s=1),),
        (Fault.drop(), Fault.http(502)),
    ],
    ids=["503-503", "429-retry-after", "drop-502"],
)
async def test_retries_keep_one_id_and_one_effect(faults: tuple[Fault, ...]) -> None:
    result = await run_scenario(scenario("transfer-short"), faults=FaultPlan(sequence=faults))
    timing = result.timing("call_transfer")
    assert timing.delivered and timing.posts == len(faults) + 1
    assert len({r.id for r in result.requests}) == 1
    assert len(result.effects) == 1
    assert result.speech_end_before(timing.first_post_at)


async def test_voxengine_down_for_the_whole_deadline_ends_the_call_cleanly_and_says_why() -> None:
    quick = dataclasses.replace(Settings(), retry=RetryPolicy(deadline_s=2.0, attempt_timeout_s=0.5))
    result = await run_scenario(scenario("hangup"), faults=FaultPlan(rates={"status": 1.0}), settings=quick)
    timing = result.timing("end_call")
    assert not timing.delivered and timing.posts >= 2
    [failed] = [r for r in result.actions if r.name == "failed"]
    assert failed.attrs["reason"] == "deadline_exceeded:http_503"
    assert result.timeline.first("socket_closed") is not None  # the call still ended
    assert not result.timeline.of_kind("error")


@pytest.mark.slow
async def test_the_published_fixed_sleep_policy_cuts_a_long_confirmation_short() -> None:
    # Documents the regression this product prevents: 5 s after the tool, 7 s of speech.
    result = await run_scenario(CATALOGUE["transfer-long"](), policy="fixed-sleeps")
    timing = result.timing("call_transfer")
    assert timing.early
    assert timing.offset_s is not None and timing.offset_s < -1.5


@pytest.mark.slow
async def test_the_published_fixed_sleep_policy_loses_the_hang_up_when_the_socket_closes() -> None:
    result = await run_scenario(CATALOGUE["socket-close"](), policy="fixed-sleeps")
    assert not result.timing("end_call").delivered
    assert result.requests == ()


async def test_a_hang_up_whose_answer_was_lost_ends_as_session_ended_not_as_a_failure() -> None:
    # VoxEngine took the hang-up (its answer is slow) and, its playout guard off, hangs up at
    # once; 1 s later the scenario terminates the session, so the retry finds nothing
    # listening. That is the hang-up done, not a failure.
    slow_answer = FaultPlan(sequence=(Fault.slow(5.0),))
    result = await run_scenario(scenario("hangup"), faults=slow_answer, guard=PlayoutGuard(on=False))
    [outcome] = [r for r in result.actions if r.name in ("delivered", "failed", "session_ended")]
    assert outcome.name == "session_ended" and outcome.attrs["reason"] == "session_ended"
    assert [e.action for e in result.effects] == ["end_call"]
    timing = result.timing("end_call")
    assert not timing.early and result.speech_end_before(timing.first_post_at)


# ---- the faithful harness (the default above) against the idealised one --------------------------


async def test_the_faithful_harness_ends_the_confirming_turn_on_response_end_with_no_second_llm_call() -> (
    None
):
    # Line 0.2.19 loops back to the LLM only for a tool's raw values (line/llm_agent/llm_agent.py:
    # should_loopback); our tools yield only output events, so response_end follows at once and
    # the harness's idle comes when the confirmation's audio ends.
    sc = scenario("transfer")
    async with CallLab(sc.replies) as lab:
        async with lab.call(tts=sc.tts, profile=FAITHFUL) as sim:
            await sc.drive(sim)
            await lab.wait_outcomes(1)
            await sim.wait_until_idle(timeout_s=10)
        await lab.wait_calls_ended(1)
    assert len(lab.llm.requests) == 1  # the caller's turn; no completion after the tool result
    tl = sim.timeline
    confirming = sim.turns()[1]
    [closed] = [e for e in tl.of_kind("agent_turn_closed") if e.detail["turn"] == confirming.index]
    assert closed.detail["by"] == "response_end"
    assert confirming.stopped_at is not None and confirming.ended_at is not None
    assert closed.at < confirming.stopped_at <= confirming.ended_at <= confirming.stopped_at + 0.05


@pytest.mark.parametrize("name", ["transfer", "hangup", "barge-in", "stale-idle"])
async def test_the_idealised_harness_gives_the_same_verdicts(name: str) -> None:
    sc = scenario(name).with_profile(IDEALISED)
    result = await run_scenario(sc)
    for action in sc.expected_actions:
        assert_fired_at_turn_end(result, action)
