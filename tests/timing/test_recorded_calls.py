"""Recorded calls (VOX_RECORD_DIR, made with the faithful lab) replayed against the current app as
timing tests: the README's "Turn a production call into a regression test"."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.flush_policy import FlushTimings
from agent.retry_policy import RetryPolicy
from agent.settings import Settings
from lab.assertions import assert_replayed_on_time
from lab.faults import FaultPlan
from lab.pytest_plugin import ReplayCall
from lab.replay import load_recording

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # replays recorded calls at their pace

RECORDINGS = sorted((Path(__file__).parents[1] / "recordings").glob("*.jsonl"))


def test_the_shipped_recordings_are_there() -> None:
    assert {p.stem for p in RECORDINGS} >= {"transfer", "hangup", "barge-in", "stale-idle"}


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
async def test_a_recorded_call_replays_on_time(path: Path, replay_call: ReplayCall) -> None:
    assert_replayed_on_time(await replay_call(path))


async def test_the_replay_rebuilds_the_llm_from_the_recording() -> None:
    recording = load_recording(RECORDINGS[0].parent / "transfer.jsonl")
    [reply] = recording.llm_replies()
    assert [c.name for c in reply.tool_calls] == ["call_transfer"]
    assert reply.text == "" and reply.when_user_says == "Can I talk to a real person, please?"
    assert recording.asked_actions() == ["call_transfer"]
    assert "REDACTED" in recording.start["metadata"]["vox_session_control_url"]


async def test_a_replay_fails_when_the_action_is_lost(replay_call: ReplayCall) -> None:
    quick = dataclasses.replace(Settings(), retry=RetryPolicy(deadline_s=1.0, attempt_timeout_s=0.3))
    result = await replay_call(
        RECORDINGS[0].parent / "transfer.jsonl", settings=quick, faults=FaultPlan(rates={"status": 1.0})
    )
    assert result.problems == [f"call_transfer was never accepted ({result.actions[0].posts} POSTs)"]


async def test_a_replay_fails_when_the_action_fires_during_speech(replay_call: ReplayCall) -> None:
    # An app that releases at a short hold, whatever the turn: it fires while the goodbye plays.
    hasty = dataclasses.replace(Settings(), timings=FlushTimings(no_speech_s=0.1, max_hold_s=0.3))
    result = await replay_call(RECORDINGS[0].parent / "hangup.jsonl", settings=hasty)
    assert result.problems == ["end_call fired while the agent was speaking"]
    assert result.actions[0].early
