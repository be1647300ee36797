"""The README's "write your own timing test" example, kept runnable."""

import pytest

from agent.prompt import TRANSFER_CONFIRMATION
from lab.assertions import assert_fired_at_turn_end
from lab.scenarios import Scenario, after_introduction, pace_for, transfer_reply


@pytest.mark.anyio
async def test_refund_transfer_waits_for_the_whole_sentence(play_call):  # type: ignore[no-untyped-def]
    scenario = Scenario(
        name="refund",
        description="caller wants a refund; a 3 s confirmation, then the transfer",
        replies=(transfer_reply(summary="Refund for order 1234."),),
        drive=after_introduction("I'd like a refund for order 1234."),
        tts=pace_for(TRANSFER_CONFIRMATION, seconds=3.0),
        expected_actions=("call_transfer",),
    )
    result = await play_call(scenario)
    assert_fired_at_turn_end(result, "call_transfer")
    assert result.effects[0].summary == "Refund for order 1234."
