"""Pytest fixtures for timing tests of telephony tools: `pytest_plugins = ["lab.pytest_plugin"]`.

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
from typing import Any

import pytest

from lab.results import CallResult
from lab.scenarios import Scenario, run_scenario

PlayCall = Callable[..., Awaitable[CallResult]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Line serves on asyncio; the lab shares its loop


@pytest.fixture
def play_call() -> PlayCall:
    """Play a `Scenario` on a fresh lab (real app, scripted LLM, emulator, simulated harness)."""

    async def play(scenario: Scenario, **options: Any) -> CallResult:
        return await run_scenario(scenario, **options)

    return play
