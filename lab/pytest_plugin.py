"""Pytest fixtures for timing tests of telephony tools: `pytest_plugins = ["lab.pytest_plugin"]`.

A recorded production call (VOX_RECORD_DIR) as a timing test:

@pytest.mark.anyio
async def test_the_call_of_2026_11_30(replay_call):
    assert_replayed_on_time(await replay_call("tests/recordings/transfer.jsonl"))

A scripted scenario:

@pytest.mark.anyio
async def test_refund_transfer_waits_for_the_sentence(play_call):
    scenario = Scenario(
        name="refund",
        description="caller wants a refund",
        replies=(transfer_reply(summary="refund"),),
        drive=after_introduction("I want a refund"),
        expected_actions=("call_transfer",),
    )
    result = await play_call(scenario)
    assert_fired_at_turn_end(result, "call_transfer")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lab.replay import ReplayResult, replay
from lab.results import CallResult
from lab.scenarios import Scenario, run_scenario

PlayCall = Callable[..., Awaitable[CallResult]]
ReplayCall = Callable[..., Awaitable[ReplayResult]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Line serves on asyncio; the lab shares its loop


@pytest.fixture
def play_call() -> PlayCall:
    """Play a `Scenario` on a fresh lab (real app, scripted LLM, emulator, simulated harness)."""

    async def play(scenario: Scenario, **options: Any) -> CallResult:
        return await run_scenario(scenario, **options)

    return play


@pytest.fixture
def replay_call() -> ReplayCall:
    """Replay a recorded call (a `VOX_RECORD_DIR` file) against the current app, in a fresh lab."""

    async def play(path: str | Path, **options: Any) -> ReplayResult:
        return await replay(path, **options)

    return play
